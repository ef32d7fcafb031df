//! Endpoint records: one JSON file per attachment under
//! `<state_dir>/endpoints/`, written by rename so a crash leaves either the
//! old file or the new one. A record is written only after the kernel side
//! is complete: it is the commit point of an ADD.

use std::path::PathBuf;

use crate::api::Endpoint;
use crate::dataplane::host_ifname;

#[derive(Debug, thiserror::Error)]
#[error("endpoint store {path}: {msg}")]
pub struct StoreError {
    pub path: String,
    pub msg: String,
}

pub struct EndpointStore {
    dir: PathBuf,
}

impl EndpointStore {
    pub fn open(state_dir: &std::path::Path) -> Result<Self, StoreError> {
        let dir = state_dir.join("endpoints");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError {
            path: dir.display().to_string(),
            msg: e.to_string(),
        })?;
        Ok(EndpointStore { dir })
    }

    /// File name: the host veth name is already a stable hash of the key.
    fn file(&self, container_id: &str, ifname: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", host_ifname(container_id, ifname)))
    }

    fn err(&self, p: &std::path::Path, e: impl std::fmt::Display) -> StoreError {
        StoreError {
            path: p.display().to_string(),
            msg: e.to_string(),
        }
    }

    pub fn get(&self, container_id: &str, ifname: &str) -> Result<Option<Endpoint>, StoreError> {
        let p = self.file(container_id, ifname);
        match std::fs::read(&p) {
            Ok(b) => {
                let ep: Endpoint = serde_json::from_slice(&b).map_err(|e| self.err(&p, e))?;
                // Guard against a hash collision between two attachments.
                if ep.container_id == container_id && ep.ifname == ifname {
                    Ok(Some(ep))
                } else {
                    Ok(None)
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    pub fn put(&self, ep: &Endpoint) -> Result<(), StoreError> {
        let p = self.file(&ep.container_id, &ep.ifname);
        let tmp = p.with_extension("tmp");
        let data = serde_json::to_vec_pretty(ep).map_err(|e| self.err(&p, e))?;
        std::fs::write(&tmp, data)
            .and_then(|_| std::fs::rename(&tmp, &p))
            .map_err(|e| self.err(&p, e))
    }

    pub fn remove(&self, container_id: &str, ifname: &str) -> Result<(), StoreError> {
        let p = self.file(container_id, ifname);
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.err(&p, e)),
        }
    }

    /// Every record; unreadable files are reported, not fatal.
    pub fn list(&self) -> Result<(Vec<Endpoint>, Vec<String>), StoreError> {
        let mut eps = Vec::new();
        let mut bad = Vec::new();
        let rd = std::fs::read_dir(&self.dir).map_err(|e| self.err(&self.dir, e))?;
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                let _ = std::fs::remove_file(&p); // leftover .tmp of a crash
                continue;
            }
            match std::fs::read(&p)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Endpoint>(&b).map_err(|e| e.to_string()))
            {
                Ok(ep) => eps.push(ep),
                Err(msg) => bad.push(format!("{}: {msg}", p.display())),
            }
        }
        eps.sort_by(|a, b| (&a.container_id, &a.ifname).cmp(&(&b.container_id, &b.ifname)));
        Ok((eps, bad))
    }
}
