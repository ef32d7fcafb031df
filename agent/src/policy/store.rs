//! Policy documents in the shared datastore, one per name under
//! `/flatnet/policies/<name>`: JSON `{"schema": 1, "policy": {..}}` holding
//! the document as written. The datastore's `mod_revision` is the
//! document's version; every write is a compare-and-swap against the
//! revision read (or "absent"), so two operators never overwrite each
//! other silently. Works on any [`Datastore`] (file store, etcd).

use flatnet_ipam::{Compare, Datastore, KeyValue, Op, Revision, Txn};
use serde::{Deserialize, Serialize};

use super::model::{Policy, PolicyError, RawPolicy};

/// Root of the policy documents (reserved for the agent next to
/// `/flatnet/endpoints/`).
pub const POLICIES_PREFIX: &str = "/flatnet/policies/";
/// The document schema this build writes and reads.
pub const SCHEMA: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum PolicyStoreError {
    #[error("policies: datastore unavailable: {0}")]
    Unavailable(String),
    #[error("policy {name} was changed by someone else (expected revision {expected})")]
    Conflict { name: String, expected: Revision },
    #[error("policy {0} not found")]
    NotFound(String),
    #[error("policy document {key}: {msg}")]
    Corrupt { key: String, msg: String },
    #[error(transparent)]
    Invalid(#[from] PolicyError),
    #[error("{field}: expected \"allow\" or \"deny\", got {value:?}")]
    BadDefault { field: String, value: String },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    schema: u32,
    policy: RawPolicy,
}

/// A document as stored, with its version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub raw: RawPolicy,
    pub revision: Revision,
}

pub fn policy_key(name: &str) -> String {
    format!("{POLICIES_PREFIX}{name}")
}

fn unavailable(e: impl std::fmt::Display) -> PolicyStoreError {
    PolicyStoreError::Unavailable(e.to_string())
}

/// Decodes one stored document (and validates it again: a document
/// written by hand into the store is held to the same rules).
pub fn decode(kv: &KeyValue) -> Result<(Policy, StoredPolicy), PolicyStoreError> {
    let corrupt = |msg: String| PolicyStoreError::Corrupt {
        key: kv.key.clone(),
        msg,
    };
    let doc: Doc = serde_json::from_slice(&kv.value).map_err(|e| corrupt(e.to_string()))?;
    if doc.schema != SCHEMA {
        return Err(corrupt(format!("schema {} is not {SCHEMA}", doc.schema)));
    }
    let p = doc.policy.validate().map_err(|e| corrupt(e.to_string()))?;
    Ok((
        p,
        StoredPolicy {
            raw: doc.policy,
            revision: kv.mod_revision,
        },
    ))
}

/// Writes a document after validating it. `expect`: the revision the
/// caller read (`Some(0)`: must not exist); `None` replaces whatever
/// revision is there now, still by compare-and-swap on what was just read.
/// Returns the new revision.
pub async fn apply<S: Datastore>(
    store: &S,
    raw: &RawPolicy,
    expect: Option<Revision>,
) -> Result<Revision, PolicyStoreError> {
    raw.validate()?;
    let key = policy_key(&raw.name);
    let current = match expect {
        Some(r) => r,
        None => revision_of(store, &key).await?.unwrap_or(0),
    };
    let value = serde_json::to_vec(&Doc {
        schema: SCHEMA,
        policy: raw.clone(),
    })
    .map_err(|e| PolicyStoreError::Corrupt {
        key: key.clone(),
        msg: e.to_string(),
    })?;
    cas(store, &raw.name, &key, current, Op::put(&key, value)).await
}

/// The key's revision now, `None` when absent.
async fn revision_of<S: Datastore>(
    store: &S,
    key: &str,
) -> Result<Option<Revision>, PolicyStoreError> {
    Ok(store
        .get(key)
        .await
        .map_err(unavailable)?
        .map(|kv| kv.mod_revision))
}

/// Runs `op` if `key` is still at `current`; the new store revision.
async fn cas<S: Datastore>(
    store: &S,
    name: &str,
    key: &str,
    current: Revision,
    op: Op,
) -> Result<Revision, PolicyStoreError> {
    let out = store
        .txn(Txn::new().when(Compare::unchanged(key, current)).then(op))
        .await
        .map_err(unavailable)?;
    if out.succeeded {
        Ok(out.revision)
    } else {
        Err(PolicyStoreError::Conflict {
            name: name.to_string(),
            expected: current,
        })
    }
}

