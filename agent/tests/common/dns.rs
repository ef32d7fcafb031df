//! Helpers of the DNS tests: queries sent from inside a namespace (UDP and
//! TCP, each with a deadline), a resolv.conf for `ip netns exec` (so the
//! C library resolves through flatnetd as a container would), and dnsmasq
//! as a test resolver in a namespace.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flatnet_lab::{Daemon, Netns};
use hickory_proto::op::{Message, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};

use super::policy::in_ns;

/// How long one query may wait for its answer.
pub const QUERY_TIMEOUT: Duration = Duration::from_millis(1500);

/// flatnetd's default listener.
pub const LISTEN: &str = "169.254.1.1:53";

/// The `[dns]` section of a host's config.
pub fn dns_section(forward: bool, resolv_conf: &Path) -> String {
    format!(
        "[dns]\nenabled = true\nforward = {forward}\nresolv_conf = \"{}\"\n",
        resolv_conf.display()
    )
}

fn encode(name: &str, t: RecordType) -> Vec<u8> {
    let mut q = Message::query();
    q.metadata.recursion_desired = true;
    q.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
    q.to_vec().unwrap()
}

/// Sends raw octets from `ns` to `server` over UDP; the answer, if any.
pub fn udp_raw(ns: &Netns, server: &str, bytes: Vec<u8>) -> Option<Vec<u8>> {
    let to: SocketAddr = server.parse().unwrap();
    in_ns(ns, move || {
        let s = UdpSocket::bind(if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }).ok()?;
        s.set_read_timeout(Some(QUERY_TIMEOUT)).ok()?;
        s.send_to(&bytes, to).ok()?;
        let mut buf = vec![0u8; 65535];
        let (n, _) = s.recv_from(&mut buf).ok()?;
        buf.truncate(n);
        Some(buf)
    })
    .join()
    .unwrap()
}

/// Sends raw octets from `ns` over TCP with RFC 1035 framing.
pub fn tcp_raw(ns: &Netns, server: &str, bytes: Vec<u8>) -> Option<Vec<u8>> {
    let to: SocketAddr = server.parse().unwrap();
    in_ns(ns, move || {
        let mut s = TcpStream::connect_timeout(&to, QUERY_TIMEOUT).ok()?;
        s.set_read_timeout(Some(QUERY_TIMEOUT)).ok()?;
        let mut out = (bytes.len() as u16).to_be_bytes().to_vec();
        out.extend_from_slice(&bytes);
        s.write_all(&out).ok()?;
        let mut len = [0u8; 2];
        s.read_exact(&mut len).ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).ok()?;
        Some(buf)
    })
    .join()
    .unwrap()
}

/// One question from `ns` to `server`; `None` when nothing answered in time.
pub fn query(ns: &Netns, server: &str, name: &str, t: RecordType, tcp: bool) -> Option<Message> {
    let q = encode(name, t);
    let a = if tcp {
        tcp_raw(ns, server, q)?
    } else {
        udp_raw(ns, server, q)?
    };
    Some(Message::from_vec(&a).unwrap())
}

/// The answer's A and AAAA addresses, sorted.
pub fn addrs(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    v.sort();
    v
}

/// Asks `name` (A) and returns (rcode, sorted addresses); panics when
/// nothing answers three times (a lost datagram on a loaded machine is
/// retried, as a stub resolver would).
pub fn resolve(ns: &Netns, name: &str) -> (ResponseCode, Vec<String>) {
    for _ in 0..3 {
        if let Some(m) = query(ns, LISTEN, name, RecordType::A, false) {
            return (m.metadata.response_code, addrs(&m));
        }
    }
    panic!("no answer for {name} in three tries")
}

/// Polls (5 s deadline) until `server` answers `name` (`t`, over TCP or
/// UDP) with exactly `want` (rcode, sorted addresses): a record reaches
/// every host's zone through the datastore's watch, a few ms after the ADD
/// that wrote it returned.
pub fn expect_answer(
    ns: &Netns,
    server: &str,
    name: &str,
    t: RecordType,
    tcp: bool,
    want: (ResponseCode, Vec<String>),
) {
    let mut last = None;
    let r = flatnet_lab::wait_for(name, Duration::from_secs(5), || {
        let got = query(ns, server, name, t, tcp).map(|m| (m.metadata.response_code, addrs(&m)));
        let ok = got.as_ref() == Some(&want);
        last = got;
        Ok(ok.then_some(()))
    });
    if let Err(e) = r {
        panic!("{e}: last answer {last:?}, want {want:?}");
    }
}

/// [`expect_answer`] for A over UDP at the default listener.
pub fn expect_a(ns: &Netns, name: &str, code: ResponseCode, addrs: &[&str]) {
    let want = (code, addrs.iter().map(|a| a.to_string()).collect());
    expect_answer(ns, LISTEN, name, RecordType::A, false, want);
}

/// `/etc/netns/<ns>/resolv.conf`: `ip netns exec` bind-mounts it over
/// `/etc/resolv.conf`, so programs run in that namespace resolve as a
/// container whose runtime wrote the CNI result's `dns`. Removed on drop.
pub struct NetnsResolvConf {
    dir: PathBuf,
    /// `/etc/netns` did not exist before: removed too when left empty.
    made_parent: bool,
}

impl NetnsResolvConf {
    pub fn from_cni(ns: &Netns, dns: &serde_json::Value) -> NetnsResolvConf {
        let made_parent = !Path::new("/etc/netns").exists();
        let dir = PathBuf::from("/etc/netns").join(ns.name());
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::new();
        for s in dns["nameservers"].as_array().unwrap() {
            text += &format!("nameserver {}\n", s.as_str().unwrap());
        }
        let search: Vec<&str> = dns["search"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        text += &format!(
            "search {}\noptions timeout:1 attempts:2\n",
            search.join(" ")
        );
        std::fs::write(dir.join("resolv.conf"), text).unwrap();
        NetnsResolvConf { dir, made_parent }
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if self.made_parent {
            // Only when empty: another test's namespace may have its own.
            let _ = std::fs::remove_dir("/etc/netns");
        }
    }
}

/// dnsmasq in `ns` answering on `ip:53` only, with no upstream: `extra`
/// gives its records (`--address=/name/ip`, `--addn-hosts=FILE`, ...).
pub fn dnsmasq(ns: &Netns, ip: &str, dir: &Path, extra: &[String]) -> Daemon {
    let mut cmd = ns.command("dnsmasq");
    cmd.args([
        "--keep-in-foreground",
        "--no-resolv",
        "--no-hosts",
        "--conf-file=/dev/null",
        "--bind-interfaces",
        "--port=53",
        "--user=root",
    ])
    .arg(format!("--listen-address={ip}"))
    .arg(format!("--pid-file={}", dir.join("dnsmasq.pid").display()))
    .arg(format!(
        "--log-facility={}",
        dir.join("dnsmasq.log").display()
    ))
    .args(extra)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    ns.spawn(&mut cmd).unwrap()
}
