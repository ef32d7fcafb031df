//! The policy document as operators write it (TOML or JSON) and its
//! validation. Parsing goes through a raw, string-typed shape that rejects
//! unknown fields; validation then types every value and names the field
//! that is wrong (`allow[1].ports[0]`), so a bad document is refused
//! whole and nothing of it is applied.

use std::fmt;
use std::str::FromStr;

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

/// Why a policy document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// Not TOML/JSON of the document's shape (an unknown field, a wrong type).
    #[error("{origin}:{line}:{column}: {message}")]
    Syntax {
        origin: String,
        line: usize,
        column: usize,
        message: String,
    },
    /// A value that parses but is not valid; `field` is its path.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
}

fn field_err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError::Field {
        field: field.into(),
        message: message.into(),
    }
}

/// A transport protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Any,
}

impl Proto {
    /// Whether the protocol has ports.
    pub fn has_ports(self) -> bool {
        matches!(self, Proto::Tcp | Proto::Udp)
    }
}

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tcp" => Ok(Proto::Tcp),
            "udp" => Ok(Proto::Udp),
            "icmp" => Ok(Proto::Icmp),
            "any" => Ok(Proto::Any),
            _ => Err(format!(
                "unknown protocol {s:?}: expected tcp, udp, icmp or any"
            )),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Icmp => "icmp",
            Proto::Any => "any",
        })
    }
}

/// An inclusive port range (`lo == hi` for one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

impl PortRange {
    pub fn contains(&self, p: u16) -> bool {
        (self.lo..=self.hi).contains(&p)
    }
}

impl fmt::Display for PortRange {
    /// iptables' syntax: `80` or `8000:8080`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else {
            write!(f, "{}:{}", self.lo, self.hi)
        }
    }
}

fn parse_port(s: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(p) => Err(format!("port {p} out of range: expected 1..=65535")),
        Err(_) => Err(format!("expected a port number, found {s:?}")),
    }
}

impl FromStr for PortRange {
    type Err = String;
    /// `"80"` or `"8000-8080"`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (lo, hi) = match s.split_once('-') {
            Some((a, b)) => (parse_port(a)?, parse_port(b)?),
            None => {
                let p = parse_port(s)?;
                (p, p)
            }
        };
        if lo > hi {
            return Err(format!("port range {s:?} is reversed"));
        }
        Ok(PortRange { lo, hi })
    }
}

/// A port as written: a number or a `"lo-hi"` string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawPort {
    Num(i64),
    Text(String),
}

/// An app-to-app edge as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAllow {
    pub from: String,
    pub to: String,
    pub proto: String,
    #[serde(default)]
    pub ports: Vec<RawPort>,
}

/// Egress from an app to outside CIDRs, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEgress {
    pub app: String,
    pub to_cidr: String,
    pub proto: String,
    #[serde(default)]
    pub ports: Vec<RawPort>,
}

/// Ingress from outside CIDRs to an app, as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngress {
    pub app: String,
    pub from_cidr: String,
    pub proto: String,
    #[serde(default)]
    pub ports: Vec<RawPort>,
}

/// A document as written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub name: String,
    #[serde(default)]
    pub allow: Vec<RawAllow>,
    #[serde(default)]
    pub egress: Vec<RawEgress>,
    #[serde(default)]
    pub ingress: Vec<RawIngress>,
}

/// What a rule matches on the wire besides addresses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Service {
    pub proto: Proto,
    /// Empty: every port (and always empty for icmp/any).
    pub ports: Vec<PortRange>,
}

impl Service {
    pub fn matches(&self, proto: Proto, port: Option<u16>) -> bool {
        let proto_ok = self.proto == Proto::Any || self.proto == proto;
        let port_ok =
            self.ports.is_empty() || port.is_some_and(|p| self.ports.iter().any(|r| r.contains(p)));
        proto_ok && port_ok
    }
}

/// An edge from app `from` to app `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub from: String,
    pub to: String,
    pub service: Service,
}

/// An app's permitted destinations outside the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    pub app: String,
    pub to_cidr: IpNetwork,
    pub service: Service,
}

