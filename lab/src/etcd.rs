//! A real etcd inside a lab namespace, for datastore tests and benchmarks.
//!
//! etcd listens on the namespace's own 127.0.0.1 (ports 2379/2380 are free
//! there whatever the machine runs), with a fresh data directory that is
//! removed on drop. Clients must run inside the namespace too:
//! `ns.run_in(|| { build a current-thread runtime; connect to etcd.endpoint() })`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::{Daemon, LabError, Netns, wait_for};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Client port inside the namespace.
pub const CLIENT_PORT: u16 = 2379;
const PEER_PORT: u16 = 2380;

/// A running (or stopped) etcd owned by a test.
#[derive(Debug)]
pub struct Etcd {
    ns_path: String,
    ns_name: String,
    dir: PathBuf,
    daemon: Option<Daemon>,
}

fn find_etcd() -> Result<PathBuf, LabError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("etcd"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            LabError::Other(
                "etcd not found in PATH: install Debian's etcd-server (apt-get install etcd-server)"
                    .into(),
            )
        })
}

impl Etcd {
    /// Starts etcd in `ns` and waits until it reports healthy.
    pub fn start(ns: &Netns) -> Result<Etcd, LabError> {
        find_etcd()?;
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "flatnet-etcd-{}-{seq}-{}",
            std::process::id(),
            ns.name()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut e = Etcd {
            ns_path: ns.path(),
            ns_name: ns.name().to_string(),
            dir,
            daemon: None,
        };
        e.spawn(ns)?;
        Ok(e)
    }

    /// `http://127.0.0.1:2379`, valid inside the namespace only.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{CLIENT_PORT}")
    }

    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    fn spawn(&mut self, ns: &Netns) -> Result<(), LabError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("etcd.log"))?;
        let client = format!("http://127.0.0.1:{CLIENT_PORT}");
        let peer = format!("http://127.0.0.1:{PEER_PORT}");
        let data = self.dir.join("data");
        let mut cmd = ns.command("etcd");
        cmd.args(["--name", "lab", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
                "--initial-cluster",
                &format!("lab={peer}"),
            ])
            .stdout(Stdio::null())
            .stderr(log);
        self.daemon = Some(ns.spawn(&mut cmd)?);
        let ns_path = self.ns_path.clone();
        let res = wait_for("etcd healthy", Duration::from_secs(20), || {
            let p = ns_path.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            // Probe from a thread inside the namespace.
            std::thread::spawn(move || {
                let r = (|| -> Result<bool, LabError> {
                    crate::netns::enter(&p)?;
                    let mut s = TcpStream::connect_timeout(
                        &([127, 0, 0, 1], CLIENT_PORT).into(),
                        Duration::from_millis(500),
                    )?;
                    s.set_read_timeout(Some(Duration::from_secs(1)))?;
                    s.write_all(b"GET /health HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
                    let mut body = String::new();
                    s.read_to_string(&mut body)?;
                    Ok(body.contains("\"health\":\"true\""))
                })();
                let _ = tx.send(r);
            });
            match rx.recv_timeout(Duration::from_secs(3)) {
                Ok(Ok(true)) => Ok(Some(())),
                Ok(Ok(false)) => Ok(None),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(LabError::Other("health probe hung".into())),
            }
        });
        if let Err(e) = res {
            let log = std::fs::read_to_string(self.dir.join("etcd.log")).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(10)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            return Err(LabError::Other(format!(
                "etcd in {} did not become healthy: {e}\nlast log lines:\n{tail}",
                self.ns_name
            )));
        }
        Ok(())
    }

    /// Stops etcd (SIGTERM, then SIGKILL), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.terminate(Duration::from_secs(5));
        }
    }

    /// Starts it again on the same data directory.
    pub fn restart(&mut self, ns: &Netns) -> Result<(), LabError> {
        self.stop();
        self.spawn(ns)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
