//! The embedded store: an append-only, checksummed log in a directory.
//!
//! Layout: `DIR/flatnet.log` holds one record per successful write
//! transaction; `DIR/flatnet.lock` is the writers' `flock`. A writer takes the
//! lock, replays records it has not seen yet, evaluates the compares against
//! that up-to-date state, appends its record with a single `write`, and
//! `fdatasync`s before it reports success. Readers replay without the lock and
//! stop at the first incomplete record.
//!
//! Crash safety: a record is `magic | len | crc32 | payload`. A crash before
//! the write leaves the old state; a crash during it leaves a record that is
//! short or fails its checksum at the very end of the file, which every reader
//! ignores and the next writer (holding the lock, so the author is dead)
//! truncates before appending; a crash after the write leaves the new state.
//! A bad record followed by more data is real corruption and is reported,
//! never silently dropped.
//!
//! Compaction: when the log outgrows its threshold, the writer (still
//! holding the lock) writes a snapshot record of the whole state to
//! `flatnet.log.compact`, fsyncs it, renames it over `flatnet.log` and fsyncs
//! the directory. A crash before the rename leaves the old log; after it, the
//! new one, both complete. Other processes notice the new inode on their next
//! read (writers always check under the lock, so they never append to a
//! replaced log) and replay the new file from its snapshot.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};

use super::{
    Datastore, KeyValue, KvState, Listing, Op, Revision, StoreError, Txn, TxnOutcome, Watch,
    WatchItem, check_key,
};

const MAGIC: &[u8; 4] = b"FNL1";
const HEADER: usize = 12;
/// Upper bound on one record, so a corrupt length cannot make us allocate GiBs.
const MAX_RECORD: usize = 64 << 20;
const SNAP_MAGIC: &[u8; 4] = b"FNS1";
const LOG: &str = "flatnet.log";
const COMPACT_TMP: &str = "flatnet.log.compact";
const LOCK: &str = "flatnet.lock";

/// Where a test makes the writing process kill itself (SIGKILL) to prove
/// crash safety at that exact point.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// Lock held, state caught up, nothing written.
    BeforeWrite,
    /// Half of the record written.
    TornWrite,
    /// Whole record written, not yet fsynced.
    BeforeSync,
    /// Durable but not yet acknowledged to the caller.
    AfterSync,
    /// Compacted log written and synced, not yet renamed into place.
    CompactBeforeRename,
    /// Compacted log renamed into place, directory not yet synced.
    CompactAfterRename,
}

/// Settings of the embedded store.
#[derive(Clone, Copy, Debug)]
pub struct FileStoreOptions {
    /// Compact when the log has grown this much past its last snapshot.
    pub compact_after_bytes: u64,
}

impl Default for FileStoreOptions {
    fn default() -> Self {
        FileStoreOptions {
            compact_after_bytes: 64 << 20,
        }
    }
}

impl std::str::FromStr for CrashPoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "before-write" => CrashPoint::BeforeWrite,
            "torn-write" => CrashPoint::TornWrite,
            "before-sync" => CrashPoint::BeforeSync,
            "after-sync" => CrashPoint::AfterSync,
            "compact-before-rename" => CrashPoint::CompactBeforeRename,
            "compact-after-rename" => CrashPoint::CompactAfterRename,
            _ => return Err(format!("unknown crash point {s}")),
        })
    }
}

#[derive(Debug)]
struct Inner {
    log: File,
    /// Inode of `log`: when the path names another, the log was compacted.
    ino: u64,
    state: KvState,
    /// End of the last record replayed into `state`.
    offset: u64,
    /// Size of the snapshot the current log starts with (0 if none).
    base: u64,
}

