//! A CIDR prefix of either family as plain integers, so block arithmetic is
//! the same for IPv4 and IPv6.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An aligned prefix: `addr` has no bits set below `prefix`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Cidr {
    v6: bool,
    addr: u128,
    prefix: u8,
}

pub(crate) fn ip_to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u32::from(a) as u128,
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Cidr {
    /// Fails if `prefix` is too long or `ip` has host bits set.
    pub fn new(ip: IpAddr, prefix: u8) -> Result<Self, String> {
        let v6 = ip.is_ipv6();
        let bits = if v6 { 128 } else { 32 };
        if prefix > bits {
            return Err(format!("prefix /{prefix} is longer than {bits} bits"));
        }
        let addr = ip_to_u128(ip);
        let c = Cidr { v6, addr, prefix };
        if addr & c.host_mask() != 0 {
            return Err(format!(
                "{ip}/{prefix} has host bits set (the network is {})",
                Cidr {
                    addr: addr & !c.host_mask(),
                    ..c
                }
            ));
        }
        Ok(c)
    }

    pub fn is_ipv6(&self) -> bool {
        self.v6
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn bits(&self) -> u8 {
        if self.v6 { 128 } else { 32 }
    }
    fn host_mask(&self) -> u128 {
        let host_bits = (self.bits() - self.prefix) as u32;
        if host_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        }
    }
    /// Number of addresses (saturating at u128::MAX for ::/0).
    pub fn size(&self) -> u128 {
        self.host_mask().saturating_add(1)
    }
    pub fn network(&self) -> IpAddr {
        self.nth(0).unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv6() == self.v6 && ip_to_u128(ip) & !self.host_mask() == self.addr
    }
    pub fn contains_cidr(&self, other: &Cidr) -> bool {
        other.v6 == self.v6 && other.prefix >= self.prefix && self.contains(other.network())
    }
    /// The `off`-th address, if inside.
    pub fn nth(&self, off: u128) -> Option<IpAddr> {
        if off > self.host_mask() {
            return None;
        }
        let a = self.addr | off;
        Some(if self.v6 {
            IpAddr::V6(Ipv6Addr::from(a))
        } else {
            IpAddr::V4(Ipv4Addr::from(a as u32))
        })
    }
    /// Offset of `ip` inside, if inside.
    pub fn offset_of(&self, ip: IpAddr) -> Option<u128> {
        self.contains(ip).then(|| ip_to_u128(ip) & self.host_mask())
    }
    /// The `idx`-th sub-prefix of length `prefix`.
    pub(crate) fn subnet(&self, prefix: u8, idx: u128) -> Option<Cidr> {
        if prefix < self.prefix || prefix > self.bits() {
            return None;
        }
        let shift = (self.bits() - prefix) as u32;
        let n_bits = (prefix - self.prefix) as u32;
        if n_bits < 128 && idx >> n_bits != 0 {
            return None;
        }
        let off = if shift >= 128 { 0 } else { idx << shift };
        Some(Cidr {
            v6: self.v6,
            addr: self.addr | off,
            prefix,
        })
    }
    /// Key-safe form: `10.0.0.64-26`.
    pub(crate) fn key_form(&self) -> String {
        format!("{}-{}", self.network(), self.prefix)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix)
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (ip, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not a CIDR (expected ADDR/LEN)"))?;
        let ip: IpAddr = ip.parse().map_err(|e| format!("{s:?}: {e}"))?;
        let p: u8 = p
            .parse()
            .map_err(|e| format!("{s:?}: bad prefix length: {e}"))?;
        Cidr::new(ip, p)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_subnets() {
        let c: Cidr = "10.244.0.0/16".parse().unwrap();
        assert_eq!(c.size(), 65536);
        assert_eq!(c.subnet(26, 1).unwrap().to_string(), "10.244.0.64/26");
        assert!(c.subnet(26, 1024).is_none());
        assert!("10.244.0.1/16".parse::<Cidr>().is_err());
        let v6: Cidr = "fd00::/64".parse().unwrap();
        assert_eq!(v6.subnet(122, 1).unwrap().to_string(), "fd00::40/122");
        assert_eq!(
            v6.subnet(122, 1)
                .unwrap()
                .offset_of("fd00::41".parse().unwrap()),
            Some(1)
        );
        let all: Cidr = "::/0".parse().unwrap();
        assert_eq!(all.size(), u128::MAX);
    }
}
