//! flatnet-bgp: BGP-4 for flatnet.
//!
//! `wire` is the sans-IO codec: bytes in, typed messages out, and typed errors
//! that say which RFC 7606 action applies. It depends on nothing internal.
//! `fsm`, `rib` and `policy` are sans-IO too, as is the speaker's protocol
//! core (`speaker::core`); `session` and `speaker` (tokio, serde) need the
//! default `speaker` feature. The standalone daemon and its TOML
//! configuration are the `flatnet-bgpd` crate.

pub mod fsm;
pub mod policy;
pub mod rib;
#[cfg(feature = "speaker")]
pub mod session;
#[cfg(feature = "speaker")]
pub mod speaker;
pub mod wire;
