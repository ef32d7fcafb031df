//! Names outside the zone, forwarded to the host's resolvers (the
//! `nameserver` lines of the configured resolv.conf, re-read when the file
//! changes). Each query goes to the resolvers in order with a fresh ID and
//! a fresh source port; a truncated UDP answer is asked again over TCP;
//! SERVFAIL, REFUSED or NOTIMP moves on to the next resolver. Messages are
//! hickory's: decoded, checked against the question, re-encoded.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one resolver has to answer.
const PER_SERVER: Duration = Duration::from_millis(1500);
/// At most this many resolvers are tried for one query (like the stub
/// resolver's MAXNS).
const MAX_SERVERS: usize = 3;
/// How often the resolv.conf's modification time is looked at.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no nameserver in {0} (other than flatnetd's own)")]
    NoServers(String),
    #[error("nameserver {0}: no answer in time")]
    Timeout(SocketAddr),
    #[error("nameserver {server}: {msg}")]
    Io { server: SocketAddr, msg: String },
    #[error("query cannot be encoded: {0}")]
    Encode(String),
}

struct Cached {
    servers: Vec<SocketAddr>,
    mtime: Option<SystemTime>,
    checked: Option<Instant>,
}

pub struct Forwarder {
    path: PathBuf,
    exclude: Vec<SocketAddr>,
    cached: Mutex<Cached>,
}

fn scope_index(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok()
}

/// A query ID nobody on the path can predict: SipHash with the process's
/// random keys over a counter.
fn random_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    (h.finish() & 0xffff) as u16
}

impl Forwarder {
    /// `exclude`: flatnetd's own listener (a resolv.conf naming it would loop).
    pub fn new(path: PathBuf, exclude: Vec<SocketAddr>) -> Forwarder {
        Forwarder {
            path,
            exclude,
            cached: Mutex::new(Cached {
                servers: Vec::new(),
                mtime: None,
                checked: None,
            }),
        }
    }

    /// The resolvers now (the file is read again when its mtime changed;
    /// an unreadable file keeps the last list).
    pub fn servers(&self) -> Vec<SocketAddr> {
        let mut c = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if c.checked.is_some_and(|t| t.elapsed() < RECHECK) {
            return c.servers.clone();
        }
        c.checked = Some(Instant::now());
        let mtime = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        if mtime.is_some() && mtime != c.mtime {
            match std::fs::read_to_string(&self.path) {
                Ok(text) => {
                    c.servers = super::resolv::nameservers(&text, &self.exclude, scope_index);
                    c.mtime = mtime;
                    tracing::info!(path = %self.path.display(), servers = ?c.servers, "dns: forwarding to");
                }
                Err(e) => {
                    tracing::warn!(path = %self.path.display(), error = %e, "dns: resolv.conf unreadable")
                }
            }
        }
        c.servers.clone()
    }

    /// Asks the resolvers `query` (a question; its ID is replaced) and
    /// returns the first usable answer.
    pub async fn forward(&self, query: &Message) -> Result<Message, ForwardError> {
        let servers = self.servers();
        if servers.is_empty() {
            return Err(ForwardError::NoServers(self.path.display().to_string()));
        }
        let mut q = query.clone();
        let mut last_err = None;
        let mut fallback = None;
        for server in servers.into_iter().take(MAX_SERVERS) {
            q.metadata.id = random_id();
            let bytes = q
                .to_vec()
                .map_err(|e| ForwardError::Encode(e.to_string()))?;
            let mut r = tokio::time::timeout(PER_SERVER, udp_exchange(server, &bytes, &q)).await;
            if let Ok(Ok(m)) = &r
                && m.metadata.truncation
            {
                r = tokio::time::timeout(PER_SERVER, tcp_exchange(server, &bytes, &q)).await;
            }
            match r {
                Err(_) => last_err = Some(ForwardError::Timeout(server)),
                Ok(Err(e)) => last_err = Some(e),
                Ok(Ok(m)) => match m.metadata.response_code {
                    ResponseCode::ServFail | ResponseCode::Refused | ResponseCode::NotImp => {
                        fallback = Some(m);
                    }
                    _ => return Ok(m),
                },
            }
        }
        match (fallback, last_err) {
            (Some(m), _) => Ok(m),
            (None, Some(e)) => Err(e),
            (None, None) => Err(ForwardError::NoServers(self.path.display().to_string())),
        }
    }
}

/// Whether `m` answers `q`: a response with its ID and question.
fn answers(m: &Message, q: &Message) -> bool {
    m.metadata.message_type == MessageType::Response
        && m.metadata.id == q.metadata.id
        && m.queries == q.queries
}

fn io_err(server: SocketAddr) -> impl Fn(std::io::Error) -> ForwardError {
    move |e| ForwardError::Io {
        server,
        msg: e.to_string(),
    }
}

async fn udp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    q: &Message,
) -> Result<Message, ForwardError> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(io_err(server))?;
    s.connect(server).await.map_err(io_err(server))?;
    s.send(bytes).await.map_err(io_err(server))?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = s.recv(&mut buf).await.map_err(io_err(server))?;
        // Anything else arriving on this port (a late or forged answer) is
        // skipped; the caller's deadline bounds the wait.
        if let Ok(m) = Message::from_vec(&buf[..n])
            && answers(&m, q)
        {
            return Ok(m);
        }
    }
}

/// One exchange over TCP: RFC 1035 4.2.2 framing (a two-octet length
/// before each message).
async fn tcp_exchange(
    server: SocketAddr,
    bytes: &[u8],
    q: &Message,
) -> Result<Message, ForwardError> {
    let e = io_err(server);
    let len =
        u16::try_from(bytes.len()).map_err(|_| ForwardError::Encode("query too long".into()))?;
    let mut s = tokio::net::TcpStream::connect(server).await.map_err(&e)?;
    let mut out = Vec::with_capacity(bytes.len() + 2);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    s.write_all(&out).await.map_err(&e)?;
    let n = s.read_u16().await.map_err(&e)?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await.map_err(&e)?;
    match Message::from_vec(&buf) {
        Ok(m) if answers(&m, q) => Ok(m),
        Ok(_) => Err(ForwardError::Io {
            server,
            msg: "answer does not match the question".into(),
        }),
        Err(err) => Err(ForwardError::Io {
            server,
            msg: format!("undecodable answer: {err}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_vary() {
        let ids: std::collections::HashSet<u16> = (0..64).map(|_| random_id()).collect();
        assert!(ids.len() > 56, "{}", ids.len());
    }

    #[test]
    fn servers_follow_the_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("resolv.conf");
        let f = Forwarder::new(p.clone(), vec!["169.254.1.1:53".parse().unwrap()]);
        assert!(f.servers().is_empty(), "no file yet");
        std::fs::write(&p, "nameserver 127.0.0.2\nnameserver 169.254.1.1\n").unwrap();
        f.cached.lock().unwrap().checked = None;
        assert_eq!(f.servers(), vec!["127.0.0.2:53".parse().unwrap()]);
    }

    #[tokio::test]
    async fn no_servers_is_an_error_naming_the_file() {
        let f = Forwarder::new("/nonexistent/resolv.conf".into(), vec![]);
        let e = f.forward(&Message::query()).await.unwrap_err().to_string();
        assert!(e.contains("/nonexistent/resolv.conf"), "{e}");
    }
}
