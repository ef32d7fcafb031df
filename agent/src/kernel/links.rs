//! Links: the host veth's name, alias and MACs; creating (see [`super::attach`]),
//! listing and deleting flatnet veths.

use super::*;

use futures::TryStreamExt;
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkUnspec};

/// `flat` and 9 hex digits of a 64-bit FNV-1a hash. 13 chars fits IFNAMSIZ.
pub fn host_ifname(container_id: &str, ifname: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in container_id
        .as_bytes()
        .iter()
        .chain(b"/")
        .chain(ifname.as_bytes())
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{HOST_IF_PREFIX}{:09x}", h >> 28)
}

/// Whether `name` has the shape of a flatnet host veth.
pub fn is_flatnet_ifname(name: &str) -> bool {
    name.len() == 13
        && name.starts_with(HOST_IF_PREFIX)
        && name[4..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// Validates a container interface name as the kernel would.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

pub(super) fn mac_string(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub(super) fn link_mac_bytes(m: &LinkMessage) -> Vec<u8> {
    m.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) => Some(b.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

pub(super) fn link_alias(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfAlias(s) => Some(s.clone()),
        _ => None,
    })
}

pub(super) fn link_is_veth(m: &LinkMessage) -> bool {
    m.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Veth))),
        _ => false,
    })
}

pub(super) fn link_name(m: &LinkMessage) -> Option<String> {
    m.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(s) => Some(s.clone()),
        _ => None,
    })
}

/// Looks a link up by name; `Ok(None)` when it does not exist.
pub async fn get_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>, DpError> {
    let mut s = handle.link().get().match_name(name.to_string()).execute();
    match s.try_next().await {
        Ok(m) => Ok(m),
        Err(e) if matches!(errno(&e), Some(ENODEV)) => Ok(None),
        Err(e) => Err(DpError::Netlink {
            what: format!("get link {name}"),
            source: e,
        }),
    }
}

impl Dataplane {
    /// Deletes the host-side link named `host_if` when it is a dead veth of
    /// this very attachment; `Ok(false)` when there is none (or it is not
    /// ours to delete). No live record can own it: the alias names this
    /// attachment, whose record the daemon has checked or removed under the
    /// attachment's lock before building, so it is a veth a DEL detached
    /// (queued for the reaper, which deletes by index and tolerates it being
    /// gone) or an interrupted ADD / crash left behind.
    pub(super) async fn remove_stale_host_end(
        &self,
        a: &Attachment,
        host_if: &str,
    ) -> Result<bool, DpError> {
        let Some(old) = get_link(&self.handle, host_if).await? else {
            return Ok(false);
        };
        if !link_is_veth(&old) || link_alias(&old).is_some_and(|al| al != a.alias()) {
            return Ok(false);
        }
        tracing::debug!(%host_if, index = old.header.index, "deleting stale host veth before re-creating it");
        match self.handle.link().del(old.header.index).execute().await {
            Ok(()) => Ok(true),
            // The reaper got there first: the name is free now.
            Err(e) if errno(&e) == Some(ENODEV) => Ok(true),
            Err(e) => Err(nl(format!("delete stale veth {host_if}"))(e)),
        }
    }

    /// Names the side an EEXIST came from (after any stale host end of ours
    /// was removed): the container's ifname, or a host link we must not touch.
    pub(super) async fn diagnose_eexist(&self, a: &Attachment, host_if: &str) -> DpError {
        let ifname = a.ifname.clone();
        let in_container = in_netns(&a.netns, move |h| async move {
            Ok(get_link(&h, &ifname).await?.is_some())
        })
        .await;
        match in_container {
            Ok(true) => return DpError::IfnameTaken(a.ifname.clone()),
            Ok(false) => {}
            Err(e) => return e,
        }
        match get_link(&self.handle, host_if).await {
            Ok(Some(l)) => DpError::Io(format!(
                "host interface name {host_if} is already used by {} (alias {:?})",
                if link_is_veth(&l) {
                    "a veth"
                } else {
                    "a non-veth link"
                },
                link_alias(&l)
            )),
            Ok(None) => DpError::Io(format!(
                "creating veth {host_if} / {} failed with EEXIST, but neither name exists now",
                a.ifname
            )),
            Err(e) => e,
        }
    }

    pub(super) async fn del_link(&self, name: &str) -> Result<bool, DpError> {
        let Some(l) = get_link(&self.handle, name).await? else {
            return Ok(false);
        };
        match self.handle.link().del(l.header.index).execute().await {
            Ok(()) => Ok(true),
            Err(e) if errno(&e) == Some(ENODEV) => Ok(false),
            Err(e) => Err(nl(format!("delete link {name}"))(e)),
        }
    }

