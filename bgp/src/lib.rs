//! flatnet-bgp: BGP-4 for flatnet.
//!
//! `wire` is the sans-IO codec: bytes in, typed messages out, and typed errors
//! that say which RFC 7606 action applies. It depends on nothing internal.
//! `fsm`, `rib` and `policy` are sans-IO too; `session`, `speaker` and
//! `config` (tokio, serde, TOML) need the default `speaker` feature.

#[cfg(feature = "speaker")]
pub mod config;
pub mod fsm;
pub mod policy;
pub mod rib;
#[cfg(feature = "speaker")]
pub mod session;
#[cfg(feature = "speaker")]
pub mod speaker;
pub mod wire;
