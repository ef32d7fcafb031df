//! Shared helpers of the interop tests: a two-namespace topology and our
//! speaker binary (`flatnet-bgpd`) running inside a namespace, queried through
//! its JSON state file.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use flatnet_lab::{Daemon, LabError, Netns, veth, wait_for};
use serde_json::Value;

/// Namespaces "tor" (the real router) and "host" (our speaker) joined by a
/// veth: 10.0.0.1/30 + 2001:db8::1/64 on the ToR, .2 / ::2 on the host.
pub struct Pair {
    pub tor: Netns,
    pub host: Netns,
}

pub const TOR_V4: &str = "10.0.0.1";
pub const HOST_V4: &str = "10.0.0.2";
pub const TOR_V6: &str = "2001:db8::1";
pub const HOST_V6: &str = "2001:db8::2";
pub const TOR_AS: u32 = 65001;
pub const HOST_AS: u32 = 65002;

pub fn pair(tag: &str) -> Pair {
    flatnet_lab::require_root().expect("interop tests need root");
    let tor = Netns::new(&format!("{tag}t")).unwrap();
    let host = Netns::new(&format!("{tag}h")).unwrap();
    veth(&tor, "eth0", &host, "eth0").unwrap();
    tor.addr_add("eth0", "10.0.0.1/30").unwrap();
    tor.addr_add("eth0", "2001:db8::1/64").unwrap();
    host.addr_add("eth0", "10.0.0.2/30").unwrap();
    host.addr_add("eth0", "2001:db8::2/64").unwrap();
    Pair { tor, host }
}

/// Our speaker running in a namespace.
pub struct Ours<'a> {
    ns: &'a Netns,
    pub dir: tempfile::TempDir,
    daemon: Option<Daemon>,
    starts: u32,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_flatnet-bgpd"))
}

impl<'a> Ours<'a> {
    /// Writes `config` and starts `flatnet-bgpd` in `ns`.
    pub fn start(ns: &'a Netns, config: &str) -> Ours<'a> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bgpd.toml"), config).unwrap();
        let mut o = Ours {
            ns,
            dir,
            daemon: None,
            starts: 0,
        };
        o.launch();
        o
    }

    fn launch(&mut self) {
        self.starts += 1;
        let log = File::create(self.dir.path().join(format!("bgpd-{}.log", self.starts))).unwrap();
        let mut cmd = self.ns.command(binary());
        cmd.arg("--config")
            .arg(self.dir.path().join("bgpd.toml"))
            .arg("--state-file")
            .arg(self.state_path())
            .arg("--socket")
            .arg(self.socket_path())
            .env("RUST_LOG", "info,flatnet_bgp=debug")
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log));
        self.daemon = Some(self.ns.spawn(&mut cmd).unwrap());
        let pid = self.daemon.as_ref().and_then(|d| d.pid());
        // Wait for a state file written by this process.
        wait_for("flatnet-bgpd state file", Duration::from_secs(20), || {
            Ok(self
                .try_state()
                .filter(|s| s["pid"].as_u64().map(|p| p as u32) == pid)
                .map(|_| ()))
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", self.logs()));
    }

    /// The control socket (`--socket`).
    pub fn socket_path(&self) -> PathBuf {
        self.dir.path().join("bgpd.sock")
    }

    /// One request line on the control socket, its JSON answer.
    pub fn control(&self, request: &str) -> Value {
        use std::io::{BufRead, Write};
        let mut s = std::os::unix::net::UnixStream::connect(self.socket_path())
            .unwrap_or_else(|e| panic!("control socket: {e}\n{}", self.logs()));
        s.write_all(format!("{request}\n").as_bytes()).unwrap();
        let mut line = String::new();
        std::io::BufReader::new(s).read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    pub fn state_path(&self) -> PathBuf {
        self.dir.path().join("state.json")
    }

    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("bgpd-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n---- restart ----\n")
    }

    pub fn try_state(&self) -> Option<Value> {
        let s = std::fs::read_to_string(self.state_path()).ok()?;
        serde_json::from_str(&s).ok()
    }

    pub fn state(&self) -> Value {
        self.try_state().expect("state file")
    }

    pub fn peer(&self, addr: &str) -> Option<Value> {
        self.state()["peers"]
            .as_array()?
            .iter()
            .find(|p| p["address"].as_str() == Some(addr))
            .cloned()
    }

    pub fn wait_established(&self, addr: &str, timeout: Duration) -> Value {
        wait_for(
            &format!("our session with {addr} Established"),
            timeout,
            || Ok(self.peer(addr).filter(|p| p["state"] == "Established")),
        )
        .unwrap_or_else(|e| panic!("{e}\npeer: {:?}\n{}", self.peer(addr), self.logs()))
    }

    /// Paths of a prefix in our Loc-RIB.
    pub fn paths(&self, prefix: &str) -> Vec<Value> {
        self.state()["rib"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e["prefix"].as_str() == Some(prefix)))
            .and_then(|e| e["paths"].as_array().cloned())
            .unwrap_or_default()
    }

    pub fn rib_prefixes(&self) -> Vec<String> {
        self.state()["rib"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|e| e["prefix"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        wait_for(what, timeout, || Ok(f(self))).unwrap_or_else(|e| panic!("{e}\n{}", self.logs()))
    }

    /// Replaces the config file and sends SIGHUP.
    pub fn reload(&self, config: &str) {
        std::fs::write(self.dir.path().join("bgpd.toml"), config).unwrap();
        let pid = self.daemon.as_ref().and_then(|d| d.pid()).expect("running");
        flatnet_lab::run(std::process::Command::new("kill").args(["-HUP", &pid.to_string()]))
            .unwrap();
    }

    pub fn kill9(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }

    pub fn pid(&self) -> Option<u32> {
        self.daemon.as_ref().and_then(|d| d.pid())
    }
}

impl Drop for Ours<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- flatnet-bgpd logs ----\n{}", self.logs());
        }
    }
}