    pub(super) async fn del_here(&self, host_if: &str) -> Result<(), DpError> {
        self.del_link(host_if).await.map(|_| ())
    }

    /// Deletes links by index (each veth pair goes with its host end);
    /// links already gone are fine. By index, not name: a new ADD of the
    /// same attachment may have re-created the name meanwhile. Several links
    /// are deleted in one kernel batch (tagged with a fresh device group,
    /// then one group delete): the RCU waits of a deletion are paid once per
    /// batch and the rtnl lock is taken once, not once per veth.
    /// Like [`Dataplane::del_indexes`], returning as soon as the kernel has
    /// announced every link deleted (unlisted, its addresses and routes
    /// flushed) instead of after its teardown's RCU waits; the request
    /// itself finishes in the background. An error of the request before
    /// the announcements is returned.
    pub async fn del_indexes_announced(&self, indexes: Vec<u32>) -> Result<(), DpError> {
        let watches: Option<Vec<_>> = indexes.iter().map(|&i| self.gone.watch(i)).collect();
        let Some(watches) = watches else {
            return self.del_indexes(indexes).await;
        };
        let dp = self.clone();
        let ids = indexes.clone();
        let mut req = tokio::spawn(async move {
            let r = dp.del_indexes(ids.clone()).await;
            dp.gone.forget(&ids);
            r
        });
        let announced = futures::future::join_all(watches);
        tokio::select! {
            r = &mut req => r.map_err(|e| DpError::Io(format!("delete task: {e}")))?,
            all = announced => {
                if all.iter().all(Result::is_ok) {
                    Ok(())
                } else {
                    // A waiter dropped without an announcement: the request
                    // ended (it forgets its waiters) — take its result.
                    req.await.map_err(|e| DpError::Io(format!("delete task: {e}")))?
                }
            }
        }
    }

    pub async fn del_indexes(&self, indexes: Vec<u32>) -> Result<(), DpError> {
        static NEXT_GROUP: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        self.on_own_socket(move |dp| async move {
            let h = &dp.handle;
            let gone = |e: &rtnetlink::Error| errno(e) == Some(ENODEV);
            if let [index] = indexes[..] {
                return match h.link().del(index).execute().await {
                    Err(e) if !gone(&e) => Err(nl(format!("delete link #{index}"))(e)),
                    _ => Ok(()),
                };
            }
            // Groups 0x464c0000.. ("FL"): only flatnet's detached veths carry them.
            let group = 0x464c_0000
                | (NEXT_GROUP.fetch_add(1, std::sync::atomic::Ordering::Relaxed) & 0xffff);
            let mut tagged = 0;
            for &index in &indexes {
                let msg = LinkUnspec::new_with_index(index).link_group(group).build();
                match h.link().set(msg).execute().await {
                    Ok(()) => tagged += 1,
                    Err(e) if gone(&e) => {}
                    Err(e) => return Err(nl(format!("tag link #{index}"))(e)),
                }
            }
            if tagged == 0 {
                return Ok(());
            }
            let mut req = h.link().del(0);
            req.message_mut()
                .attributes
                .push(LinkAttribute::Group(group));
            match req.execute().await {
                Err(e) if !gone(&e) => Err(nl(format!("delete link group {group:#x}"))(e)),
                _ => Ok(()),
            }
        })
        .await
    }

    /// Every flatnet host veth in this namespace.
    pub async fn list_links(&self) -> Result<Vec<FoundLink>, DpError> {
        let mut s = self.handle.link().get().execute();
        let mut out = Vec::new();
        while let Some(m) = s.try_next().await.map_err(nl("dump links"))? {
            let Some(name) = link_name(&m) else { continue };
            if !is_flatnet_ifname(&name) {
                continue;
            }
            let owner = link_alias(&m).and_then(|a| {
                let rest = a.strip_prefix(ALIAS_PREFIX)?;
                let (id, ifn) = rest.split_once(' ')?;
                Some((id.to_string(), ifn.to_string()))
            });
            out.push(FoundLink {
                name,
                index: m.header.index,
                owner,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn host_names_are_deterministic_and_short() {
        let a = host_ifname("abc123", "eth0");
        assert_eq!(a, host_ifname("abc123", "eth0"));
        assert_ne!(a, host_ifname("abc123", "eth1"));
        assert_ne!(a, host_ifname("abc124", "eth0"));
        assert_eq!(a.len(), 13);
        assert!(is_flatnet_ifname(&a));
        assert!(!is_flatnet_ifname("eth0"));
        assert!(!is_flatnet_ifname("flzzzzzzzzzzz"));
    }

    #[test]
    pub(super) fn ifname_validation() {
        assert!(valid_ifname("eth0"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("0123456789abcdef"));
        assert!(!valid_ifname(".."));
    }
}
