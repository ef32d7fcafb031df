//! A scripted BGP peer over a blocking `TcpStream`: it says exactly what
//! its script sends, with flatnet's codec, and reads whole messages back.
//! The feed benchmark's feeder is one; tests that need a peer misbehaving
//! on purpose (a BoRR never followed by EoRR) are others.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use flatnet_bgp::wire::{DecodeContext, Message, Open, frame};

use crate::{LabError, wait_for};

/// Errors of a scripted session.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error("encoding a message: {0}")]
    Encode(String),
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("bad framing: {0}")]
    Framing(String),
    #[error("the peer closed the connection")]
    Closed,
    #[error("NOTIFICATION during OPEN: {0}")]
    Notification(String),
}

impl PeerError {
    /// The socket's read timeout expired: nothing arrived, the session may
    /// still be fine (a partial message stays buffered for the next read).
    pub fn is_timeout(&self) -> bool {
        matches!(self, PeerError::Io(e) if matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ))
    }
}

/// One end of a BGP session driven by a script, with its read buffer.
#[derive(Debug)]
pub struct ScriptedPeer {
    stream: TcpStream,
    buf: Vec<u8>,
    ctx: DecodeContext,
}

impl ScriptedPeer {
    /// Wraps an accepted or connected stream; `ctx` encodes and decodes
    /// (the capabilities the script negotiates).
    pub fn new(stream: TcpStream, ctx: DecodeContext) -> Self {
        ScriptedPeer {
            stream,
            buf: Vec::new(),
            ctx,
        }
    }

    /// Connects to `peer`, retrying until it accepts or `within` passes.
    /// Call it on a thread that joined the peer's namespace.
    pub fn connect(
        peer: SocketAddr,
        within: Duration,
        ctx: DecodeContext,
    ) -> Result<Self, PeerError> {
        let stream = wait_for(&format!("{peer} accepting BGP connections"), within, || {
            Ok(TcpStream::connect_timeout(&peer, Duration::from_secs(1)).ok())
        })?;
        Ok(Self::new(stream, ctx))
    }

    /// The socket, for timeouts, cloning and shutdown.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// A second handle on the same session that takes over reading, with
    /// whatever is buffered, so one thread reads while another writes.
    pub fn reader(&mut self) -> Result<ScriptedPeer, PeerError> {
        Ok(ScriptedPeer {
            stream: self.stream.try_clone()?,
            buf: std::mem::take(&mut self.buf),
            ctx: self.ctx,
        })
    }

    /// Encodes and writes one message.
    pub fn send(&mut self, m: &Message) -> Result<(), PeerError> {
        let b = m
            .to_bytes(&self.ctx)
            .map_err(|e| PeerError::Encode(e.to_string()))?;
        self.stream.write_all(&b)?;
        Ok(())
    }

    /// Writes bytes that are already whole encoded messages.
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), PeerError> {
        self.stream.write_all(bytes)?;
        Ok(())
    }

    /// Reads one whole message (blocking, with the socket's read timeout).
    /// An undecodable message is consumed, so the next read starts after it.
    pub fn read_msg(&mut self) -> Result<Message, PeerError> {
        loop {
            match frame(&self.buf, &self.ctx) {
                Ok(Some(n)) => {
                    let m = Message::decode(&self.buf[..n], &self.ctx);
                    self.buf.drain(..n);
                    return m.map_err(|e| PeerError::Decode(format!("{e:?}")));
                }
                Ok(None) => {}
                Err(n) => return Err(PeerError::Framing(n.to_string())),
            }
            let mut tmp = [0u8; 4096];
            let r = self.stream.read(&mut tmp)?;
            if r == 0 {
                return Err(PeerError::Closed);
            }
            self.buf.extend_from_slice(&tmp[..r]);
        }
    }

    /// The OPEN exchange as the active side of RFC 4271 §8: sends `open`,
    /// answers the peer's OPEN with a KEEPALIVE and returns at the peer's
    /// KEEPALIVE, with the negotiated hold time.
    pub fn establish(&mut self, open: Open) -> Result<u16, PeerError> {
        let mut hold = open.hold_time;
        self.send(&Message::Open(open))?;
        loop {
            match self.read_msg()? {
                Message::Open(o) => {
                    hold = hold.min(o.hold_time);
                    self.send(&Message::Keepalive)?;
                }
                Message::Keepalive => return Ok(hold),
                Message::Notification(n) => return Err(PeerError::Notification(n.to_string())),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, TcpListener};

    use flatnet_bgp::wire::{Capability, Family};

    fn ctx() -> DecodeContext {
        DecodeContext {
            four_octet_as: true,
            ..DecodeContext::default()
        }
    }

    fn open(asn: u32, hold: u16) -> Open {
        Open::new(
            asn,
            hold,
            Ipv4Addr::new(10, 0, 0, 1),
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::FourOctetAs(asn),
            ],
        )
    }

    /// Two scripted peers on loopback establish with the smaller hold time,
    /// and a message split over two writes is read whole.
    #[test]
    fn two_scripted_peers_establish_and_read_split_messages() -> Result<(), PeerError> {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let addr = l.local_addr()?;
        let other = std::thread::spawn(move || -> Result<u16, PeerError> {
            let (s, _) = l.accept()?;
            let mut p = ScriptedPeer::new(s, ctx());
            let hold = p.establish(open(65002, 30))?;
            let ka = Message::Keepalive
                .to_bytes(&ctx())
                .map_err(|e| PeerError::Encode(e.to_string()))?;
            p.send_raw(&ka[..7])?;
            std::thread::yield_now();
            p.send_raw(&ka[7..])?;
            Ok(hold)
        });
        let mut p = ScriptedPeer::connect(addr, Duration::from_secs(5), ctx())?;
        assert_eq!(p.establish(open(65001, 90))?, 30);
        assert!(matches!(p.read_msg()?, Message::Keepalive));
        let theirs = other.join().map_err(|_| PeerError::Closed)??;
        assert_eq!(theirs, 30);
        // The other side is gone: the next read says so.
        assert!(matches!(p.read_msg(), Err(PeerError::Closed)));
        Ok(())
    }

    /// A read timeout is told apart from a broken session.
    #[test]
    fn a_read_timeout_is_not_a_closed_session() -> Result<(), PeerError> {
        let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let s = TcpStream::connect(l.local_addr()?)?;
        let _held = l.accept()?;
        let mut p = ScriptedPeer::new(s, ctx());
        p.stream()
            .set_read_timeout(Some(Duration::from_millis(20)))?;
        let e = p.read_msg().err();
        assert!(e.as_ref().is_some_and(PeerError::is_timeout), "{e:?}");
        Ok(())
    }
}
