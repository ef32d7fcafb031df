//! Network namespaces: opening one, and running netlink work on a thread
//! that has joined it (the namespace is per thread).

use super::*;
use std::future::Future;
use std::path::Path;

use rtnetlink::Handle;

/// Runs `f` with a netlink handle whose socket lives in the namespace at
/// `path`. A socket belongs to the namespace of the thread that creates
/// it, so a short-lived thread joins the namespace only to create the
/// socket (registered with the caller's runtime) and exits; `f` then runs
/// on the caller's runtime. No runtime is built per call, and no thread of
/// the runtime ever leaves the host namespace.
pub async fn in_netns<T, F, Fut>(path: &Path, f: F) -> Result<T, DpError>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T, DpError>>,
{
    let ns = open_netns(path)?;
    let rt = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("flatnet-netns".into())
        .spawn(move || {
            let r = (|| {
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| DpError::Io(format!("setns: {e}")))?;
                let _in_rt = rt.enter();
                rtnetlink::new_connection().map_err(|e| DpError::Io(format!("netlink socket: {e}")))
            })();
            let _ = tx.send(r);
        })
        .map_err(|e| DpError::Io(format!("spawn thread: {e}")))?;
    let (conn, handle, _) = rx
        .await
        .map_err(|_| DpError::Io("namespace worker thread died".into()))??;
    let task = tokio::spawn(conn);
    let r = f(handle).await;
    task.abort();
    r
}

/// Opens a namespace file, telling "gone" apart from other failures.
pub fn open_netns(path: &Path) -> Result<std::fs::File, DpError> {
    let f = std::fs::File::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DpError::NetnsNotFound(path.to_path_buf())
        } else {
            DpError::NetnsOpen(path.to_path_buf(), e)
        }
    })?;
    // A path left behind by a deleted namespace (or one whose bind mount
    // lives in another mount namespace) is a plain file: say so.
    match nix::sys::statfs::fstatfs(&f) {
        Ok(st) if st.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => Ok(f),
        Ok(_) => Err(DpError::NetnsNotFound(path.to_path_buf())),
        Err(e) => Err(DpError::NetnsOpen(path.to_path_buf(), e.into())),
    }
}
