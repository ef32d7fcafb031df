//! `flatnet-lab` without a subcommand: the fixed run. Builds a small leaf of the fabric in network
//! namespaces on this machine — two FRR ToRs, two hosts running `flatnetd`
//! (containers attached through the real `flatnet-cni` plugin) whose embedded
//! BGP speaker advertises each host's blocks to both ToRs — then shows the
//! sessions, the ToRs' routes and a reachability matrix between containers,
//! and removes everything.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use flatnet_lab::deploy::cni;
use flatnet_lab::frr::Frr;
use flatnet_lab::router::WorkDir;
use flatnet_lab::{
    Daemon, Family, LabError, NeighborConfig, Netns, Router, RouterConfig, veth, wait_for,
};

/// Options of the fixed run.
#[derive(clap::Args)]
pub struct Args {
    /// Directory holding flatnetd, flatnet and flatnet-cni
    /// (default: the directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// Containers per host.
    #[arg(long, default_value_t = 2)]
    pub containers: usize,
    /// Keep the lab up until Enter is pressed (inspect with `ip netns`).
    #[arg(long)]
    pub hold: bool,
}

const TOR_AS: [u32; 2] = [65001, 65002];
const HOST_AS_BASE: u32 = 64601;

struct Host<'a> {
    name: String,
    ns: &'a Netns,
    uplinks: [(String, String); 2], // (host addr, tor addr) per ToR
    socket: PathBuf,
    _flatnetd: Daemon,
}

struct Container {
    host: usize,
    name: String,
    ns: Netns,
    addrs: Vec<IpAddr>,
}

pub fn main(args: &Args) -> ExitCode {
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!(
                "flatnet-lab: some containers could not reach each other (see the matrix above)"
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("flatnet-lab: {e}");
            ExitCode::FAILURE
        }
    }
}

fn bin_dir(args: &Args) -> Result<PathBuf, LabError> {
    if let Some(d) = &args.bin_dir {
        return Ok(d.clone());
    }
    let exe = std::env::current_exe()?;
    exe.parent()
        .map(Path::to_path_buf)
        .ok_or_else(|| LabError::Other("cannot find the directory of flatnet-lab".into()))
}

fn need(bin: &Path, name: &str) -> Result<PathBuf, LabError> {
    let p = bin.join(name);
    if !p.exists() {
        return Err(LabError::Other(format!(
            "{} not found; build it first: cargo build -p flatnet-agent -p flatnet-lab --bins",
            p.display()
        )));
    }
    Ok(p)
}

fn step(msg: &str) {
    println!("==> {msg}");
    let _ = std::io::stdout().flush();
}

