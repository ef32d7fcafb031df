//! Datapath benchmark (ignored by default; run as root):
//! `cargo test -p flatnet-agent --test bench_datapath -- --ignored --nocapture`
//!
//! Two host namespaces joined by one veth link ("the fabric"), flatnetd and
//! a container on each (real CNI ADDs). TCP throughput (iperf3, one stream,
//! `BENCH_SECS` seconds, default 5) in the same run, over the same link:
//! container↔container across the hosts (flatnet: routed, no
//! encapsulation), host↔host (the reference), and a VXLAN overlay between
//! the same hosts. The routes to the other host's block are static here: the
//! benchmark measures the datapath, not BGP. Goal: ≥ 95 % of host↔host and
//! ahead of VXLAN.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::Host;
use flatnet_lab::Netns;

fn secs() -> u32 {
    std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5)
}

/// iperf3 from `client` to `server_ip` (a server already listening in
/// `server`); receiver-side bits per second.
fn iperf(server: &Netns, client: &Netns, server_ip: &str) -> f64 {
    let mut srv = server
        .spawn(
            server
                .command("iperf3")
                .args(["-s", "-1", "-B", server_ip])
                .stdout(std::process::Stdio::null()),
        )
        .unwrap();
    // Ready once it listens (ss in its namespace), then one client run.
    flatnet_lab::wait_for("iperf3 server", Duration::from_secs(10), || {
        let ss = server.exec_stdout("ss", &["-ltnH", "sport", "= :5201"])?;
        Ok((!ss.trim().is_empty()).then_some(()))
    })
    .unwrap();
    let out = client
        .exec(
            "iperf3",
            &["-c", server_ip, "-t", &secs().to_string(), "-J"],
        )
        .unwrap();
    let _ = srv.is_running();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("iperf3: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    v["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .unwrap_or_else(|| panic!("iperf3 result: {v}"))
}

fn container_ip(r: &serde_json::Value) -> String {
    common::result_v4(r)
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn datapath_container_vs_host_vs_vxlan() {
    flatnet_lab::require_root().unwrap();
    let a = Netns::new("dpa").unwrap();
    let b = Netns::new("dpb").unwrap();
    flatnet_lab::veth(&a, "eth0", &b, "eth0").unwrap();
    a.addr_add("eth0", "10.0.0.1/30").unwrap();
    b.addr_add("eth0", "10.0.0.2/30").unwrap();
    let ds = tempfile::tempdir().unwrap();
    let url = format!("file:{}/datastore", ds.path().display());
    let pools = "[[pool]]\ncidr = \"10.244.0.0/16\"\nblock_size = 26\n";
    let mut ha = Host::start_with(a, tempfile::tempdir().unwrap(), "dpa", "", pools, &url);
    let mut hb = Host::start_with(b, tempfile::tempdir().unwrap(), "dpb", "", pools, &url);
    // Container veths at the link's MTU (the harness default is 1400), so
    // all three paths carry the same segment size except VXLAN's overhead.
    for h in [&mut ha, &mut hb] {
        let f = h.dir.path().join("flatnetd.toml");
        let text = std::fs::read_to_string(&f)
            .unwrap()
            .replace("mtu = 1400", "mtu = 1500");
        std::fs::write(&f, text).unwrap();
        h.daemon = None;
        h.start_daemon();
    }
    let ca = Netns::new("dpca").unwrap();
    let cb = Netns::new("dpcb").unwrap();
    let ra = ha.add("dp-a", &ca);
    let rb = hb.add("dp-b", &cb);
    let (ipa, ipb) = (container_ip(&ra), container_ip(&rb));
    let block = |h: &Host| {
        h.cli_json(&["ipam", "show"])["blocks"][0]["cidr"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let (ba, bb) = (block(&ha), block(&hb));
    // Static routes to the other host's block over the fabric link.
    ha.ns
        .exec("ip", &["route", "add", &bb, "via", "10.0.0.2"])
        .unwrap();
    hb.ns
        .exec("ip", &["route", "add", &ba, "via", "10.0.0.1"])
        .unwrap();
    // A VXLAN overlay between the same hosts over the same link.
    for (h, local, remote, addr) in [
        (&ha, "10.0.0.1", "10.0.0.2", "192.168.77.1/24"),
        (&hb, "10.0.0.2", "10.0.0.1", "192.168.77.2/24"),
    ] {
        h.ns.exec(
            "ip",
            &[
                "link", "add", "vx0", "type", "vxlan", "id", "77", "local", local, "remote",
                remote, "dstport", "4789", "dev", "eth0",
            ],
        )
        .unwrap();
        h.ns.exec("ip", &["addr", "add", addr, "dev", "vx0"])
            .unwrap();
        h.ns.exec("ip", &["link", "set", "vx0", "up"]).unwrap();
    }
    let ping = ca.exec("ping", &["-c", "1", "-W", "2", &ipb]).unwrap();
    assert!(ping.status.success(), "container B unreachable from A");

    // Interleaved rounds, median of each (the machine is shared).
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let (mut f, mut h, mut v) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        f.push(iperf(&cb, &ca, &ipb));
        h.push(iperf(&hb.ns, &ha.ns, "10.0.0.2"));
        v.push(iperf(&hb.ns, &ha.ns, "192.168.77.2"));
    }
    let median = |mut x: Vec<f64>| {
        x.sort_by(f64::total_cmp);
        x[x.len() / 2]
    };
    let (flatnet, host, vxlan) = (median(f), median(h), median(v));
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let g = |x: f64| x / 1e9;
    println!(
        "datapath (median of {rounds} x {}s, 1 TCP stream, MTU 1500 everywhere, VXLAN 1450): \
         flatnet container->container {:.2} Gbit/s ({ipa} -> {ipb}); host->host {:.2} Gbit/s; \
         VXLAN {:.2} Gbit/s; flatnet/host {:.1} %; flatnet/VXLAN {:.2}x; loadavg {}",
        secs(),
        g(flatnet),
        g(host),
        g(vxlan),
        100.0 * flatnet / host,
        flatnet / vxlan,
        load.trim()
    );
    assert!(flatnet > 0.0 && host > 0.0 && vxlan > 0.0);
    let mut r = flatnet_lab::report::Report::new(
        "datapath",
        format!(
            "Datapath: one TCP stream (iperf3), median of {rounds} x {}s, MTU 1500 (VXLAN 1450)",
            secs()
        ),
        &["path", "Gbit/s"],
    );
    for (what, x) in [
        ("flatnet container -> container across hosts", flatnet),
        ("host -> host", host),
        ("VXLAN host -> host", vxlan),
    ] {
        r.row(vec![what.into(), format!("{:.2}", g(x))]);
    }
    r.ratio(
        "flatnet / host-to-host",
        flatnet / host,
        Some((">= 0.95", flatnet / host >= 0.95)),
    );
    r.ratio(
        "flatnet / VXLAN",
        flatnet / vxlan,
        Some(("> 1", flatnet > vxlan)),
    );
    r.emit();
}