/// Outside sources permitted to an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ingress {
    pub app: String,
    pub from_cidr: IpNetwork,
    pub service: Service,
}

/// A validated policy document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub name: String,
    pub allow: Vec<Allow>,
    pub egress: Vec<Egress>,
    pub ingress: Vec<Ingress>,
}

/// An app id or policy name: 1..=63 of `[a-z0-9._-]`, starting with a
/// letter or digit (it becomes part of chain, set and key names).
pub fn valid_name(s: &str) -> Result<(), String> {
    let ok_chars = s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    let ok_first = s
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if s.is_empty() || s.len() > 63 || !ok_chars || !ok_first {
        return Err(format!(
            "invalid name {s:?}: expected 1..=63 characters of [a-z0-9._-], starting with a letter or digit"
        ));
    }
    Ok(())
}

fn cidr(field: &str, s: &str) -> Result<IpNetwork, PolicyError> {
    let n: IpNetwork = s
        .parse()
        .map_err(|_| field_err(field, format!("invalid CIDR {s:?}")))?;
    if n.network() != n.ip() {
        return Err(field_err(
            field,
            format!(
                "invalid CIDR {s:?}: host bits set (did you mean \"{}/{}\"?)",
                n.network(),
                n.prefix()
            ),
        ));
    }
    Ok(n)
}

fn service(field: &str, proto: &str, ports: &[RawPort]) -> Result<Service, PolicyError> {
    let proto: Proto = proto
        .parse()
        .map_err(|m: String| field_err(format!("{field}.proto"), m))?;
    if !proto.has_ports() && !ports.is_empty() {
        return Err(field_err(
            format!("{field}.ports"),
            format!("protocol {proto} has no ports"),
        ));
    }
    let mut out = Vec::with_capacity(ports.len());
    for (i, p) in ports.iter().enumerate() {
        let f = format!("{field}.ports[{i}]");
        let r = match p {
            RawPort::Num(n) => {
                let n = u16::try_from(*n).ok().filter(|n| *n >= 1).ok_or_else(|| {
                    field_err(&f, format!("port {n} out of range: expected 1..=65535"))
                })?;
                PortRange { lo: n, hi: n }
            }
            RawPort::Text(t) => t.parse().map_err(|m: String| field_err(&f, m))?,
        };
        out.push(r);
    }
    out.sort();
    out.dedup();
    Ok(Service { proto, ports: out })
}

fn app(field: String, s: &str) -> Result<String, PolicyError> {
    valid_name(s).map_err(|m| field_err(field, m))?;
    Ok(s.to_string())
}

impl RawPolicy {
    /// Types and checks every field; the first error names its field.
    pub fn validate(&self) -> Result<Policy, PolicyError> {
        valid_name(&self.name).map_err(|m| field_err("name", m))?;
        let mut allow = Vec::new();
        for (i, a) in self.allow.iter().enumerate() {
            let f = format!("allow[{i}]");
            allow.push(Allow {
                from: app(format!("{f}.from"), &a.from)?,
                to: app(format!("{f}.to"), &a.to)?,
                service: service(&f, &a.proto, &a.ports)?,
            });
        }
        let mut egress = Vec::new();
        for (i, e) in self.egress.iter().enumerate() {
            let f = format!("egress[{i}]");
            egress.push(Egress {
                app: app(format!("{f}.app"), &e.app)?,
                to_cidr: cidr(&format!("{f}.to_cidr"), &e.to_cidr)?,
                service: service(&f, &e.proto, &e.ports)?,
            });
        }
        let mut ingress = Vec::new();
        for (i, e) in self.ingress.iter().enumerate() {
            let f = format!("ingress[{i}]");
            ingress.push(Ingress {
                app: app(format!("{f}.app"), &e.app)?,
                from_cidr: cidr(&format!("{f}.from_cidr"), &e.from_cidr)?,
                service: service(&f, &e.proto, &e.ports)?,
            });
        }
        Ok(Policy {
            name: self.name.clone(),
            allow,
            egress,
            ingress,
        })
    }
}

