//! Netfilter through one batch writer: every change is a payload fed on
//! stdin to `iptables-restore --noflush` (or `ipset restore`), applied
//! atomically per table, one process per batch. The backend (nf_tables or
//! legacy) is detected once, so the writer and `iptables` agree on which
//! kernel tables they see. Anti-spoofing ([`antispoof`]) and application
//! policy ([`crate::policy`]) use it.

pub mod antispoof;
pub mod dns;

use std::process::Stdio;

use tokio::io::AsyncWriteExt;

pub use antispoof::ANTISPOOF_CHAIN;
pub use dns::DNS_CHAIN;

/// An address family, as netfilter splits them (iptables / ip6tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub const ALL: [Family; 2] = [Family::V4, Family::V6];

    fn prefix(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

/// Which kernel interface the iptables tools drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Nft,
    Legacy,
}

impl Backend {
    /// Parses `iptables -V` ("iptables v1.8.9 (nf_tables)"); an old build
    /// without the suffix is legacy.
    pub fn from_version(v: &str) -> Backend {
        if v.contains("nf_tables") {
            Backend::Nft
        } else {
            Backend::Legacy
        }
    }

    fn suffix(self) -> &'static str {
        match self {
            Backend::Nft => "nft",
            Backend::Legacy => "legacy",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NfError {
    #[error("cannot run {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("{bin} failed: {stderr}")]
    Failed { bin: String, stderr: String },
}

/// The batch writer (one per flatnetd). Batches are serialised: the tools
/// take the xtables lock anyway, and one writer keeps payloads whole.
#[derive(Debug)]
pub struct Netfilter {
    backend: Backend,
    lock: tokio::sync::Mutex<()>,
}

/// Runs `bin args`, feeding `stdin`; returns (success, stderr + stdout).
async fn run(bin: &str, args: &[&str], stdin: Option<&str>) -> Result<(bool, String), NfError> {
    let spawn_err = |source| NfError::Spawn {
        bin: bin.to_string(),
        source,
    };
    let mut child = tokio::process::Command::new(bin)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let (Some(payload), Some(mut w)) = (stdin, child.stdin.take()) {
        w.write_all(payload.as_bytes()).await.map_err(spawn_err)?;
        drop(w);
    }
    let out = child.wait_with_output().await.map_err(spawn_err)?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).trim().to_string()
            + &String::from_utf8_lossy(&out.stdout),
    ))
}

impl Netfilter {
    /// Detects the backend once (`iptables -V`).
    pub async fn detect() -> Result<Netfilter, NfError> {
        let (_, v) = run("iptables", &["-V"], None).await?;
        let backend = Backend::from_version(&v);
        tracing::debug!(?backend, "netfilter backend");
        Ok(Netfilter {
            backend,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `iptables-nft-restore`, `ip6tables-legacy-restore`, ...
    fn restore_bin(&self, fam: Family) -> String {
        format!("{}-{}-restore", fam.prefix(), self.backend.suffix())
    }

    /// `iptables-nft`, `ip6tables-legacy`, ...
    fn query_bin(&self, fam: Family) -> String {
        format!("{}-{}", fam.prefix(), self.backend.suffix())
    }

    /// Applies one payload (iptables-save syntax, `*table` .. `COMMIT`)
    /// without flushing the tables it names; a chain it declares is
    /// flushed and refilled, so a payload that declares its own chains is
    /// idempotent.
    pub async fn restore(&self, fam: Family, payload: &str) -> Result<(), NfError> {
        let _g = self.lock.lock().await;
        let bin = self.restore_bin(fam);
        let (ok, stderr) = run(&bin, &["-w", "--noflush"], Some(payload)).await?;
        if ok {
            Ok(())
        } else {
            Err(NfError::Failed { bin, stderr })
        }
    }

    /// Applies an `ipset restore` payload (`-exist`: re-creating a set or
    /// re-adding a member is not an error).
    pub async fn ipset_restore(&self, payload: &str) -> Result<(), NfError> {
        let _g = self.lock.lock().await;
        let (ok, stderr) = run("ipset", &["restore", "-exist"], Some(payload)).await?;
        if ok {
            Ok(())
        } else {
            Err(NfError::Failed {
                bin: "ipset".into(),
                stderr,
            })
        }
    }

    /// `iptables-save -t table` (the policy reconcile compares its own
    /// chains with it; `-c` adds packet/byte counters for `policy stats`).
    pub async fn save(&self, fam: Family, table: &str, counters: bool) -> Result<String, NfError> {
        let bin = format!("{}-save", self.query_bin(fam));
        let mut args = vec!["-t", table];
        if counters {
            args.push("-c");
        }
        let (ok, out) = run(&bin, &args, None).await?;
        if ok {
            Ok(out)
        } else {
            Err(NfError::Failed { bin, stderr: out })
        }
    }

    /// `ipset save NAME`: the set's members with their counters (for the
    /// per-edge counters of a policy `list:set`).
    pub async fn ipset_save(&self, name: &str) -> Result<String, NfError> {
        let (ok, out) = run("ipset", &["save", name], None).await?;
        if ok {
            Ok(out)
        } else {
            Err(NfError::Failed {
                bin: "ipset".into(),
                stderr: out,
            })
        }
    }

    /// The names of every ipset (`ipset list -n`).
    pub async fn ipset_names(&self) -> Result<Vec<String>, NfError> {
        let (ok, out) = run("ipset", &["list", "-n"], None).await?;
        if !ok {
            return Err(NfError::Failed {
                bin: "ipset".into(),
                stderr: out,
            });
        }
        Ok(out
            .lines()
            .map(str::to_string)
            .filter(|l| !l.is_empty())
            .collect())
    }

    /// Whether `rule` is in `table`/`chain` (`-C`).
    pub async fn has_rule(
        &self,
        fam: Family,
        table: &str,
        chain: &str,
        rule: &[&str],
    ) -> Result<bool, NfError> {
        let mut args = vec!["-w", "-t", table, "-C", chain];
        args.extend_from_slice(rule);
        Ok(run(&self.query_bin(fam), &args, None).await?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_follows_iptables_version() {
        assert_eq!(
            Backend::from_version("iptables v1.8.9 (nf_tables)"),
            Backend::Nft
        );
        assert_eq!(
            Backend::from_version("iptables v1.8.9 (legacy)"),
            Backend::Legacy
        );
        assert_eq!(Backend::from_version("iptables v1.4.21"), Backend::Legacy);
    }

    #[test]
    fn tools_match_backend_and_family() {
        let nf = Netfilter {
            backend: Backend::Nft,
            lock: tokio::sync::Mutex::new(()),
        };
        assert_eq!(nf.restore_bin(Family::V4), "iptables-nft-restore");
        assert_eq!(nf.restore_bin(Family::V6), "ip6tables-nft-restore");
        let nf = Netfilter {
            backend: Backend::Legacy,
            lock: tokio::sync::Mutex::new(()),
        };
        assert_eq!(nf.query_bin(Family::V6), "ip6tables-legacy");
    }
}
