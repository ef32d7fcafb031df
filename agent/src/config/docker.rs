//! `[docker]`: flatnetd as Docker's libnetwork remote network and IPAM
//! driver (off unless enabled).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Problem;
use flatnet_tomlspan::Seg::Key as K;

/// Where Docker looks for plugin sockets (its discovery has no flag).
pub const DEFAULT_PLUGIN_DIR: &str = "/run/docker/plugins";

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    /// Serve the plugin API on `<plugin_dir>/flatnet.sock`.
    #[serde(default)]
    pub enabled: bool,
    /// The directory Docker discovers plugins in.
    #[serde(default = "default_plugin_dir")]
    pub plugin_dir: PathBuf,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            enabled: false,
            plugin_dir: default_plugin_dir(),
        }
    }
}

fn default_plugin_dir() -> PathBuf {
    PathBuf::from(DEFAULT_PLUGIN_DIR)
}

impl DockerConfig {
    /// The socket Docker finds the plugin by (`flatnet` is the driver name).
    pub fn socket(&self) -> PathBuf {
        self.plugin_dir.join("flatnet.sock")
    }

    pub(super) fn validate(&self) -> Result<(), Problem> {
        if !self.plugin_dir.is_absolute() {
            return Err(Problem::at(
                &[K("docker"), K("plugin_dir")],
                format!(
                    "docker.plugin_dir {:?}: expected an absolute path (Docker looks in {DEFAULT_PLUGIN_DIR})",
                    self.plugin_dir
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "[node]\nname = \"a\"\nrouter_id = \"192.0.2.1\"\nasn = 64512\n\n[[pool]]\ncidr = \"10.244.0.0/16\"\n";

    #[test]
    fn off_by_default_and_located_when_wrong() {
        let c = Config::parse(BASE, "t.toml").unwrap();
        assert!(!c.docker.enabled);
        assert_eq!(
            c.docker.socket().to_str(),
            Some("/run/docker/plugins/flatnet.sock")
        );
        let on = format!("{BASE}\n[docker]\nenabled = true\nplugin_dir = \"/tmp/p\"\n");
        let c = Config::parse(&on, "t.toml").unwrap();
        assert!(c.docker.enabled);
        assert_eq!(c.docker.socket().to_str(), Some("/tmp/p/flatnet.sock"));
        let rel = format!("{BASE}\n[docker]\nplugin_dir = \"plugins\"\n");
        let e = Config::parse(&rel, "t.toml").unwrap_err().to_string();
        assert!(
            e.contains("docker.plugin_dir") && e.contains("absolute"),
            "{e}"
        );
        assert!(e.contains("t.toml:10:"), "located at its key: {e}");
        let typo = format!("{BASE}\n[docker]\nenable = true\n");
        assert!(Config::parse(&typo, "t.toml").is_err());
    }
}
