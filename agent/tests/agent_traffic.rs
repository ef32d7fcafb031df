//! Two containers on one host reach each other over their /32 (/128) routes,
//! and a container cannot send with a source address that is not its own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use flatnet_lab::Netns;

fn ping(from: &Netns, args: &[&str]) -> bool {
    let mut a = vec!["-c", "1", "-W", "2"];
    a.extend_from_slice(args);
    from.exec("ping", &a).is_ok()
}

/// Packets counted by the anti-spoofing DROP rule.
fn drop_count(host: &Host, bin: &str, _host_if: &str) -> u64 {
    let out = host
        .ns
        .exec_stdout(
            bin,
            &[
                "-w",
                "-t",
                "raw",
                "-L",
                "FLATNET-ANTISPOOF",
                "-v",
                "-n",
                "-x",
            ],
        )
        .unwrap();
    out.lines()
        .filter(|l| l.contains("DROP"))
        .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn two_containers_ping_each_other_and_forged_sources_are_dropped() {
    let host = Host::start("h", POOLS_DUAL);
    let c1 = Netns::new("c1").unwrap();
    let c2 = Netns::new("c2").unwrap();
    let r1 = host.add("one", &c1);
    let r2 = host.add("two", &c2);
    let (a1, a2) = (result_v4(&r1), result_v4(&r2));
    let (b1, b2) = (result_v6(&r1).unwrap(), result_v6(&r2).unwrap());
    assert_ne!(a1, a2);

    assert!(ping(&c1, &[&a2]), "c1 -> c2 over IPv4\n{}", host.log());
    assert!(ping(&c2, &[&a1]), "c2 -> c1 over IPv4");
    assert!(ping(&c1, &["-6", &b2]), "c1 -> c2 over IPv6");
    assert!(ping(&c2, &["-6", &b1]), "c2 -> c1 over IPv6");

    // Forge a source: give c1 an extra address nobody allocated to it.
    let hif1 = r1["interfaces"][0]["name"].as_str().unwrap().to_string();
    let before = drop_count(&host, "iptables", &hif1);
    c1.addr_add("eth0", "10.244.0.60/32").unwrap();
    assert!(
        !ping(&c1, &["-I", "10.244.0.60", &a2]),
        "forged IPv4 source got through"
    );
    assert!(
        drop_count(&host, "iptables", &hif1) > before,
        "the anti-spoofing rule did not drop it"
    );
    // Forging another container's own address is dropped too.
    c1.addr_add("eth0", &format!("{a2}/32")).unwrap_or(());
    let before = drop_count(&host, "iptables", &hif1);
    let _ = ping(&c1, &["-I", &a2, "169.254.1.1"]);
    assert!(drop_count(&host, "iptables", &hif1) > before);

    let before6 = drop_count(&host, "ip6tables", &hif1);
    c1.addr_add("eth0", "fd00:244::ff/128").unwrap();
    assert!(
        !ping(&c1, &["-6", "-I", "fd00:244::ff", &b2]),
        "forged IPv6 source got through"
    );
    assert!(drop_count(&host, "ip6tables", &hif1) > before6);

    // The real sources still work.
    assert!(ping(&c2, &["-6", &b1]));

    host.del("one", &c1.path());
    host.del("two", &c2.path());
    host.assert_clean();
}
