//! What survives a restart: the redb store, the ingress outbox of sealed
//! packages, and the egress gap records.

mod direct_writer;
pub(crate) mod gaps;
pub(crate) mod meta;
pub mod outbox;
pub mod store;
