//! flatnet-ipam: address pools, per-host blocks, allocation by handle, and
//! the datastore they live in.
//!
//! See `docs/ipam.md` for the model, the key layout and the crash-safety
//! argument of the embedded store.

pub mod cidr;
pub mod ipam;
pub mod model;
pub mod store;

pub use cidr::Cidr;
pub use ipam::{
    AllocRequest, BlockUsage, Family, GcReport, HostRoutes, HostUsage, Ipam, IpamError, Issue,
    PoolUsage, Utilisation,
};
pub use model::{
    AllocatedAddr, Allocation, Block, Clock, Handle, Keys, ManualClock, Pool, SystemClock,
};
pub use store::{
    AnyStore, Compare, Datastore, EtcdStore, Event, EventKind, FileStore, FileStoreOptions,
    KeyValue, Listing, MemStore, Op, Revision, StoreError, Txn, TxnOutcome, Watch, WatchItem,
};
