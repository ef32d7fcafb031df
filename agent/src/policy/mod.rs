//! Application policy: who may talk to whom, enforced as iptables rules on
//! the real (flat, unique) addresses of each app's containers.
//!
//! Owns: the document model and its validation ([`model`]), the documents
//! in the datastore ([`store`], cluster defaults in [`defaults`]), the pure compiler to iptables/ipset
//! payloads ([`compile`], edges grouped into `list:set`s by `group`), the trace over the compiled IR ([`trace`]), the
//! pure reconcile plan ([`plan`]), the kernel apply ([`enforce`]), the
//! flatnetd task that follows the datastore ([`engine`]) and the control
//! API's policy operations (`handlers`).
//! May touch: the datastore (under `/flatnet/policies/`) and, through
//! [`crate::netfilter`]'s batch writer only, flatnet's own chains and sets.

pub mod compile;
pub mod defaults;
pub mod enforce;
pub mod engine;
mod group;
mod handlers;
pub mod model;
pub mod plan;
pub mod store;
pub mod trace;

pub use model::{Policy, PolicyError, RawPolicy};
