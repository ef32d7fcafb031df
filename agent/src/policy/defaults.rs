//! The cluster's policy defaults in the shared datastore: one document at
//! [`DEFAULTS_KEY`], JSON `{"schema": 1, "defaults": {"between_apps":
//! "allow", "egress": "deny"}}`, either field optional. Every flatnetd
//! follows it like the policies; a field the document does not set falls
//! back to the host's `[policy]` config value (precedence: datastore, then
//! host config, then deny). Writes are compare-and-swap like policies.

use flatnet_ipam::{Compare, Datastore, KeyValue, Op, Revision, Txn};
use serde::{Deserialize, Serialize};

use super::compile::{Cluster, DefaultAction};
use super::store::PolicyStoreError;

/// The one defaults document (not under the policies' prefix, so it is
/// never taken for a policy).
pub const DEFAULTS_KEY: &str = "/flatnet/policy-defaults";
const SCHEMA: u32 = 1;

/// The defaults the cluster sets; `None`: the host config decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterDefaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between_apps: Option<DefaultAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<DefaultAction>,
}

impl ClusterDefaults {
    /// The compiler's inputs: the host's, with what the cluster sets.
    pub fn over(&self, host: &Cluster) -> Cluster {
        Cluster {
            between_apps: self.between_apps.unwrap_or(host.between_apps),
            egress: self.egress.unwrap_or(host.egress),
            pools: host.pools.clone(),
        }
    }
}

/// What `flatnet policy defaults set` asks for: values as the operator
/// typed them (checked here, so the error names the field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultsChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub between_apps: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<String>,
}

/// The defaults as stored and as in force on the answering host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DefaultsView {
    /// The datastore document (fields it does not set are absent).
    pub cluster: ClusterDefaults,
    /// Its revision (0: no document).
    pub revision: Revision,
    /// This host's `[policy]` values.
    pub host_between_apps: DefaultAction,
    pub host_egress: DefaultAction,
    /// What this host enforces.
    pub between_apps: DefaultAction,
    pub egress: DefaultAction,
}

impl DefaultsView {
    pub fn new(cluster: ClusterDefaults, revision: Revision, host: &Cluster) -> Self {
        let eff = cluster.over(host);
        DefaultsView {
            cluster,
            revision,
            host_between_apps: host.between_apps,
            host_egress: host.egress,
            between_apps: eff.between_apps,
            egress: eff.egress,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    schema: u32,
    defaults: ClusterDefaults,
}

fn unavailable(e: impl std::fmt::Display) -> PolicyStoreError {
    PolicyStoreError::Unavailable(e.to_string())
}

fn parse_action(field: &str, v: &str) -> Result<DefaultAction, PolicyStoreError> {
    match v {
        "allow" => Ok(DefaultAction::Allow),
        "deny" => Ok(DefaultAction::Deny),
        other => Err(PolicyStoreError::BadDefault {
            field: field.to_string(),
            value: other.to_string(),
        }),
    }
}

/// Decodes the stored document (a hand-written one is held to the same
/// rules: unknown fields or values are refused).
pub fn decode(kv: &KeyValue) -> Result<ClusterDefaults, PolicyStoreError> {
    let corrupt = |msg: String| PolicyStoreError::Corrupt {
        key: kv.key.clone(),
        msg,
    };
    let doc: Doc = serde_json::from_slice(&kv.value).map_err(|e| corrupt(e.to_string()))?;
    if doc.schema != SCHEMA {
        return Err(corrupt(format!("schema {} is not {SCHEMA}", doc.schema)));
    }
    Ok(doc.defaults)
}

/// The stored defaults and their revision (empty and 0 when absent).
pub async fn get<S: Datastore>(store: &S) -> Result<(ClusterDefaults, Revision), PolicyStoreError> {
    match store.get(DEFAULTS_KEY).await.map_err(unavailable)? {
        Some(kv) => Ok((decode(&kv)?, kv.mod_revision)),
        None => Ok((ClusterDefaults::default(), 0)),
    }
}

/// Sets the given fields (others keep their stored value); every value is
/// checked before anything is written. Returns the document and revision.
pub async fn set<S: Datastore>(
    store: &S,
    change: &DefaultsChange,
) -> Result<(ClusterDefaults, Revision), PolicyStoreError> {
    let between = change
        .between_apps
        .as_deref()
        .map(|v| parse_action("between_apps", v))
        .transpose()?;
    let egress = change
        .egress
        .as_deref()
        .map(|v| parse_action("egress", v))
        .transpose()?;
    let current = store.get(DEFAULTS_KEY).await.map_err(unavailable)?;
    let (mut d, rev) = match &current {
        Some(kv) => (decode(kv).unwrap_or_default(), kv.mod_revision),
        None => (ClusterDefaults::default(), 0),
    };
    d.between_apps = between.or(d.between_apps);
    d.egress = egress.or(d.egress);
    let value = serde_json::to_vec(&Doc {
        schema: SCHEMA,
        defaults: d,
    })
    .map_err(|e| PolicyStoreError::Corrupt {
        key: DEFAULTS_KEY.to_string(),
        msg: e.to_string(),
    })?;
    let out = store
        .txn(
            Txn::new()
                .when(Compare::unchanged(DEFAULTS_KEY, rev))
                .then(Op::put(DEFAULTS_KEY, value)),
        )
        .await
        .map_err(unavailable)?;
    if out.succeeded {
        Ok((d, out.revision))
    } else {
        Err(PolicyStoreError::Conflict {
            name: "defaults".to_string(),
            expected: rev,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flatnet_ipam::MemStore;

    fn change(b: Option<&str>, e: Option<&str>) -> DefaultsChange {
        DefaultsChange {
            between_apps: b.map(str::to_string),
            egress: e.map(str::to_string),
        }
    }

    #[tokio::test]
    async fn set_merges_and_bad_values_change_nothing() {
        let s = MemStore::new();
        assert_eq!(get(&s).await.unwrap(), (ClusterDefaults::default(), 0));
        let (d, r1) = set(&s, &change(Some("allow"), None)).await.unwrap();
        assert_eq!(d.between_apps, Some(DefaultAction::Allow));
        assert_eq!(d.egress, None);
        let (d, r2) = set(&s, &change(None, Some("deny"))).await.unwrap();
        assert!(r2 > r1);
        assert_eq!(
            (d.between_apps, d.egress),
            (Some(DefaultAction::Allow), Some(DefaultAction::Deny))
        );
        let e = set(&s, &change(Some("deny"), Some("maybe")))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("egress"), "{e}");
        assert_eq!(get(&s).await.unwrap(), (d, r2));
    }

    #[test]
    fn unset_fields_fall_back_to_the_host() {
        let host = Cluster {
            between_apps: DefaultAction::Deny,
            egress: DefaultAction::Allow,
            pools: vec![],
        };
        let c = ClusterDefaults {
            between_apps: Some(DefaultAction::Allow),
            egress: None,
        }
        .over(&host);
        assert_eq!(
            (c.between_apps, c.egress),
            (DefaultAction::Allow, DefaultAction::Allow)
        );
    }
}