fn run(args: &Args) -> Result<bool, LabError> {
    flatnet_lab::require_root()?;
    let bin = bin_dir(args)?;
    let flatnetd = need(&bin, "flatnetd")?;
    let flatnet = need(&bin, "flatnet")?;
    let cni = need(&bin, "flatnet-cni")?;
    let work = WorkDir::new("lab")?;
    let t0 = Instant::now();

    step("creating namespaces and links (2 ToRs, 2 hosts)");
    let tors = [Netns::new("tor1")?, Netns::new("tor2")?];
    let host_ns = [Netns::new("host1")?, Netns::new("host2")?];
    for t in &tors {
        t.sysctl("net.ipv4.ip_forward", "1")?;
        t.sysctl("net.ipv6.conf.all.forwarding", "1")?;
    }
    // Link h<i> eth<t> <-> tor<t> eth<i+1>, 10.255.<t+1>.<2i>/31 on the ToR side.
    let mut uplinks: Vec<[(String, String); 2]> = Vec::new();
    for (i, h) in host_ns.iter().enumerate() {
        let mut ul: [(String, String); 2] = Default::default();
        for (t, tor) in tors.iter().enumerate() {
            let tor_if = format!("eth{}", i + 1);
            let host_if = format!("eth{t}");
            veth(tor, &tor_if, h, &host_if)?;
            let tor_ip = format!("10.255.{}.{}", t + 1, 2 * i);
            let host_ip = format!("10.255.{}.{}", t + 1, 2 * i + 1);
            tor.addr_add(&tor_if, &format!("{tor_ip}/31"))?;
            h.addr_add(&host_if, &format!("{host_ip}/31"))?;
            let tor6 = format!("fd00:255:{}:{}::1", t + 1, i);
            let host6 = format!("fd00:255:{}:{}::2", t + 1, i);
            tor.addr_add(&tor_if, &format!("{tor6}/64"))?;
            h.addr_add(&host_if, &format!("{host6}/64"))?;
            ul[t] = (host_ip, tor_ip);
        }
        // Until flatnetd programs the routes it learns (the routing issue),
        // hosts reach the fabric through a static ECMP default over both ToRs.
        h.ip(&[
            "route", "add", "default", "nexthop", "via", &ul[0].1, "nexthop", "via", &ul[1].1,
        ])?;
        h.ip(&[
            "-6",
            "route",
            "add",
            "default",
            "nexthop",
            "via",
            &format!("fd00:255:1:{i}::1"),
            "nexthop",
            "via",
            &format!("fd00:255:2:{i}::1"),
        ])?;
        uplinks.push(ul);
    }

    step("starting FRR on both ToRs");
    let mut frrs = Vec::new();
    for (t, tor) in tors.iter().enumerate() {
        let mut cfg = RouterConfig::new(
            format!("10.255.0.{}", t + 1).parse().map_err(bad)?,
            TOR_AS[t],
        );
        for (i, ul) in uplinks.iter().enumerate() {
            let mut n = NeighborConfig::new(ul[t].0.parse().map_err(bad)?, HOST_AS_BASE + i as u32);
            n.ipv6_unicast = true;
            cfg = cfg.neighbor(n);
        }
        frrs.push(Frr::start(tor, cfg)?);
    }

    step("starting flatnetd on both hosts (one shared file datastore, BGP to both ToRs)");
    let store = work.join("datastore");
    std::fs::create_dir_all(&store)?;
    let mut hosts: Vec<Host> = Vec::new();
    for (i, h) in host_ns.iter().enumerate() {
        let name = format!("host{}", i + 1);
        let socket = work.join(&format!("{name}.sock"));
        let state = work.join(&format!("{name}-state"));
        let conf_path = work.join(&format!("{name}-flatnetd.toml"));
        let router_id = format!("10.255.0.{}", 11 + i);
        let conf = format!(
            r#"[node]
name = "{name}"
router_id = "{router_id}"
asn = {asn}

[api]
socket = "{socket}"

[metrics]
listen = "127.0.0.1:9469"

[dataplane]
mtu = 1500
state_dir = "{state}"

[datastore]
url = "file:{store}"

[[pool]]
cidr = "10.244.0.0/16"
block_size = 26

[[pool]]
cidr = "fd00:244::/56"
block_size = 122

[[bgp.peer]]
address = "{tor1}"
asn = {tor1_as}
next_hop_ipv6 = "fd00:255:1:{i}::2"

[[bgp.peer]]
address = "{tor2}"
asn = {tor2_as}
next_hop_ipv6 = "fd00:255:2:{i}::2"
"#,
            tor1 = uplinks[i][0].1,
            tor2 = uplinks[i][1].1,
            tor1_as = TOR_AS[0],
            tor2_as = TOR_AS[1],
            asn = HOST_AS_BASE + i as u32,
            socket = socket.display(),
            state = state.display(),
            store = store.display(),
        );
        std::fs::write(&conf_path, conf)?;
        let log = std::fs::File::create(work.join(&format!("{name}-flatnetd.log")))?;
        let d = h.spawn(
            h.command(&flatnetd)
                .arg("--config")
                .arg(&conf_path)
                .stdout(log.try_clone()?)
                .stderr(log),
        )?;
        let sock = socket.clone();
        wait_for(
            &format!("flatnetd on {name}"),
            Duration::from_secs(20),
            || Ok(sock.exists().then_some(())),
        )?;
        hosts.push(Host {
            name,
            ns: h,
            uplinks: uplinks[i].clone(),
            socket,
            _flatnetd: d,
        });
    }

    step(&format!(
        "adding {} containers per host through flatnet-cni",
        args.containers
    ));
    let mut containers = Vec::new();
    for (hi, host) in hosts.iter().enumerate() {
        for c in 0..args.containers {
            let name = format!("c{}{}", hi + 1, c + 1);
            let ns = Netns::new(&name)?;
            let addrs = cni_add(&cni, host, &name, &ns)?;
            containers.push(Container {
                host: hi,
                name,
                ns,
                addrs,
            });
        }
    }

    step("waiting for BGP sessions and routes on the ToRs");
    for (t, frr) in frrs.iter().enumerate() {
        for host in &hosts {
            frr.wait_established(&host.uplinks[t].0, Duration::from_secs(30))?;
        }
    }
    let mut all_blocks = BTreeSet::new();
    for host in &hosts {
        for b in host_blocks(&flatnet, host)? {
            all_blocks.insert(b);
        }
    }
    for frr in &frrs {
        for b in &all_blocks {
            frr.wait_route(b, Duration::from_secs(30))?;
        }
    }

    println!();
    println!("BGP sessions (as the ToRs see them)");
    println!(
        "{:<6} {:<16} {:<8} {:<12}",
        "ToR", "Neighbor", "AS", "State"
    );
    for (t, frr) in frrs.iter().enumerate() {
        for n in frr.neighbors()? {
            println!(
                "{:<6} {:<16} {:<8} {:<12}",
                format!("tor{}", t + 1),
                n.address.to_string(),
                n.remote_as.map(|a| a.to_string()).unwrap_or_default(),
                format!("{:?}", n.state)
            );
        }
    }
    println!();
    println!("Routes learned by the ToRs");
    println!(
        "{:<6} {:<24} {:<30} {:<12}",
        "ToR", "Prefix", "Next hops", "AS path"
    );
    for (t, frr) in frrs.iter().enumerate() {
        for fam in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
            for r in frr.rib(fam)?.into_iter().filter(|r| r.learned && r.best) {
                let nh: Vec<String> = r.next_hops.iter().map(|n| n.to_string()).collect();
                let ap: Vec<String> = r.as_path.iter().map(|a| a.to_string()).collect();
                println!(
                    "{:<6} {:<24} {:<30} {:<12}",
                    format!("tor{}", t + 1),
                    r.prefix,
                    nh.join(","),
                    ap.join(" ")
                );
            }
        }
    }

    println!();
    println!("Containers");
    println!("Name   Host   Addresses");
    for c in &containers {
        let a: Vec<String> = c.addrs.iter().map(|a| a.to_string()).collect();
        println!("{:<6} {:<6} {}", c.name, hosts[c.host].name, a.join(" "));
    }

    println!();
    println!("Reachability (ping from row to column; v4/v6)");
    print!("{}", " ".repeat(6));
    for c in &containers {
        print!(" {:<7}", c.name);
    }
    println!();
    let mut ok_all = true;
    for a in &containers {
        print!("{:<6}", a.name);
        for b in &containers {
            if a.name == b.name {
                print!(" {:<7}", "-");
                continue;
            }
            let mut cell = String::new();
            for dst in &b.addrs {
                let reached = ping(&a.ns, *dst);
                ok_all &= reached;
                cell.push_str(if reached { "ok" } else { "FAIL" });
                cell.push('/');
            }
            cell.pop();
            print!(" {cell:<7}");
        }
        println!();
    }
    println!();
    println!("lab up in {:.1} s", t0.elapsed().as_secs_f64());

    if args.hold {
        println!("holding the lab; namespaces: `ip netns | grep fl-`. Press Enter to tear down.");
        let mut s = String::new();
        let _ = std::io::stdin().read_line(&mut s);
    }

    step("tearing down (CNI DEL for every container, then daemons and namespaces)");
    for c in &containers {
        cni_del(&cni, &hosts[c.host], &c.name, &c.ns)?;
    }
    Ok(ok_all)
}

fn bad<E: std::fmt::Display>(e: E) -> LabError {
    LabError::Other(e.to_string())
}

fn cni_add(cni: &Path, host: &Host, id: &str, ns: &Netns) -> Result<Vec<IpAddr>, LabError> {
    cni::add(cni, host.ns, &host.socket, id, ns, None)
}

fn cni_del(cni: &Path, host: &Host, id: &str, ns: &Netns) -> Result<(), LabError> {
    cni::del(cni, host.ns, &host.socket, id, ns)
}

/// The blocks flatnetd claimed for this host, from `flatnet ipam show --json`.
fn host_blocks(flatnet: &Path, host: &Host) -> Result<Vec<String>, LabError> {
    cni::host_blocks(flatnet, &host.socket)
}

fn ping(from: &Netns, dst: IpAddr) -> bool {
    flatnet_lab::deploy::summary::ping(from, dst, Duration::from_secs(10))
}