impl Policy {
    /// Parses a document: JSON when it starts with `{`, TOML otherwise.
    pub fn parse(text: &str, origin: &str) -> Result<(RawPolicy, Policy), PolicyError> {
        let raw: RawPolicy = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| PolicyError::Syntax {
                origin: origin.to_string(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?
        } else {
            toml::from_str(text).map_err(|e| {
                let (line, column, message) = crate::config::toml_error_at(text, &e);
                PolicyError::Syntax {
                    origin: origin.to_string(),
                    line,
                    column,
                    message,
                }
            })?
        };
        let p = raw.validate()?;
        Ok((raw, p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "shop"
[[allow]]
from = "cart"
to = "orders"
proto = "tcp"
ports = [5432, "8000-8080"]
[[egress]]
app = "cart"
to_cidr = "203.0.113.0/24"
proto = "tcp"
ports = [443]
[[ingress]]
app = "web"
from_cidr = "198.51.100.0/24"
proto = "any"
"#;

    fn field_of(text: &str) -> String {
        match Policy::parse(text, "t.toml") {
            Err(PolicyError::Field { field, .. }) => field,
            other => panic!("expected a field error, got {other:?}"),
        }
    }

    #[test]
    fn toml_and_json_give_the_same_policy() {
        let (raw, p) = Policy::parse(GOOD, "t.toml").unwrap();
        assert_eq!(
            p.allow[0].service.ports,
            vec![
                PortRange { lo: 5432, hi: 5432 },
                PortRange { lo: 8000, hi: 8080 }
            ]
        );
        assert_eq!(p.egress[0].to_cidr.to_string(), "203.0.113.0/24");
        let json = serde_json::to_string(&raw).unwrap();
        let (_, q) = Policy::parse(&json, "t.json").unwrap();
        assert_eq!(p, q);
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_eq!(
            field_of(&GOOD.replace("\"tcp\"\nports = [5432", "\"sctp\"\nports = [5432")),
            "allow[0].proto"
        );
        assert_eq!(
            field_of(&GOOD.replace("203.0.113.0/24", "203.0.113.0/33")),
            "egress[0].to_cidr"
        );
        assert_eq!(
            field_of(&GOOD.replace("203.0.113.0/24", "203.0.113.7/24")),
            "egress[0].to_cidr"
        );
        assert_eq!(
            field_of(&GOOD.replace("[443]", "[70000]")),
            "egress[0].ports[0]"
        );
        assert_eq!(
            field_of(&GOOD.replace("\"8000-8080\"", "\"9000-8000\"")),
            "allow[0].ports[1]"
        );
        assert_eq!(
            field_of(&GOOD.replace("\"8000-8080\"", "0")),
            "allow[0].ports[1]"
        );
        assert_eq!(
            field_of(&GOOD.replace("to = \"orders\"", "to = \"Orders!\"")),
            "allow[0].to"
        );
        assert_eq!(
            field_of(&GOOD.replace("proto = \"any\"", "proto = \"icmp\"\nports = [1]")),
            "ingress[0].ports"
        );
    }

    #[test]
    fn unknown_fields_are_refused_with_their_name() {
        let t = GOOD.replace("proto = \"any\"", "proto = \"any\"\nport = 80");
        match Policy::parse(&t, "t.toml") {
            Err(PolicyError::Syntax { message, line, .. }) => {
                assert!(message.contains("port"), "{message}");
                assert_eq!(line, 17);
            }
            other => panic!("{other:?}"),
        }
        let j = r#"{"name":"x","allow":[{"from":"a","to":"b","proto":"tcp","colour":"red"}]}"#;
        match Policy::parse(j, "t.json") {
            Err(PolicyError::Syntax { message, .. }) => {
                assert!(message.contains("colour"), "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn services_match_proto_and_ports() {
        let s = Service {
            proto: Proto::Tcp,
            ports: vec![
                PortRange { lo: 80, hi: 80 },
                PortRange { lo: 8000, hi: 8080 },
            ],
        };
        assert!(s.matches(Proto::Tcp, Some(8042)));
        assert!(!s.matches(Proto::Udp, Some(80)));
        assert!(!s.matches(Proto::Tcp, Some(81)));
        let any = Service {
            proto: Proto::Any,
            ports: vec![],
        };
        assert!(any.matches(Proto::Icmp, None));
    }
}
