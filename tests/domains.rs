//! End-to-end: failure domains. No two pieces of a stripe go to one operator's nodes or
//! one /24, so losing a whole operator or a whole subnet loses nothing.

mod common;

use std::collections::HashMap;

use common::{Net, assert_same, mixed_files, node_id, placement, placement_of, text, wait_for};
use storage_node::{NodeId, net::placement::spread};

/// The operator label each node of `net` declares, by node id.
fn operators(net: &Net) -> HashMap<NodeId, String> {
    net.nodes()
        .iter()
        .map(|n| {
            let i = n
                .args
                .iter()
                .position(|a| a == "--operator")
                .expect("an operator");
            (node_id(&n.peer), n.args[i + 1].clone())
        })
        .collect()
}

#[test]
fn two_operators_cannot_hold_a_stripe_of_six_and_six_can() {
    // Eight nodes, but only two operators: a 4+2 stripe cannot be spread.
    let net = Net::up_with(8, &["--operators", "2"]);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 41, 1 << 20);
    let o = net.push(&src, "lab/spread");
    let out = text(&o);
    assert!(!o.status.success(), "{out}");
    assert!(
        out.contains("6 nodes in distinct failure domains") && out.contains("span only 2"),
        "{out}"
    );
    // Nothing was published.
    let ls = net.cmd(&["dataset", "ls"]);
    assert!(!text(&ls).contains("lab/spread"), "{}", text(&ls));

    // Four newcomers, each an operator of its own: six operators in all.
    for _ in 0..4 {
        net.add();
    }
    let http = net.nodes()[0].http.clone();
    wait_for(
        30,
        || common::status(&http).is_some_and(|s| s.peers.len() >= 11),
        || format!("node 0 sees {:?}", common::status(&http).map(|s| s.peers)),
    );
    let o = net.push(&src, "lab/spread");
    assert!(o.status.success(), "{}", text(&o));
    let labels = operators(&net);
    let placed = placement(&net, "lab/spread");
    assert!(!placed.is_empty());
    for (pieces, holders) in &placed {
        // Pieces with the same bytes (a short stripe's padding) share holders: a matching
        // of pieces to distinct operators must still cover every piece.
        let by_label: Vec<Vec<&str>> = holders
            .iter()
            .map(|hs| hs.iter().map(|h| labels[h].as_str()).collect())
            .collect();
        assert_eq!(
            spread(&by_label),
            pieces.len(),
            "a stripe has two pieces under one operator: {by_label:?}"
        );
    }
    let dest = net.dir.path().join("out");
    let o = net.pull("lab/spread", &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);
}

#[test]
fn no_stripe_has_two_pieces_in_one_subnet_and_losing_one_loses_nothing() {
    // Six nodes, each a host of its own, in three /24s: 10.87.{0,1,2}.0/24.
    let Some(net) = common::netns::NetnsNet::up(6, 3) else {
        return;
    };
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 43, 1 << 20);
    let p0 = net.peer(0);
    let push = |k: &str, m: &str| {
        net.cairn(&[
            "dataset",
            "push",
            src.to_str().expect("utf-8"),
            "--name",
            "ns/subnets",
            "--k",
            k,
            "--m",
            m,
            "--block-size",
            "64KiB",
            "--peer",
            &p0,
        ])
    };
    // Six pieces a stripe cannot go into three subnets.
    let o = push("4", "2");
    assert!(
        !o.status.success() && text(&o).contains("span only 3"),
        "{}",
        text(&o)
    );
    let o = push("2", "1");
    assert!(o.status.success(), "push: {}", text(&o));

    // Each holder's /24, from the address network.json gives it.
    let subnet: HashMap<NodeId, String> = (0..6)
        .map(|i| {
            let p = net.peer(i);
            let ip = p.split('/').nth(2).expect("an /ip4/ address").to_string();
            let s = ip.rsplit_once('.').expect("dotted").0.to_string();
            (node_id(&p), s)
        })
        .collect();
    let placed =
        placement_of(&net.cairn(&["dataset", "info", "ns/subnets", "--json", "--peer", &p0]));
    assert!(!placed.is_empty());
    for (_, holders) in &placed {
        let by_subnet: Vec<Vec<&str>> = holders
            .iter()
            .map(|hs| hs.iter().map(|h| subnet[h].as_str()).collect())
            .collect();
        assert_eq!(
            spread(&by_subnet),
            3,
            "a stripe has two pieces in one /24: {by_subnet:?}"
        );
    }

    // Take 10.87.1.0/24 off the network: one piece of each stripe goes, and the data
    // is whole.
    let o = net.sh(&["cut", &net.net_dir(), "1"]);
    assert!(
        o.status.success() && text(&o).matches("cut ").count() == 2,
        "{}",
        text(&o)
    );
    let dest = net.dir.path().join("out");
    let o = net.cairn(&[
        "dataset",
        "pull",
        "ns/subnets",
        dest.to_str().expect("utf-8"),
        "--peer",
        &p0,
    ]);
    assert!(o.status.success(), "pull: {}", text(&o));
    assert_same(&dest, &files);
}
