//! The FIB room: learned BGP routes into the kernel.
//!
//! Owns the routes flatnet learns from its peers: protocol 200 at metric
//! [`writer::FIB_METRIC`], ECMP (RTA_MULTIPATH) when the speaker's
//! multipath set has several next hops. It may touch only those: host
//! routes and blackholes (also protocol 200, metric 0) belong to
//! [`crate::kernel`] and [`crate::blocks`], and a new route is created
//! without replace, so a route someone else installed is never changed.
//!
//! [`plan`] is pure (desired against installed, unit-tested without root);
//! [`writer`] is the netlink side. [`Fib::run`] follows the speaker's
//! best-path events, and after each burst applies one batch. At start the
//! routes a previous run left are adopted: those the new selection wants
//! as they are stay untouched, the rest are removed only once selection ran
//! after every peer's End-of-RIB (RFC 4724 selection deferral) or the
//! stale timer passed.

pub mod plan;
pub mod writer;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::Duration;

use flatnet_bgp::speaker::{RibEvent, Speaker};
use ipnetwork::IpNetwork;
use tokio::sync::{broadcast, watch};

use plan::{FibPlan, Installed, NextHops, desired_of, plan as full_plan, plan_dirty};
use writer::{FibWriter, Outcome};

/// When the routes a previous run left may be swept.
pub enum SweepGate {
    /// Once the speaker's (deferred) route selection ran.
    Selection(watch::Receiver<bool>),
    /// After this long (no graceful restart: no End-of-RIB to wait for).
    Timer(Duration),
}

#[derive(Default)]
struct State {
    desired: BTreeMap<IpNetwork, NextHops>,
    installed: BTreeMap<IpNetwork, Installed>,
    swept: bool,
}

/// The FIB: desired routes from the speaker, installed routes in the kernel.
pub struct Fib {
    writer: FibWriter,
    state: Mutex<State>,
}

/// Counts of one applied batch (for logs and tests).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchStats {
    pub installed: usize,
    pub removed: usize,
    pub failed: usize,
}

impl Fib {
    /// Opens the netlink connection and adopts the learned routes a
    /// previous run left in the kernel.
    pub async fn open() -> Result<Fib, writer::FibError> {
        let writer = FibWriter::new()?;
        let found = writer.dump().await?;
        let installed = found
            .into_iter()
            .map(|(n, hops)| {
                (
                    n,
                    Installed {
                        hops,
                        adopted: true,
                    },
                )
            })
            .collect();
        Ok(Fib {
            writer,
            state: Mutex::new(State {
                installed,
                ..State::default()
            }),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many routes a previous run left (at start: whether we restart).
    pub fn adopted(&self) -> usize {
        self.state()
            .installed
            .values()
            .filter(|i| i.adopted)
            .count()
    }

    /// The learned routes flatnet has in the kernel.
    pub fn installed(&self) -> BTreeMap<IpNetwork, NextHops> {
        self.state()
            .installed
            .iter()
            .map(|(n, i)| (*n, i.hops.clone()))
            .collect()
    }

    /// Takes one event into the desired set; returns its prefix.
    fn take(&self, e: &RibEvent) -> Option<IpNetwork> {
        let (net, hops) = desired_of(e)?;
        let mut s = self.state();
        match hops {
            Some(h) => s.desired.insert(net, h),
            None => s.desired.remove(&net),
        };
        Some(net)
    }

    /// Applies a plan and records what the kernel now holds.
    async fn apply(&self, plan: FibPlan) -> BatchStats {
        let mut st = BatchStats::default();
        if plan.is_empty() {
            return st;
        }
        for o in self.writer.apply(plan).await {
            let mut s = self.state();
            match o {
                Outcome::Installed(n, hops) => {
                    st.installed += 1;
                    s.installed.insert(
                        n,
                        Installed {
                            hops,
                            adopted: false,
                        },
                    );
                }
                Outcome::Removed(n) => {
                    st.removed += 1;
                    s.installed.remove(&n);
                }
                Outcome::Failed(n, e) => {
                    st.failed += 1;
                    tracing::warn!(prefix = %n, error = %e, "kernel route not programmed");
                }
            }
        }
        st
    }

    /// The changes for `dirty` prefixes; adopted routes the selection wants
    /// as they are become this run's (left alone, removed on withdraw).
    fn plan_for(&self, dirty: &BTreeSet<IpNetwork>) -> FibPlan {
        let mut s = self.state();
        let p = plan_dirty(dirty, &s.desired, &s.installed);
        let State {
            desired, installed, ..
        } = &mut *s;
        for n in dirty {
            if desired.contains_key(n)
                && let Some(i) = installed.get_mut(n)
            {
                i.adopted = false;
            }
        }
        p
    }

    /// Rebuilds the desired set from the speaker's whole Loc-RIB (at start,
    /// and when the event stream lagged).
    async fn resync(&self, speaker: &Speaker) -> BTreeSet<IpNetwork> {
        let rib = match speaker.rib().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "FIB resync: speaker stopped");
                return BTreeSet::new();
            }
        };
        let mut desired = BTreeMap::new();
        for entry in rib {
            let best = entry.paths.iter().find(|p| p.best).cloned();
            let multipath = entry
                .paths
                .iter()
                .filter(|p| p.multipath)
                .cloned()
                .collect();
            let e = RibEvent {
                prefix: entry.prefix,
                best,
                multipath,
            };
            if let Some((n, Some(h))) = desired_of(&e) {
                desired.insert(n, h);
            }
        }
        let mut s = self.state();
        let dirty: BTreeSet<IpNetwork> = desired
            .keys()
            .chain(s.desired.keys())
            .chain(s.installed.keys())
            .copied()
            .collect();
        s.desired = desired;
        dirty
    }

