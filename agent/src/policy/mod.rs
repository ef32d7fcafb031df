//! Application policy: who may talk to whom, enforced as iptables rules on
//! the real (flat, unique) addresses of each app's containers.
//!
//! Owns: the document model and its validation ([`model`]), the documents
//! in the datastore ([`store`]), the pure compiler to iptables/ipset
//! payloads ([`compile`]), the trace over the compiled IR ([`trace`]).
//! May touch: the datastore (under `/flatnet/policies/`) and, through
//! [`crate::netfilter`]'s batch writer only, flatnet's own chains and sets.

pub mod compile;
pub mod model;
pub mod store;
pub mod trace;

pub use model::{Policy, PolicyError, RawPolicy};