/// The embedded, multi-process-safe store.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    log_path: PathBuf,
    lock_path: PathBuf,
    inner: Mutex<Inner>,
    crash: Option<(CrashPoint, u64)>,
    writes: AtomicU64,
    compactions: AtomicU64,
    opts: FileStoreOptions,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl FileStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(dir, FileStoreOptions::default())
    }

    /// Opens with explicit settings.
    pub fn open_with(dir: impl AsRef<Path>, opts: FileStoreOptions) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let unreachable = |e: std::io::Error| StoreError::Unreachable {
            addr: dir.display().to_string(),
            reason: e.to_string(),
        };
        std::fs::create_dir_all(&dir).map_err(unreachable)?;
        let log_path = dir.join(LOG);
        let lock_path = dir.join(LOCK);
        let log = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(unreachable)?;
        let ino = log.metadata().map_err(unreachable)?.ino();
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(unreachable)?;
        // Make the directory entries durable before anything is acknowledged.
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(unreachable)?;
        let store = FileStore {
            dir,
            log_path,
            lock_path,
            inner: Mutex::new(Inner {
                log,
                ino,
                state: KvState::default(),
                offset: 0,
                base: 0,
            }),
            crash: None,
            writes: AtomicU64::new(0),
            compactions: AtomicU64::new(0),
            opts,
        };
        {
            let mut g = store.lock_inner();
            store.catch_up(&mut g)?;
        }
        Ok(store)
    }

    /// Test hook: SIGKILL this process at `point` during the `nth` (1-based)
    /// write transaction.
    #[doc(hidden)]
    pub fn with_crash_point(mut self, point: CrashPoint, nth: u64) -> Self {
        self.crash = Some((point, nth));
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        // Inner is only replaced wholesale after a successful step, so a
        // poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn maybe_crash(&self, at: CrashPoint, nth: u64) {
        // Compactions happen only on some writes: those points fire at the
        // first compaction from the nth write on.
        let compacting = matches!(
            at,
            CrashPoint::CompactBeforeRename | CrashPoint::CompactAfterRename
        );
        if let Some((p, n)) = self.crash
            && p == at
            && (n == nth || (compacting && nth >= n))
        {
            let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Replays records after `g.offset`. Returns true if the file ends in an
    /// incomplete or damaged record (a torn tail).
    fn catch_up(&self, g: &mut Inner) -> Result<bool, StoreError> {
        let path_ino = std::fs::metadata(&self.log_path)
            .map_err(io_err(&self.log_path))?
            .ino();
        if path_ino != g.ino {
            // Another process compacted the log: start over from the new file.
            let log = OpenOptions::new()
                .read(true)
                .append(true)
                .open(&self.log_path)
                .map_err(io_err(&self.log_path))?;
            g.ino = log.metadata().map_err(io_err(&self.log_path))?.ino();
            g.log = log;
            g.state = KvState::default();
            g.offset = 0;
            g.base = 0;
        }
        let len = g.log.metadata().map_err(io_err(&self.log_path))?.len();
        if len < g.offset {
            return Err(StoreError::Corrupt {
                path: self.log_path.clone(),
                offset: len,
                reason: format!("log shrank below the replayed position {}", g.offset),
            });
        }
        if len == g.offset {
            return Ok(false);
        }
        let mut buf = vec![0u8; (len - g.offset) as usize];
        g.log
            .read_exact_at(&mut buf, g.offset)
            .map_err(io_err(&self.log_path))?;
        let parsed = parse_records(&buf, g.offset, &self.log_path)?;
        for rec in parsed.records {
            let (rev, ops) = match rec {
                Record::Snapshot(rev, kvs) if g.offset == 0 && g.state.revision == 0 => {
                    g.state.revision = rev;
                    g.state.map = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
                    g.base = parsed.snapshot_len as u64;
                    continue;
                }
                Record::Snapshot(..) => {
                    return Err(StoreError::Corrupt {
                        path: self.log_path.clone(),
                        offset: g.offset,
                        reason: "snapshot record in the middle of the log".into(),
                    });
                }
                Record::Txn(rev, ops) => (rev, ops),
            };
            if rev != g.state.revision + 1 {
                return Err(StoreError::Corrupt {
                    path: self.log_path.clone(),
                    offset: g.offset,
                    reason: format!(
                        "revision {rev} follows {}: records out of order",
                        g.state.revision
                    ),
                });
            }
            g.state.apply_owned(rev, ops, false);
        }
        g.offset += parsed.consumed as u64;
        Ok(parsed.torn)
    }

    fn read_consistent<T>(&self, f: impl FnOnce(&KvState) -> T) -> Result<T, StoreError> {
        let mut g = self.lock_inner();
        self.catch_up(&mut g)?;
        Ok(f(&g.state))
    }

    /// The transaction, synchronously (it blocks on `flock` and `fdatasync`).
    pub fn txn_sync(&self, txn: &Txn) -> Result<TxnOutcome, StoreError> {
        for op in &txn.ops {
            check_key(op.key())?;
        }
        let mut g = self.lock_inner();
        let lockf = File::options()
            .write(true)
            .open(&self.lock_path)
            .map_err(io_err(&self.lock_path))?;
        let _flock =
            Flock::lock(lockf, FlockArg::LockExclusive).map_err(|(_, e)| StoreError::Io {
                path: self.lock_path.clone(),
                source: std::io::Error::from(e),
            })?;
        if self.catch_up(&mut g)? {
            // We hold the lock, so whoever wrote the torn tail is dead and
            // never acknowledged it: cut it off before appending.
            g.log
                .set_len(g.offset)
                .and_then(|_| g.log.sync_data())
                .map_err(io_err(&self.log_path))?;
        }
        if let Some(out) = g.state.settled(txn) {
            return Ok(out);
        }
        let rev = g.state.revision + 1;
        let rec = encode_record(rev, &txn.ops);
        let nth = self.writes.fetch_add(1, Ordering::Relaxed) + 1;
        self.maybe_crash(CrashPoint::BeforeWrite, nth);
        if matches!(self.crash, Some((CrashPoint::TornWrite, n)) if n == nth) {
            let _ = g.log.write_all(&rec[..rec.len() / 2]);
            self.maybe_crash(CrashPoint::TornWrite, nth);
        }
        let written = g.log.write_all(&rec);
        if let Err(e) = written {
            // Leave no partial record behind for readers to stumble on.
            let _ = g.log.set_len(g.offset);
            return Err(io_err(&self.log_path)(e));
        }
        self.maybe_crash(CrashPoint::BeforeSync, nth);
        g.log.sync_data().map_err(io_err(&self.log_path))?;
        self.maybe_crash(CrashPoint::AfterSync, nth);
        g.state.apply_owned(rev, txn.ops.clone(), false);
        g.offset += rec.len() as u64;
        if g.offset.saturating_sub(g.base) > self.opts.compact_after_bytes {
            // The transaction is already durable; a failed compaction only
            // means the log stays long until the next attempt.
            if let Err(e) = self.compact(&mut g, nth) {
                tracing::warn!("compacting {}: {e}", self.log_path.display());
            }
        }
        Ok(TxnOutcome {
            succeeded: true,
            revision: rev,
        })
    }

    /// Replaces the log by one snapshot record of the current state. The
    /// caller holds the writers' lock and has replayed the whole log.
    fn compact(&self, g: &mut Inner, nth: u64) -> Result<(), StoreError> {
        let tmp = self.dir.join(COMPACT_TMP);
        let snap = encode_snapshot(g.state.revision, g.state.map.values());
        let mut f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .truncate(false)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.set_len(0)
            .and_then(|_| f.write_all(&snap))
            .and_then(|_| f.sync_all())
            .map_err(io_err(&tmp))?;
        self.maybe_crash(CrashPoint::CompactBeforeRename, nth);
        std::fs::rename(&tmp, &self.log_path).map_err(io_err(&self.log_path))?;
        self.maybe_crash(CrashPoint::CompactAfterRename, nth);
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(&self.dir))?;
        g.ino = f.metadata().map_err(io_err(&self.log_path))?.ino();
        g.log = f;
        g.offset = snap.len() as u64;
        g.base = snap.len() as u64;
        self.compactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many times this handle compacted the log (for tests and metrics).
    pub fn compactions(&self) -> u64 {
        self.compactions.load(Ordering::Relaxed)
    }

    /// Current store revision (after replaying what others wrote).
    pub fn revision(&self) -> Result<Revision, StoreError> {
        self.read_consistent(|s| s.revision)
    }
}

impl Datastore for FileStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        self.read_consistent(|s| s.map.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Listing, StoreError> {
        self.read_consistent(|s| Listing {
            kvs: s.list(prefix),
            revision: s.revision,
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        self.txn_sync(&txn)
    }

    async fn watch(&self, prefix: &str, from: Revision) -> Result<Watch, StoreError> {
        let (tx, watch) = Watch::channel();
        let mut follower = LogFollower::open(self.log_path.clone(), prefix, from)?;
        tokio::spawn(async move {
            // Other processes append to the log, so there is nothing to be
            // woken by: poll its length (and inode, for compactions).
            loop {
                match follower.poll() {
                    Ok(items) => {
                        for item in items {
                            if tx.send(Ok(item)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(watch)
    }

    fn describe(&self) -> String {
        format!("file:{}", self.dir.display())
    }
}

/// Reads the log (across compactions) for one watch.
struct LogFollower {
    path: PathBuf,
    file: File,
    ino: u64,
    offset: u64,
    prefix: String,
    /// Next revision the watcher wants.
    next: Revision,
    state: KvState,
}

impl LogFollower {
    fn open(path: PathBuf, prefix: &str, from: Revision) -> Result<Self, StoreError> {
        let file = File::open(&path).map_err(io_err(&path))?;
        let ino = file.metadata().map_err(io_err(&path))?.ino();
        Ok(LogFollower {
            path,
            file,
            ino,
            offset: 0,
            prefix: prefix.to_string(),
            next: from.max(1),
            state: KvState::default(),
        })
    }

    /// Reads what is new in the current file.
    fn drain(&mut self, out: &mut Vec<WatchItem>) -> Result<(), StoreError> {
        let len = self.file.metadata().map_err(io_err(&self.path))?.len();
        if len <= self.offset {
            return Ok(());
        }
        let mut buf = vec![0u8; (len - self.offset) as usize];
        self.file
            .read_exact_at(&mut buf, self.offset)
            .map_err(io_err(&self.path))?;
        let parsed = parse_records(&buf, self.offset, &self.path)?;
        self.offset += parsed.consumed as u64;
        let mut evs = Vec::new();
        for rec in parsed.records {
            match rec {
                Record::Snapshot(rev, kvs) => {
                    self.state.revision = rev;
                    self.state.map = kvs.into_iter().map(|kv| (kv.key.clone(), kv)).collect();
                    if self.next <= rev {
                        // The revisions the watcher wants were compacted away.
                        if !evs.is_empty() {
                            out.push(WatchItem::Events(std::mem::take(&mut evs)));
                        }
                        out.push(WatchItem::Resync { revision: rev });
                        self.next = rev + 1;
                    }
                }
                Record::Txn(rev, ops) => {
                    let e = self.state.apply_owned(rev, ops, true);
                    if rev >= self.next {
                        evs.extend(e.into_iter().filter(|e| e.kv.key.starts_with(&self.prefix)));
                        self.next = rev + 1;
                    }
                }
            }
        }
        if !evs.is_empty() {
            out.push(WatchItem::Events(evs));
        }
        Ok(())
    }

    fn poll(&mut self) -> Result<Vec<WatchItem>, StoreError> {
        let mut out = Vec::new();
        self.drain(&mut out)?;
        let ino = std::fs::metadata(&self.path)
            .map_err(io_err(&self.path))?
            .ino();
        if ino != self.ino {
            // Compacted: nobody appends to the old file any more; finish it,
            // then continue in the new one after its snapshot.
            self.drain(&mut out)?;
            self.file = File::open(&self.path).map_err(io_err(&self.path))?;
            self.ino = self.file.metadata().map_err(io_err(&self.path))?.ino();
            self.offset = 0;
            self.state = KvState::default();
            self.drain(&mut out)?;
        }
        Ok(out)
    }
}

fn encode_snapshot<'a>(rev: Revision, kvs: impl Iterator<Item = &'a KeyValue>) -> Vec<u8> {
    let mut p = Vec::with_capacity(4096);
    p.extend_from_slice(&rev.to_le_bytes());
    let at = p.len();
    p.extend_from_slice(&0u32.to_le_bytes());
    let mut n = 0u32;
    for kv in kvs {
        n += 1;
        p.extend_from_slice(&(kv.key.len() as u32).to_le_bytes());
        p.extend_from_slice(kv.key.as_bytes());
        p.extend_from_slice(&(kv.value.len() as u32).to_le_bytes());
        p.extend_from_slice(&kv.value);
        p.extend_from_slice(&kv.create_revision.to_le_bytes());
        p.extend_from_slice(&kv.mod_revision.to_le_bytes());
    }
    p[at..at + 4].copy_from_slice(&n.to_le_bytes());
    frame(SNAP_MAGIC, &p)
}

fn frame(magic: &[u8; 4], p: &[u8]) -> Vec<u8> {
    let mut rec = Vec::with_capacity(HEADER + p.len());
    rec.extend_from_slice(magic);
    rec.extend_from_slice(&(p.len() as u32).to_le_bytes());
    rec.extend_from_slice(&crc32(p).to_le_bytes());
    rec.extend_from_slice(p);
    rec
}

fn encode_record(rev: Revision, ops: &[Op]) -> Vec<u8> {
    let mut p = Vec::with_capacity(64);
    p.extend_from_slice(&rev.to_le_bytes());
    p.extend_from_slice(&(ops.len() as u32).to_le_bytes());
    for op in ops {
        match op {
            Op::Put { key, value } => {
                p.push(1);
                p.extend_from_slice(&(key.len() as u32).to_le_bytes());
                p.extend_from_slice(key.as_bytes());
                p.extend_from_slice(&(value.len() as u32).to_le_bytes());
                p.extend_from_slice(value);
            }
            Op::Delete { key } => {
                p.push(2);
                p.extend_from_slice(&(key.len() as u32).to_le_bytes());
                p.extend_from_slice(key.as_bytes());
            }
        }
    }
    frame(MAGIC, &p)
}

#[derive(Debug, PartialEq)]
enum Record {
    Txn(Revision, Vec<Op>),
    Snapshot(Revision, Vec<KeyValue>),
}

struct Parsed {
    records: Vec<Record>,
    consumed: usize,
    torn: bool,
    /// Length of a leading snapshot record, if the buffer starts with one.
    snapshot_len: usize,
}

/// Parses whole records from `buf` (which starts at file offset `base`).
fn parse_records(buf: &[u8], base: u64, path: &Path) -> Result<Parsed, StoreError> {
    let mut pos = 0;
    let mut records = Vec::new();
    let mut snapshot_len = 0;
    let corrupt = |at: usize, reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: base + at as u64,
        reason,
    };
    while pos < buf.len() {
        let rest = &buf[pos..];
        let damaged = |reason: &str, end: usize| -> Result<Parsed, StoreError> {
            Err(corrupt(
                pos,
                format!("{reason} (record ends at {end} of {})", buf.len()),
            ))
        };
        if rest.len() < HEADER {
            return Ok(Parsed {
                records,
                consumed: pos,
                torn: true,
                snapshot_len,
            });
        }
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = HEADER.saturating_add(len);
        let snapshot = &rest[..4] == SNAP_MAGIC;
        if &rest[..4] != MAGIC && !snapshot {
            // Zeros from a file extended by a crash are a torn tail; anything
            // else is damage we must not paper over.
            if rest.iter().all(|b| *b == 0) {
                return Ok(Parsed {
                    records,
                    consumed: pos,
                    torn: true,
                    snapshot_len,
                });
            }
            return damaged("bad record magic", pos + 4);
        }
        if len > MAX_RECORD {
            return damaged("record length out of range", pos + end);
        }
        if end > rest.len() {
            return Ok(Parsed {
                records,
                consumed: pos,
                torn: true,
                snapshot_len,
            });
        }
        let payload = &rest[HEADER..end];
        let crc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if crc32(payload) != crc {
            if end == rest.len() {
                return Ok(Parsed {
                    records,
                    consumed: pos,
                    torn: true,
                    snapshot_len,
                });
            }
            return damaged("checksum mismatch", pos + end);
        }
        let rec = if snapshot {
            if pos == 0 {
                snapshot_len = end;
            }
            decode_snapshot(payload).map(|(r, kvs)| Record::Snapshot(r, kvs))
        } else {
            decode_payload(payload).map(|(r, ops)| Record::Txn(r, ops))
        };
        records.push(rec.ok_or_else(|| corrupt(pos, "bad record payload".into()))?);
        pos += end;
    }
    Ok(Parsed {
        records,
        consumed: pos,
        torn: false,
        snapshot_len,
    })
}

struct R<'a>(&'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u32(&mut self) -> Option<u32> {
        let b = self.take(4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

fn decode_snapshot(p: &[u8]) -> Option<(Revision, Vec<KeyValue>)> {
    let mut r = R(p);
    let rev = r.i64()?;
    let n = r.u32()? as usize;
    let mut kvs = Vec::with_capacity(n.min(1 << 16));
    for _ in 0..n {
        let key = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        let value = r.bytes()?.to_vec();
        let create_revision = r.i64()?;
        let mod_revision = r.i64()?;
        kvs.push(KeyValue {
            key,
            value,
            create_revision,
            mod_revision,
        });
    }
    if !r.0.is_empty() {
        return None;
    }
    Some((rev, kvs))
}

fn decode_payload(p: &[u8]) -> Option<(Revision, Vec<Op>)> {
    let mut r = R(p);
    let rev = r.i64()?;
    let n = r.u32()? as usize;
    let mut ops = Vec::with_capacity(n.min(1024));
    for _ in 0..n {
        let tag = r.take(1)?[0];
        let key = String::from_utf8(r.bytes()?.to_vec()).ok()?;
        match tag {
            1 => ops.push(Op::Put {
                key,
                value: r.bytes()?.to_vec(),
            }),
            2 => ops.push(Op::Delete { key }),
            _ => return None,
        }
    }
    if !r.0.is_empty() {
        return None;
    }
    Some((rev, ops))
}

/// CRC-32 (IEEE), table-driven.
fn crc32(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut c = 0xFFFF_FFFFu32;
    for b in data {
        c = TABLE[((c ^ *b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

#[cfg(test)]
mod tests;
