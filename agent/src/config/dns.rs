//! `[dns]`: service discovery, `<app>.<zone>` answered by flatnetd from the
//! endpoint records (off unless enabled).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problem;
use crate::dns::zone::{DEFAULT_TTL, DEFAULT_ZONE, normalize_zone};
use flatnet_tomlspan::Seg::Key as K;

/// The default listener: the on-link gateway every container has a route to.
pub const DEFAULT_DNS_LISTEN: &str = "169.254.1.1:53";
/// Where the host's own resolvers are read from.
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";
/// The longest TTL accepted: answers follow the endpoints, so long ones
/// only serve stale addresses.
pub const MAX_TTL: u32 = 3600;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Serve DNS on `listen` (UDP and TCP).
    #[serde(default)]
    pub enabled: bool,
    /// Address and port; a specific address (never the wildcard), made
    /// local on `lo` when no interface has it.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The discovery zone.
    #[serde(default = "default_zone")]
    pub zone: String,
    /// TTL of answers from the zone, seconds.
    #[serde(default = "default_ttl")]
    pub ttl: u32,
    /// Names outside the zone: forwarded to the host's resolvers (true) or
    /// REFUSED (false).
    #[serde(default = "default_forward")]
    pub forward: bool,
    /// The resolv.conf whose `nameserver` lines are the host's resolvers.
    #[serde(default = "default_resolv_conf")]
    pub resolv_conf: PathBuf,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            enabled: false,
            listen: default_listen(),
            zone: default_zone(),
            ttl: default_ttl(),
            forward: default_forward(),
            resolv_conf: default_resolv_conf(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([169, 254, 1, 1], 53))
}

fn default_zone() -> String {
    DEFAULT_ZONE.into()
}

fn default_ttl() -> u32 {
    DEFAULT_TTL
}

fn default_forward() -> bool {
    true
}

fn default_resolv_conf() -> PathBuf {
    PathBuf::from(DEFAULT_RESOLV_CONF)
}

impl DnsConfig {
    /// The zone, normalised (lowercase, no final dot); valid after
    /// [`DnsConfig::validate`].
    pub fn zone_name(&self) -> String {
        normalize_zone(&self.zone).unwrap_or_else(|| DEFAULT_ZONE.into())
    }

    pub(super) fn validate(&self) -> Result<(), Problem> {
        if normalize_zone(&self.zone).is_none() {
            return Err(Problem::at(
                &[K("dns"), K("zone")],
                format!(
                    "dns.zone {:?}: expected a DNS name like \"apps.internal\" (labels of 1..=63 letters, digits, '-' or '_'; at most 253 characters)",
                    self.zone
                ),
            ));
        }
        if self.ttl > MAX_TTL {
            return Err(Problem::at(
                &[K("dns"), K("ttl")],
                format!(
                    "dns.ttl: expected 0..={MAX_TTL} seconds, found {}",
                    self.ttl
                ),
            ));
        }
        if self.listen.ip().is_unspecified() {
            return Err(Problem::at(
                &[K("dns"), K("listen")],
                format!(
                    "dns.listen {}: expected a specific address (default {DEFAULT_DNS_LISTEN}): the wildcard would answer on the host's own addresses",
                    self.listen
                ),
            ));
        }
        if self.listen.port() == 0 {
            return Err(Problem::at(
                &[K("dns"), K("listen")],
                format!("dns.listen {}: expected a port (53)", self.listen),
            ));
        }
        if !self.resolv_conf.is_absolute() {
            return Err(Problem::at(
                &[K("dns"), K("resolv_conf")],
                format!(
                    "dns.resolv_conf {:?}: expected an absolute path (default {DEFAULT_RESOLV_CONF})",
                    self.resolv_conf
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "[node]\nname = \"a\"\n\n[[pool]]\ncidr = \"10.244.0.0/16\"\n";

    #[test]
    fn off_by_default_with_the_documented_defaults() {
        let c = Config::parse(BASE, "t.toml").unwrap();
        assert!(!c.dns.enabled);
        assert_eq!(c.dns.listen.to_string(), "169.254.1.1:53");
        assert_eq!(
            (c.dns.zone_name().as_str(), c.dns.ttl),
            ("apps.internal", 5)
        );
        assert!(c.dns.forward);
        assert_eq!(c.dns.resolv_conf.to_str(), Some("/etc/resolv.conf"));
        let on = format!(
            "{BASE}\n[dns]\nenabled = true\nlisten = \"127.0.0.53:5300\"\nzone = \"Svc.Example.\"\nttl = 0\nforward = false\nresolv_conf = \"/tmp/r.conf\"\n"
        );
        let c = Config::parse(&on, "t.toml").unwrap();
        assert!(c.dns.enabled && !c.dns.forward);
        assert_eq!(c.dns.listen.to_string(), "127.0.0.53:5300");
        assert_eq!((c.dns.zone_name().as_str(), c.dns.ttl), ("svc.example", 0));
    }

    #[test]
    fn errors_name_file_line_and_column() {
        // Values that parse but cannot work: at their key.
        for (section, want) in [
            ("zone = \"a..b\"", "t.toml:8:1: dns.zone"),
            ("ttl = 86400", "t.toml:8:1: dns.ttl"),
            (
                "listen = \"0.0.0.0:53\"",
                "t.toml:8:1: dns.listen 0.0.0.0:53: expected a specific address",
            ),
            ("listen = \"127.0.0.1:0\"", "t.toml:8:1: dns.listen"),
            (
                "resolv_conf = \"resolv.conf\"",
                "t.toml:8:1: dns.resolv_conf",
            ),
        ] {
            let text = format!("{BASE}\n[dns]\n{section}\n");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(e.starts_with(want), "{section}: {e}");
        }
        // Types and typos: the TOML parser's own location.
        for (section, want) in [
            ("listen = \"nowhere\"", "t.toml:8:10:"),
            ("ttl = \"5\"", "t.toml:8:7:"),
            ("forwad = true", "t.toml:8:1:"),
        ] {
            let text = format!("{BASE}\n[dns]\n{section}\n");
            let e = Config::parse(&text, "t.toml").unwrap_err().to_string();
            assert!(e.starts_with(want), "{section}: {e}");
        }
    }
}
