//! Host-side netlink workers: a few long-lived threads, each with its own
//! current-thread runtime and its own netlink socket, that run kernel
//! requests handed to them. The kernel does a request's work inside
//! sendmsg, so one shared socket would serialise every concurrent ADD/DEL
//! (a veth deletion alone waits for RCU); separate sockets let the kernel
//! overlap what it can. Workers are started on demand (up to
//! [`MAX_WORKERS`]) and reused, so no request builds a runtime or a socket.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use rtnetlink::Handle;

use super::DpError;

/// Upper bound on concurrent host-side kernel requests.
pub const MAX_WORKERS: usize = 32;

type LocalFut = Pin<Box<dyn Future<Output = ()>>>;
type Job = Box<dyn FnOnce(Handle) -> LocalFut + Send>;

/// The pool; cheap to clone.
#[derive(Clone)]
pub struct Workers {
    inner: Arc<Inner>,
}

struct Inner {
    /// Unbounded, but never longer than the number of callers awaiting an
    /// answer (each submit waits for its job).
    tx: Mutex<mpsc::Sender<Job>>,
    rx: Arc<Mutex<mpsc::Receiver<Job>>>,
    idle: Arc<AtomicUsize>,
    started: AtomicUsize,
}

impl Workers {
    pub fn new() -> Workers {
        let (tx, rx) = mpsc::channel();
        Workers {
            inner: Arc::new(Inner {
                tx: Mutex::new(tx),
                rx: Arc::new(Mutex::new(rx)),
                idle: Arc::new(AtomicUsize::new(0)),
                started: AtomicUsize::new(0),
            }),
        }
    }

    fn spawn_worker(&self) -> Result<(), DpError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DpError::Io(format!("runtime: {e}")))?;
        let (rx, idle) = (self.inner.rx.clone(), self.inner.idle.clone());
        std::thread::Builder::new()
            .name("flatnet-nl".into())
            .spawn(move || {
                let handle = rt.block_on(async {
                    let (conn, handle, _) = rtnetlink::new_connection().ok()?;
                    tokio::spawn(conn);
                    Some(handle)
                });
                let Some(handle) = handle else {
                    tracing::error!("netlink worker: cannot open a netlink socket");
                    return;
                };
                loop {
                    idle.fetch_add(1, Ordering::SeqCst);
                    let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                    idle.fetch_sub(1, Ordering::SeqCst);
                    match job {
                        Ok(job) => rt.block_on(job(handle.clone())),
                        Err(_) => return,
                    }
                }
            })
            .map_err(|e| DpError::Io(format!("spawn thread: {e}")))?;
        self.inner.started.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Runs `f` on a worker with that worker's netlink handle.
    pub async fn run<T, F, Fut>(&self, f: F) -> Result<T, DpError>
    where
        T: Send + 'static,
        F: FnOnce(Handle) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DpError>> + 'static,
    {
        if self.inner.idle.load(Ordering::SeqCst) == 0
            && self.inner.started.load(Ordering::SeqCst) < MAX_WORKERS
        {
            self.spawn_worker()?;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |h| {
            Box::pin(async move {
                let _ = tx.send(f(h).await);
            })
        });
        self.inner
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(job)
            .map_err(|_| DpError::Io("netlink workers stopped".into()))?;
        rx.await
            .map_err(|_| DpError::Io("netlink worker died".into()))?
    }
}

impl Default for Workers {
    fn default() -> Self {
        Workers::new()
    }
}
