//! Sysctls through /proc/sys in flatnetd's own (host) namespace.

#![allow(unused_imports)]
use super::*;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use futures::TryStreamExt;
use netlink_packet_route::address::{AddressAttribute, AddressFlags};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::NeighbourState;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

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
