//! The expected policy matrix, computed from the declared policy alone
//! (pure; the actual matrix comes from real TCP connects in the lab).
//!
//! Semantics: with no policy declared every container reaches every other.
//! Once any policy exists, containers of the same app reach each other, a
//! container without an app is unrestricted, and app A reaches app B only on
//! the ports a `from: A, to: B` entry lists (none listed: every port).

use super::model::PolicyDef;

/// Whether a TCP connect from a container of `from` to one of `to` on
/// `port` is allowed by `policies`.
pub fn allowed(policies: &[PolicyDef], from: Option<&str>, to: Option<&str>, port: u16) -> bool {
    if policies.is_empty() {
        return true;
    }
    let (Some(from), Some(to)) = (from, to) else {
        return true;
    };
    if from == to {
        return true;
    }
    policies
        .iter()
        .any(|p| p.from == from && p.to == to && (p.ports.is_empty() || p.ports.contains(&port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(from: &str, to: &str, ports: &[u16]) -> PolicyDef {
        PolicyDef {
            from: from.into(),
            to: to.into(),
            ports: ports.to_vec(),
        }
    }

    #[test]
    fn no_policy_allows_everything() {
        assert!(allowed(&[], Some("web"), Some("db"), 5432));
    }

    #[test]
    fn declared_pairs_only_on_their_ports() {
        let ps = [p("web", "api", &[8080]), p("api", "db", &[])];
        assert!(allowed(&ps, Some("web"), Some("api"), 8080));
        assert!(!allowed(&ps, Some("web"), Some("api"), 9090));
        assert!(
            !allowed(&ps, Some("api"), Some("web"), 8080),
            "not symmetric"
        );
        assert!(allowed(&ps, Some("api"), Some("db"), 1));
        assert!(!allowed(&ps, Some("web"), Some("db"), 8080));
        assert!(allowed(&ps, Some("db"), Some("db"), 8080), "same app");
        assert!(allowed(&ps, None, Some("db"), 8080), "no app: unrestricted");
    }
}
