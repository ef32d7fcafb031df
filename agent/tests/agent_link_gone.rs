//! The link monitor a DEL answers by: the kernel's RTM_DELLINK for a
//! deleted veth reaches its waiter (by ifindex), while a waiter for a link
//! that stays is not woken. In a namespace of the test's own.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use flatnet_agent::kernel::gone::LinkGone;
use flatnet_lab::Netns;

fn index(ns: &Netns, ifname: &str) -> u32 {
    let out = ns
        .exec_stdout("cat", &[&format!("/sys/class/net/{ifname}/ifindex")])
        .unwrap();
    out.trim().parse().unwrap()
}

#[test]
fn a_deleted_veth_is_announced_to_its_waiter_only() {
    flatnet_lab::require_root().unwrap();
    let ns = Netns::new("lgone").unwrap();
    ns.exec(
        "ip",
        &["link", "add", "lg0", "type", "veth", "peer", "name", "lg1"],
    )
    .unwrap();
    ns.exec(
        "ip",
        &["link", "add", "lk0", "type", "veth", "peer", "name", "lk1"],
    )
    .unwrap();
    let (gone_if, kept_if) = (index(&ns, "lg0"), index(&ns, "lk0"));
    let path = ns.path();
    // The monitor is opened in the namespace: on a thread that enters it.
    let (gone, kept) = std::thread::spawn(move || {
        let f = std::fs::File::open(path).unwrap();
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let m = LinkGone::start();
            let gone = m.watch(gone_if).expect("the monitor runs");
            let kept = m.watch(kept_if).expect("the monitor runs");
            let st = std::process::Command::new("ip")
                .args(["link", "del", "lg0"])
                .status()
                .unwrap();
            assert!(st.success());
            let gone = tokio::time::timeout(Duration::from_secs(10), gone).await;
            // The other link stays: its waiter is still pending afterwards.
            let kept = tokio::time::timeout(Duration::from_millis(200), kept).await;
            (gone.map(|r| r.is_ok()), kept.is_err())
        })
    })
    .join()
    .unwrap();
    assert_eq!(gone, Ok(true), "RTM_DELLINK for lg0 reached its waiter");
    assert!(kept, "no announcement for a link that was not deleted");
}