/// Wraps a lab error with context for `unwrap_or_else(panic)`.
pub fn fail(e: LabError, ours: &Ours<'_>) -> ! {
    panic!("{e}\n---- flatnet-bgpd logs ----\n{}", ours.logs())
}

/// Our speaker's config: one peer (the ToR over IPv4) plus `extra_peer` lines and `rest`.
pub fn our_cfg(extra_peer: &str, rest: &str) -> String {
    format!(
        r#"router_id = "2.2.2.2"
asn = {HOST_AS}
listen = ["0.0.0.0:179", "[::]:179"]

[[peer]]
address = "{TOR_V4}"
remote_as = {TOR_AS}
hold_time = 9
connect_retry = 1
import_policy = "accept"
export_policy = "accept"
next_hop_ipv6 = "{HOST_V6}"
{extra_peer}
{rest}
"#
    )
}

/// `[[originate]]` tables.
pub fn originate(prefixes: &[&str]) -> String {
    prefixes
        .iter()
        .map(|p| format!("[[originate]]\nprefix = \"{p}\"\n"))
        .collect()
}

/// `n` distinct /24s.
pub fn thousand(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("10.{}.{}.0/24", 100 + i / 256, i % 256))
        .collect()
}

/// Prefixes `router` learned (not originated) in IPv4 unicast.
pub fn learned_v4<R: flatnet_lab::Router + ?Sized>(
    router: &R,
) -> std::collections::BTreeSet<String> {
    router
        .rib(flatnet_lab::Family::Ipv4Unicast)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.learned)
        .map(|r| r.prefix)
        .collect()
}

/// The ToR config every daemon gets: one neighbor (us), IPv6 routes over the
/// IPv4 session with the ToR's global IPv6 next hop.
pub fn tor_cfg(originate: &[&str]) -> flatnet_lab::RouterConfig {
    let mut n = flatnet_lab::NeighborConfig::new(HOST_V4.parse().unwrap(), HOST_AS);
    n.ipv6_next_hop = Some(TOR_V6.parse().unwrap());
    let mut c = flatnet_lab::RouterConfig::new("1.1.1.1".parse().unwrap(), TOR_AS).neighbor(n);
    for p in originate {
        c = c.originate(p);
    }
    c
}

