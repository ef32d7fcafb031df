//! Sysctls through /proc/sys in flatnetd's own (host) namespace.

use super::*;

/// Writes a sysctl through /proc/sys in flatnetd's own (host) namespace.
pub(super) fn sysctl(key: &str, value: &str) -> Result<(), DpError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| DpError::Io(format!("sysctl {path}={value}: {e}")))
}

/// Reads a sysctl in flatnetd's own namespace.
pub fn read_sysctl(key: &str) -> Result<String, DpError> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| DpError::Io(format!("read {path}: {e}")))
}
