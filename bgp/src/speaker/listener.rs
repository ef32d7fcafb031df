//! Passive TCP: one accept task per listen address, handing connections to
//! the driver (which knows which peer task they belong to).

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::SpeakerError;
use super::driver::CoreMsg;
use crate::session::socket;

/// Binds every address and starts its accept task.
pub(super) fn bind(
    addrs: &[SocketAddr],
    tx: &mpsc::UnboundedSender<CoreMsg>,
) -> Result<Vec<Arc<TcpListener>>, SpeakerError> {
    let mut listeners = Vec::new();
    for addr in addrs {
        let l = socket::listen(*addr).map_err(|source| SpeakerError::Listen {
            addr: *addr,
            source,
        })?;
        // GTSM peers need our SYN-ACK at TTL 255 too; harmless for others.
        let _ = socket::set_ttl255(l.as_raw_fd(), addr.is_ipv6());
        let l = Arc::new(l);
        listeners.push(l.clone());
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                match l.accept().await {
                    Ok((s, a)) => {
                        if tx.send(CoreMsg::Accepted(s, a)).is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }
    Ok(listeners)
}