/// What [`check_caps_and_routes`] saw, for assertions specific to one router.
pub struct CapsAndRoutes<'n> {
    pub ours: Ours<'n>,
    /// The peer's own view of the session.
    pub st: flatnet_lab::NeighborStatus,
    /// Our peer entry once Established, and its capabilities.
    pub peer: Value,
    pub caps: Vec<String>,
    /// Our 10.2.0.0/24 and 2001:db8:2::/48 in the peer's RIB.
    pub r: flatnet_lab::RibEntry,
    pub r6: flatnet_lab::RibEntry,
    /// The peer's 2001:db8:1::/48 in our Loc-RIB.
    pub p6: Value,
}

/// IPv4 + IPv6 on one session: starts our speaker in `ns` originating
/// 10.2.0.0/24 and 2001:db8:2::/48; both sides Established, the peer's own
/// view of the capabilities, and routes both ways in both families (the
/// router originates 10.1.0.0/24 and 2001:db8:1::/48).
pub fn check_caps_and_routes<'n, R: flatnet_lab::Router + ?Sized>(
    router: &R,
    ns: &'n Netns,
    expect_ext_msg: bool,
) -> CapsAndRoutes<'n> {
    let ours = Ours::start(
        ns,
        &our_cfg("", &originate(&["10.2.0.0/24", "2001:db8:2::/48"])),
    );
    let t = Duration::from_secs(30);
    let st = router
        .wait_established(HOST_V4, t)
        .unwrap_or_else(|e| fail(e, &ours));
    assert!(st.caps.four_octet_as, "{} view: {st:?}", router.kind());
    assert!(st.caps.route_refresh, "{} view: {st:?}", router.kind());
    assert!(
        st.caps.mp_ipv4_unicast && st.caps.mp_ipv6_unicast,
        "{} view: {st:?}",
        router.kind()
    );
    assert_eq!(
        st.caps.extended_message,
        expect_ext_msg,
        "{} view: {st:?}",
        router.kind()
    );
    let peer = ours.wait_established(TOR_V4, t);
    let caps: Vec<String> = serde_json::from_value(peer["capabilities"].clone()).unwrap();
    for c in [
        "mp:ipv4-unicast",
        "mp:ipv6-unicast",
        "four-octet-as",
        "route-refresh",
    ] {
        assert!(caps.iter().any(|x| x == c), "missing {c} in {caps:?}");
    }
    let r = router
        .wait_route("10.2.0.0/24", t)
        .unwrap_or_else(|e| fail(e, &ours));
    assert_eq!(r.as_path, vec![HOST_AS]);
    let r6 = router
        .wait_route("2001:db8:2::/48", t)
        .unwrap_or_else(|e| fail(e, &ours));
    assert_eq!(r6.as_path, vec![HOST_AS]);
    ours.wait("10.1.0.0/24 best in our Loc-RIB", t, |o| {
        o.paths("10.1.0.0/24")
            .into_iter()
            .find(|x| x["best"] == true)
    });
    let p6 = ours.wait("2001:db8:1::/48 in our Loc-RIB", t, |o| {
        o.paths("2001:db8:1::/48").into_iter().next()
    });
    assert_eq!(p6["as_path"], serde_json::json!([TOR_AS]));
    CapsAndRoutes {
        ours,
        st,
        peer,
        caps,
        r,
        r6,
        p6,
    }
}

/// Starts our speaker in `ns` announcing 1,000 prefixes, then withdraws
/// half: the peer's RIB shows exactly the rest.
pub fn check_thousand_withdraw_half<'n, R: flatnet_lab::Router + ?Sized>(
    router: &R,
    ns: &'n Netns,
) -> Ours<'n> {
    let all = thousand(1000);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let ours = Ours::start(ns, &our_cfg("", &originate(&refs)));
    let t = Duration::from_secs(60);
    router
        .wait_established(HOST_V4, t)
        .unwrap_or_else(|e| fail(e, &ours));
    let want: std::collections::BTreeSet<String> = all.iter().cloned().collect();
    wait_for("peer has our 1000 prefixes", t, || {
        Ok((learned_v4(router) == want).then_some(()))
    })
    .unwrap_or_else(|e| fail(e, &ours));
    let keep: Vec<&str> = refs.iter().step_by(2).copied().collect();
    ours.reload(&our_cfg("", &originate(&keep)));
    let half: std::collections::BTreeSet<String> = keep.iter().map(|s| s.to_string()).collect();
    wait_for("peer has exactly the 500 remaining", t, || {
        Ok((learned_v4(router) == half).then_some(()))
    })
    .unwrap_or_else(|e| fail(e, &ours));
    ours
}

