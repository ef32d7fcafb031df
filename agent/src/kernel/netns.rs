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

// NS_GET_NSTYPE = _IO(0xb7, 0x3) (linux/nsfs.h).
nix::ioctl_none!(ns_get_nstype, 0xb7, 0x3);

/// The CLONE_NEW* values NS_GET_NSTYPE answers with (linux/sched.h).
mod libc_clone {
    pub const NEWNET: i32 = 0x4000_0000;

    pub fn name(kind: i32) -> &'static str {
        match kind {
            0x0002_0000 => "mnt",
            0x0400_0000 => "uts",
            0x0800_0000 => "ipc",
            0x1000_0000 => "user",
            0x2000_0000 => "pid",
            0x0200_0000 => "cgroup",
            0x80 => "time",
            _ => "non-network",
        }
    }
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
        Ok(st) if st.filesystem_type() == nix::sys::statfs::NSFS_MAGIC => {}
        Ok(_) => return Err(DpError::NetnsNotFound(path.to_path_buf())),
        Err(e) => return Err(DpError::NetnsOpen(path.to_path_buf(), e.into())),
    }
    // Another kind of namespace (`/proc/self/ns/mnt`): ask the kernel.
    use std::os::fd::AsRawFd;
    // SAFETY: NS_GET_NSTYPE takes no argument and only reads the type of
    // the namespace behind the descriptor; `f` stays open for the call.
    let kind = unsafe { ns_get_nstype(f.as_raw_fd()) }
        .map_err(|e| DpError::NetnsOpen(path.to_path_buf(), e.into()))?;
    if kind != libc_clone::NEWNET {
        return Err(DpError::NotContainerNetns(
            path.to_path_buf(),
            format!(
                "a {} namespace, not a network namespace",
                libc_clone::name(kind)
            ),
        ));
    }
    Ok(f)
}

/// Opens a container's network namespace for ADD: a network namespace,
/// and never the host's own (flatnetd's, or PID 1's), whose interfaces and
/// default route a container's setup would otherwise take over.
pub fn container_netns(path: &Path) -> Result<std::fs::File, DpError> {
    use std::os::unix::fs::MetadataExt;
    let f = open_netns(path)?;
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let this = f
        .metadata()
        .map(id)
        .map_err(|e| DpError::NetnsOpen(path.to_path_buf(), e))?;
    for host in ["/proc/self/ns/net", "/proc/1/ns/net"] {
        if std::fs::metadata(host).map(id).ok() == Some(this) {
            return Err(DpError::NotContainerNetns(
                path.to_path_buf(),
                format!("the host's own network namespace (same as {host})"),
            ));
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_namespace_and_other_namespace_kinds_are_refused() {
        // (PID 1's is checked too, where flatnetd may read it.)
        for p in ["/proc/self/ns/net", "/proc/thread-self/ns/net"] {
            match container_netns(Path::new(p)) {
                Err(DpError::NotContainerNetns(_, why)) => assert!(why.contains("host"), "{why}"),
                other => panic!("{p}: {other:?}"),
            }
        }
        match open_netns(Path::new("/proc/self/ns/mnt")) {
            Err(DpError::NotContainerNetns(_, why)) => assert!(why.contains("mnt"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            open_netns(Path::new("/nonexistent/ns")),
            Err(DpError::NetnsNotFound(_))
        ));
    }
}
