//! What both sides of the link share below the protocol: the UDP socket
//! and the pacer that spaces datagrams to the configured rate.

pub mod batch;
pub mod gro;
pub mod keys;
pub mod pacer;
pub mod udp;