/// Which real router a generic scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Frr,
    Bird,
    Gobgp,
}

/// Starts `kind` in `ns` with `cfg`.
pub fn start_router<'a>(
    kind: Kind,
    ns: &'a Netns,
    cfg: flatnet_lab::RouterConfig,
) -> Box<dyn flatnet_lab::Router + 'a> {
    match kind {
        Kind::Frr => Box::new(flatnet_lab::frr::Frr::start(ns, cfg).unwrap()),
        Kind::Bird => Box::new(flatnet_lab::bird::Bird::start(ns, cfg).unwrap()),
        Kind::Gobgp => Box::new(flatnet_lab::gobgp::Gobgp::start(ns, cfg).unwrap()),
    }
}

const LONG: Duration = Duration::from_secs(30);

/// TCP MD5: returns whether the session came up.
pub fn scenario_md5(kind: Kind, tag: &str, router_pw: Option<&str>, our_pw: Option<&str>) -> bool {
    let p = pair(tag);
    let mut cfg = tor_cfg(&["10.1.0.0/24"]);
    cfg.neighbors[0].password = router_pw.map(String::from);
    let r = start_router(kind, &p.tor, cfg);
    let extra = our_pw
        .map(|pw| format!("password = \"{pw}\""))
        .unwrap_or_default();
    let ours = Ours::start(&p.host, &our_cfg(&extra, ""));
    let up = r.wait_established(HOST_V4, Duration::from_secs(12)).is_ok();
    if up {
        ours.wait_established(TOR_V4, LONG);
    } else {
        let st = ours.peer(TOR_V4).unwrap();
        assert_ne!(
            st["state"], "Established",
            "we must not be Established when the peer is not"
        );
    }
    up
}

/// Two ToRs of `kind` in different ASes offer the same prefix: our multipath set holds both.
pub fn scenario_multipath(kind: Kind, tag: &str) {
    flatnet_lab::require_root().unwrap();
    let host = Netns::new(&format!("{tag}h")).unwrap();
    let t1 = Netns::new(&format!("{tag}1")).unwrap();
    let t2 = Netns::new(&format!("{tag}2")).unwrap();
    veth(&t1, "eth0", &host, "eth1").unwrap();
    veth(&t2, "eth0", &host, "eth2").unwrap();
    t1.addr_add("eth0", "10.0.1.1/30").unwrap();
    host.addr_add("eth1", "10.0.1.2/30").unwrap();
    t2.addr_add("eth0", "10.0.2.1/30").unwrap();
    host.addr_add("eth2", "10.0.2.2/30").unwrap();
    let mk = |id: &str, asn: u32, nbr: &str| {
        let mut n = flatnet_lab::NeighborConfig::new(nbr.parse().unwrap(), HOST_AS);
        n.ipv6_unicast = false;
        flatnet_lab::RouterConfig::new(id.parse().unwrap(), asn)
            .neighbor(n)
            .originate("10.9.0.0/24")
    };
    let r1 = start_router(kind, &t1, mk("1.1.1.1", 65001, "10.0.1.2"));
    let r2 = start_router(kind, &t2, mk("3.3.3.3", 65003, "10.0.2.2"));
    let cfg = format!(
        r#"router_id = "2.2.2.2"
asn = {HOST_AS}
listen = ["0.0.0.0:179"]
[[peer]]
address = "10.0.1.1"
remote_as = 65001
hold_time = 9
import_policy = "accept"
export_policy = "accept"
families = ["ipv4-unicast"]
[[peer]]
address = "10.0.2.1"
remote_as = 65003
hold_time = 9
import_policy = "accept"
export_policy = "accept"
families = ["ipv4-unicast"]
"#
    );
    let ours = Ours::start(&host, &cfg);
    r1.wait_established("10.0.1.2", LONG)
        .unwrap_or_else(|e| fail(e, &ours));
    r2.wait_established("10.0.2.2", LONG)
        .unwrap_or_else(|e| fail(e, &ours));
    let paths = ours.wait("two paths for 10.9.0.0/24", LONG, |o| {
        let p = o.paths("10.9.0.0/24");
        (p.len() == 2).then_some(p)
    });
    assert!(paths.iter().all(|p| p["multipath"] == true), "{paths:?}");
    assert_eq!(paths.iter().filter(|p| p["best"] == true).count(), 1);
    let mut nh: Vec<&str> = paths
        .iter()
        .filter_map(|p| p["next_hop"].as_str())
        .collect();
    nh.sort();
    assert_eq!(nh, vec!["10.0.1.1", "10.0.2.1"]);
}

