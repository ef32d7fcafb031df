//! flatnet-bgp: BGP-4 for flatnet.
//!
//! `wire` is the sans-IO codec: bytes in, typed messages out, and typed errors
//! that say which RFC 7606 action applies. It depends on nothing internal.

pub mod wire;
pub mod fsm;
pub mod policy;
pub mod rib;
pub mod session;
pub mod speaker;
pub mod config;
