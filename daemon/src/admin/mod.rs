//! The admin plane: who may ask a running ferryd for what, over the local
//! control socket and over HTTPS.

pub mod api;
pub mod control;
pub mod gate;
