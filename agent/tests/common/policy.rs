//! Helpers of the application-policy tests: sockets opened inside a
//! namespace (servers and connects with a deadline), CNI ADD with an
//! app, and the `flatnet policy` CLI.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use flatnet_lab::Netns;
use serde_json::{Value, json};

use super::{CLI, Host, result_v4};

/// How long a connection attempt may take; a dropped SYN or datagram
/// fails it.
pub const ATTEMPT: Duration = Duration::from_millis(1500);

/// Runs `f` on a thread that has entered `ns` (sockets it opens live there).
pub fn in_ns<T: Send + 'static>(
    ns: &Netns,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    let path = ns.path();
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).unwrap();
        nix::sched::setns(fd, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
}

/// A TCP server in `ns` on `port` that answers every connection with
/// the peer address it saw, and a UDP one echoing the same; they run
/// until the test process ends.
pub fn serve(ns: &Netns, port: u16) {
    let (tx, rx) = mpsc::channel();
    in_ns(ns, move || {
        let t = TcpListener::bind(("0.0.0.0", port)).unwrap();
        let u = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        tx.send(()).unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((n, peer)) = u.recv_from(&mut buf) {
                let _ = u.send_to(&buf[..n], peer);
            }
        });
        for s in t.incoming().flatten() {
            let peer = s
                .peer_addr()
                .map(|p| p.ip().to_string())
                .unwrap_or_default();
            let mut s = s;
            let _ = s.write_all(peer.as_bytes());
        }
    });
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
}

/// Connects from `ns` to `to:port` over TCP; the address the server saw.
pub fn tcp(ns: &Netns, to: &str, port: u16) -> Option<String> {
    let addr: SocketAddr = format!("{to}:{port}").parse().unwrap();
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, ATTEMPT).ok()?;
        s.set_read_timeout(Some(ATTEMPT)).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .join()
    .unwrap()
}

/// One UDP round trip from `ns`.
pub fn udp(ns: &Netns, to: &str, port: u16) -> bool {
    let addr: SocketAddr = format!("{to}:{port}").parse().unwrap();
    in_ns(ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.set_read_timeout(Some(ATTEMPT)).unwrap();
        s.send_to(b"ping", addr).unwrap();
        let mut b = [0u8; 8];
        s.recv_from(&mut b).is_ok()
    })
    .join()
    .unwrap()
}

pub fn add_app(host: &Host, id: &str, c: &Netns, app: &str) -> String {
    let mut conf = host.conf("1.1.0");
    conf["args"] = json!({"flatnet": {"app": app}});
    let (v, code) = host.cni("ADD", id, &c.path(), "eth0", &conf);
    assert_eq!(code, 0, "ADD failed: {v}\nlog:\n{}", host.log());
    result_v4(&v)
}

pub fn cli(host: &Host, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(CLI)
        .arg("--socket")
        .arg(host.socket())
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn apply(host: &Host, name: &str, text: &str) -> (i32, String, String) {
    let f = host.dir.path().join(name);
    std::fs::write(&f, text).unwrap();
    cli(host, &["policy", "apply", "-f", f.to_str().unwrap()])
}

pub fn trace(host: &Host, from: &str, to: &str, proto: &str, port: u16) -> Value {
    host.cli_json(&[
        "policy",
        "trace",
        "--from",
        from,
        "--to",
        to,
        "--proto",
        proto,
        "--port",
        &port.to_string(),
    ])
}