/// The ToR config of the max-prefix scenario: 20 prefixes 10.50.{0..20}.0/24.
pub fn max_prefix_tor_cfg() -> flatnet_lab::RouterConfig {
    let all: Vec<String> = (0..20).map(|i| format!("10.50.{i}.0/24")).collect();
    tor_cfg(&all.iter().map(String::as_str).collect::<Vec<_>>())
}

/// Max-prefix: the peer sends 20 > 10; we send Cease/1 (then `after_cease`
/// runs), come back after the interval, and stay up once the peer sends few
/// enough. Returns how long we took to come back after the peer's withdrawals.
pub fn check_max_prefix<R: flatnet_lab::Router + ?Sized>(
    r: &mut R,
    ns: &Netns,
    after_cease: impl FnOnce(&R, &Ours<'_>),
) -> Duration {
    let extra = "[[peer.max_prefix]]\nfamily = \"ipv4-unicast\"\nlimit = 10\nwarning_percent = 50\nrestart_interval = 3\n";
    let ours = Ours::start(ns, &our_cfg(extra, ""));
    let peer = ours.wait("max-prefix Cease", LONG, |o| {
        o.peer(TOR_V4).filter(|p| {
            p["max_prefix_resets"].as_u64().unwrap_or(0) >= 1
                && p["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("Maximum Number"))
        })
    });
    let err = peer["last_error"].as_str().unwrap_or_default().to_string();
    assert!(err.contains("Maximum Number of Prefixes Reached"), "{err}");
    after_cease(r, &ours);
    // The routes are gone from our RIB while the session is down.
    ours.wait("routes flushed", LONG, |o| {
        (!o.rib_prefixes().iter().any(|p| p.starts_with("10.50."))).then_some(())
    });
    for i in 0..15 {
        r.withdraw(&format!("10.50.{i}.0/24")).unwrap();
    }
    let back = std::time::Instant::now();
    let peer = ours.wait("back with 5 prefixes", Duration::from_secs(60), |o| {
        o.peer(TOR_V4)
            .filter(|p| p["state"] == "Established" && p["prefixes_accepted"] == 5)
    });
    let back = back.elapsed();
    r.wait_established(HOST_V4, LONG)
        .unwrap_or_else(|e| fail(e, &ours));
    assert_eq!(
        ours.peer(TOR_V4).unwrap()["max_prefix_resets"],
        peer["max_prefix_resets"],
        "stays up"
    );
    back
}

/// [`check_max_prefix`] against a fresh router of `kind`.
pub fn scenario_max_prefix(kind: Kind, tag: &str) {
    let p = pair(tag);
    let mut r = start_router(kind, &p.tor, max_prefix_tor_cfg());
    check_max_prefix(&mut *r, &p.host, |_, _| {});
}

/// GR, helper role: SIGKILL the peer; we keep its routes stale, then sweep
/// them after its restart time.
pub fn scenario_gr_helper(kind: Kind, tag: &str) {
    let p = pair(tag);
    let mut cfg = tor_cfg(&["10.1.0.0/24"]);
    cfg.neighbors[0].graceful_restart = true;
    cfg.neighbors[0].restart_time = 5;
    let mut r = start_router(kind, &p.tor, cfg);
    let ours = Ours::start(
        &p.host,
        &our_cfg("[peer.graceful_restart]\nrestart_time = 60\n", ""),
    );
    let peer = ours.wait_established(TOR_V4, LONG);
    assert_eq!(peer["peer_restart_time"], 5, "{peer}");
    ours.wait("route from the peer", LONG, |o| {
        o.paths("10.1.0.0/24").into_iter().next()
    });
    let killed = std::time::Instant::now();
    r.kill9().unwrap();
    let path = ours.wait("route marked stale", LONG, |o| {
        o.paths("10.1.0.0/24")
            .into_iter()
            .find(|p| p["stale"] == true)
    });
    assert_eq!(path["source"], TOR_V4);
    assert!(
        killed.elapsed() < Duration::from_secs(5),
        "stale before the restart time"
    );
    // Swept after the peer's restart time (5 s) since it does not come back.
    ours.wait("stale route swept", LONG, |o| {
        o.paths("10.1.0.0/24").is_empty().then_some(())
    });
    assert!(
        killed.elapsed() >= Duration::from_secs(4),
        "swept early: {:?}",
        killed.elapsed()
    );
}

/// What [`scenario_gr_restarting`] saw beyond its own assertions.
pub struct GrRestart {
    /// The peer showed our routes as stale while we were gone.
    pub saw_stale: bool,
    /// Our speaker's logs, both runs.
    pub logs: String,
}

/// GR, restarting speaker: SIGKILL ours and start again; the peer never
/// withdraws our routes (polled continuously) and clears their stale flags
/// after our End-of-RIB.
pub fn scenario_gr_restarting(kind: Kind, tag: &str) -> GrRestart {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;
    let p = pair(tag);
    let mut cfg = tor_cfg(&[]);
    cfg.neighbors[0].graceful_restart = true;
    let r = start_router(kind, &p.tor, cfg);
    let mut ours = Ours::start(
        &p.host,
        &our_cfg(
            "[peer.graceful_restart]\nrestart_time = 60\n",
            &originate(&["10.2.0.0/24", "10.2.1.0/24"]),
        ),
    );
    let st = r
        .wait_established(HOST_V4, LONG)
        .unwrap_or_else(|e| fail(e, &ours));
    assert!(st.caps.graceful_restart, "{st:?}");
    r.wait_route("10.2.0.0/24", LONG)
        .unwrap_or_else(|e| fail(e, &ours));
    r.wait_route("10.2.1.0/24", LONG)
        .unwrap_or_else(|e| fail(e, &ours));
    // The peer noticed we are gone: it shows our routes stale (FRR, GoBGP)
    // or, for BIRD, which does not show stale flags, its session left Established.
    let shows_stale = kind != Kind::Bird;
    let noticed = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let mut polls = 0usize;
    let mut missing = Vec::new();
    let mut saw_stale = false;
    std::thread::scope(|s| {
        let restarter = s.spawn(|| {
            ours.kill9();
            // Stay down until the peer noticed (or 10 s), so the window in
            // which it could withdraw our routes is observable.
            let t0 = Instant::now();
            while !noticed.load(Ordering::SeqCst) && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(20));
            }
            ours.restart(); // start again with the state file present
            ours.wait_established(TOR_V4, LONG);
            done.store(true, Ordering::SeqCst);
        });
        let deadline = Instant::now() + LONG;
        let mut clear_since: Option<Instant> = None;
        loop {
            let rib = r.rib(flatnet_lab::Family::Ipv4Unicast).unwrap_or_default();
            polls += 1;
            let ours_routes: Vec<_> = rib
                .iter()
                .filter(|e| e.prefix.starts_with("10.2."))
                .collect();
            for pfx in ["10.2.0.0/24", "10.2.1.0/24"] {
                if !ours_routes.iter().any(|e| e.prefix == pfx && e.learned) {
                    missing.push(pfx.to_string());
                }
            }
            if ours_routes.iter().any(|e| e.stale) {
                saw_stale = true;
                noticed.store(true, Ordering::SeqCst);
            }
            if !shows_stale
                && !noticed.load(Ordering::SeqCst)
                && r.neighbor(HOST_V4)
                    .ok()
                    .flatten()
                    .is_some_and(|n| !n.established())
            {
                noticed.store(true, Ordering::SeqCst);
            }
            // Done once we are back and the stale flags cleared (our End-of-RIB).
            let clear = done.load(Ordering::SeqCst)
                && ours_routes.len() == 2
                && ours_routes.iter().all(|e| !e.stale);
            if clear {
                let t = *clear_since.get_or_insert_with(Instant::now);
                if t.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "stale flags never cleared");
            std::thread::sleep(Duration::from_millis(20));
        }
        restarter.join().unwrap();
    });
    assert!(polls > 5, "the poller ran");
    assert!(
        missing.is_empty(),
        "{} withdrew our routes during the restart: {missing:?}",
        r.kind()
    );
    GrRestart {
        saw_stale,
        logs: ours.logs(),
    }
}

