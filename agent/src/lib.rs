//! flatnet-agent: the host daemon `flatnetd`, its CLI `flatnet` and the CNI
//! plugin `flatnet-cni`.

pub mod api;
pub mod blocks;
pub mod cni;
pub mod config;
pub mod dns;
pub mod docker;
pub mod fib;
pub mod handlers;
pub mod ipam;
pub mod kernel;
pub mod metrics;
pub mod names;
pub mod netfilter;
pub mod policy;
pub mod reconcile;
pub mod routing;
pub mod server;
pub mod store;