pub async fn get<S: Datastore>(store: &S, name: &str) -> Result<StoredPolicy, PolicyStoreError> {
    let kv = store
        .get(&policy_key(name))
        .await
        .map_err(unavailable)?
        .ok_or_else(|| PolicyStoreError::NotFound(name.to_string()))?;
    Ok(decode(&kv)?.1)
}

/// Every document, by name, and the revision of the listing (watch from
/// one past it). Undecodable documents are reported, not fatal.
pub async fn list<S: Datastore>(
    store: &S,
) -> Result<(Vec<StoredPolicy>, Vec<String>, Revision), PolicyStoreError> {
    let l = store.list(POLICIES_PREFIX).await.map_err(unavailable)?;
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for kv in &l.kvs {
        match decode(kv) {
            Ok((_, s)) => ok.push(s),
            Err(e) => bad.push(e.to_string()),
        }
    }
    ok.sort_by(|a, b| a.raw.name.cmp(&b.raw.name));
    Ok((ok, bad, l.revision))
}

/// Deletes a document; `expect` as for [`apply`].
pub async fn delete<S: Datastore>(
    store: &S,
    name: &str,
    expect: Option<Revision>,
) -> Result<(), PolicyStoreError> {
    let key = policy_key(name);
    let current = match expect {
        Some(r) => r,
        None => revision_of(store, &key)
            .await?
            .ok_or_else(|| PolicyStoreError::NotFound(name.to_string()))?,
    };
    cas(store, name, &key, current, Op::delete(&key))
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flatnet_ipam::MemStore;

    fn raw(name: &str, to: &str) -> RawPolicy {
        let text = format!(
            "name = \"{name}\"\n[[allow]]\nfrom = \"a\"\nto = \"{to}\"\nproto = \"tcp\"\nports = [80]\n"
        );
        Policy::parse(&text, "t").unwrap().0
    }

    #[tokio::test]
    async fn versions_are_compare_and_swap() {
        let s = MemStore::new();
        let r1 = apply(&s, &raw("p", "b"), Some(0)).await.unwrap();
        // Creating again "as new" conflicts.
        assert!(matches!(
            apply(&s, &raw("p", "c"), Some(0)).await,
            Err(PolicyStoreError::Conflict { .. })
        ));
        let r2 = apply(&s, &raw("p", "c"), Some(r1)).await.unwrap();
        assert!(r2 > r1);
        // A stale revision is refused and changes nothing.
        assert!(apply(&s, &raw("p", "d"), Some(r1)).await.is_err());
        let got = get(&s, "p").await.unwrap();
        assert_eq!((got.raw.allow[0].to.as_str(), got.revision), ("c", r2));
        assert!(delete(&s, "p", Some(r1)).await.is_err());
        delete(&s, "p", None).await.unwrap();
        assert!(matches!(
            get(&s, "p").await,
            Err(PolicyStoreError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn invalid_documents_are_not_written() {
        let s = MemStore::new();
        let mut r = raw("p", "b");
        r.allow[0].proto = "sctp".into();
        assert!(matches!(
            apply(&s, &r, None).await,
            Err(PolicyStoreError::Invalid(PolicyError::Field { .. }))
        ));
        let (all, bad, _) = list(&s).await.unwrap();
        assert!(all.is_empty() && bad.is_empty());
    }

    #[tokio::test]
    async fn list_is_sorted_and_reports_corrupt_documents() {
        let s = MemStore::new();
        apply(&s, &raw("zz", "b"), None).await.unwrap();
        apply(&s, &raw("aa", "b"), None).await.unwrap();
        s.txn(Txn::new().then(Op::put(policy_key("bad"), b"{".to_vec())))
            .await
            .unwrap();
        let (all, bad, rev) = list(&s).await.unwrap();
        let names: Vec<_> = all.iter().map(|p| p.raw.name.as_str()).collect();
        assert_eq!(names, ["aa", "zz"]);
        assert_eq!(bad.len(), 1);
        assert!(rev >= 3);
    }
}