/// Route refresh: starts our speaker in `ns` with an import policy that
/// rejects the peer's 10.7.0.0/24, then accepts it: the route arrives
/// through ROUTE-REFRESH without resetting the session (then `after` runs).
/// The router originates 10.1.0.0/24 and 10.7.0.0/24.
pub fn check_route_refresh<R: flatnet_lab::Router + ?Sized>(
    r: &R,
    ns: &Netns,
    after: impl FnOnce(&R, &Ours<'_>),
) {
    let policy = |accept_7: bool| {
        format!(
            "[[policy]]\nname = \"in\"\ndefault = \"reject\"\n[[policy.rule]]\nprefix = \"10.1.0.0/16\"\nle = 24\naction = \"accept\"\n{}",
            if accept_7 {
                "[[policy.rule]]\nprefix = \"10.7.0.0/16\"\nle = 24\naction = \"accept\"\n"
            } else {
                ""
            }
        )
    };
    // FRR 8.4 ignores a ROUTE-REFRESH that arrives before it sent End-of-RIB,
    // and sends End-of-RIB only to peers that announced graceful restart.
    let cfg = |accept_7: bool| {
        our_cfg(
            "[peer.graceful_restart]\nrestart_time = 60\n",
            &policy(accept_7),
        )
        .replace("import_policy = \"accept\"", "import_policy = \"in\"")
    };
    let ours = Ours::start(ns, &cfg(false));
    ours.wait_established(TOR_V4, LONG);
    ours.wait("10.1.0.0/24 accepted", LONG, |o| {
        o.paths("10.1.0.0/24").into_iter().next()
    });
    assert!(
        ours.paths("10.7.0.0/24").is_empty(),
        "filtered by import policy"
    );
    let up_before = ours.peer(TOR_V4).unwrap()["uptime_secs"]
        .as_u64()
        .unwrap_or(0);
    ours.reload(&cfg(true));
    ours.wait("10.7.0.0/24 after route refresh", LONG, |o| {
        o.paths("10.7.0.0/24").into_iter().next()
    });
    let peer = ours.peer(TOR_V4).unwrap();
    assert_eq!(peer["state"], "Established");
    assert!(
        peer["uptime_secs"].as_u64().unwrap_or(0) >= up_before,
        "no session reset: {peer}"
    );
    assert!(peer["last_error"].is_null(), "{peer}");
    assert!(
        ours.logs().contains("sending ROUTE-REFRESH"),
        "we asked for a refresh"
    );
    assert!(r.wait_established(HOST_V4, Duration::from_secs(1)).is_ok());
    after(r, &ours);
}

/// [`check_route_refresh`] against a fresh router of `kind`.
pub fn scenario_route_refresh(kind: Kind, tag: &str) {
    let p = pair(tag);
    let r = start_router(kind, &p.tor, tor_cfg(&["10.1.0.0/24", "10.7.0.0/24"]));
    check_route_refresh(&*r, &p.host, |_, _| {});
}
