//! The admin plane: who may ask a running ferryd for what, over the local
//! control socket and over HTTPS. `protocol` is the leaf both planes and
//! both sides share.

pub(crate) mod api;
pub mod gate;
pub mod protocol;
pub mod socket;
