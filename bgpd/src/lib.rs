//! flatnet-bgpd: the standalone speaker's configuration file. The daemon
//! (`src/main.rs`) reads it; so does the lab's receiver benchmark. The
//! speaker itself is the `flatnet-bgp` library.

pub mod config;
pub mod control;