    /// Removes what a previous run left and nobody selected.
    async fn sweep(&self) -> BatchStats {
        let p = {
            let mut s = self.state();
            s.swept = true;
            let p = full_plan(&s.desired, &s.installed, true);
            for i in s.installed.values_mut() {
                i.adopted = false;
            }
            p
        };
        let st = self.apply(p).await;
        tracing::info!(
            removed = st.removed,
            "FIB: stale routes of the previous run swept"
        );
        st
    }

    /// Follows the speaker forever: each burst of events is one batch.
    pub async fn run(self: std::sync::Arc<Self>, speaker: Speaker, gate: SweepGate) {
        let mut rx = speaker.subscribe();
        let mut dirty = self.resync(&speaker).await;
        let (mut selected, deadline) = match gate {
            SweepGate::Selection(w) => (Some(w), None),
            SweepGate::Timer(d) => (None, Some(tokio::time::Instant::now() + d)),
        };
        loop {
            if !self.state().swept {
                let ready = match (&selected, deadline) {
                    (Some(w), _) => *w.borrow(),
                    (None, Some(d)) => tokio::time::Instant::now() >= d,
                    (None, None) => true,
                };
                if ready {
                    let p = self.plan_for(&std::mem::take(&mut dirty));
                    self.apply(p).await;
                    self.sweep().await;
                }
            }
            if !dirty.is_empty() {
                let p = self.plan_for(&std::mem::take(&mut dirty));
                let st = self.apply(p).await;
                tracing::debug!(?st, "FIB batch");
            }
            let swept = self.state().swept;
            tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => dirty.extend(self.take(&e)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "FIB fell behind the speaker: resync");
                        dirty.extend(self.resync(&speaker).await);
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                r = async { match selected.as_mut() { Some(w) => w.changed().await, None => std::future::pending().await } }, if !swept => {
                    if r.is_err() { selected = None; }
                }
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } }, if !swept => {}
            }
            // The rest of the burst, without waiting.
            loop {
                match rx.try_recv() {
                    Ok(e) => dirty.extend(self.take(&e)),
                    Err(broadcast::error::TryRecvError::Lagged(_)) => {
                        dirty.extend(self.resync(&speaker).await);
                    }
                    Err(_) => break,
                }
            }
        }
    }
}
