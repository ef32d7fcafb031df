//! flatnet-agent: the host daemon `flatnetd`, its CLI `flatnet` and the CNI
//! plugin `flatnet-cni`.

pub mod api;
pub mod cni;
pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod ipam;
pub mod metrics;
pub mod routing;
pub mod store;
