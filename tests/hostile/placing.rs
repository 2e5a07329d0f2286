//! Where pushes put pieces: not on a node that only says it stores them, and not too
//! many of a stripe on identities nobody has seen prove anything.

use super::*;

#[test]
fn a_node_that_acknowledges_pieces_it_never_stored_gets_none() {
    let net = Net::up(6);
    let nodes = net.nodes();
    let fake = Adversary::fake_node();
    fake.join(std::slice::from_ref(&nodes[0].peer));
    let me = fake.peer_id().to_string();
    wait_for(
        30,
        || status(&nodes[0].http).is_some_and(|s| s.peers.iter().any(|p| p.ends_with(&me))),
        || "the fake node never became a peer of node 0".into(),
    );
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 25, 1 << 20);
    let o = net.push(&src, "eve/unstored");
    assert!(o.status.success(), "{}", text(&o));
    // It was offered pieces, acknowledged them without a transfer, was caught by the
    // first check, and its pieces went to real nodes.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&me) && err.contains("cannot prove"),
        "the liar was never asked or never caught: {err}"
    );
    let fake_id = fake.node_id();
    for (pieces, holders) in placement(&net, "eve/unstored") {
        assert_eq!(pieces.len(), 6);
        for hs in holders {
            assert!(!hs.is_empty(), "a piece has no holder");
            assert!(!hs.contains(&fake_id), "a piece was left with the liar");
        }
    }
    assert_reads_work(&net, "eve/unstored", &files, "after-liar");
}

/// How node `http` trusts each node it lists: peer id → `new`, `established`, `shunned`.
fn trust_seen_by(http: &str) -> Vec<(String, String)> {
    let v: serde_json::Value = ureq::get(&format!("{http}/v1/network"))
        .call()
        .ok()
        .and_then(|mut r| r.body_mut().read_json().ok())
        .unwrap_or_default();
    v["nodes"]
        .as_array()
        .map(|ns| {
            ns.iter()
                .map(|n| {
                    (
                        n["peer"].as_str().unwrap_or_default().to_string(),
                        n["trust"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn new_identities_hold_at_most_m_pieces_of_a_stripe() {
    let net = Net::up_with(6, FAST);
    let first = net.dir.path().join("first");
    mixed_files(&first, 26, 1 << 20);
    let o = net.push(&first, "eve/first");
    assert!(o.status.success(), "{}", text(&o));
    // Audits make the six established in node 0's eyes.
    let http = net.nodes()[0].http.clone();
    let established = |t: &[(String, String)]| t.iter().filter(|(_, t)| t == "established").count();
    wait_for(
        90,
        || established(&trust_seen_by(&http)) >= 5,
        || format!("node 0 trusts: {:?}", trust_seen_by(&http)),
    );
    // Four identities join: honest ones, but nobody has seen them prove anything yet.
    for _ in 0..4 {
        net.add();
    }
    let nodes = net.nodes();
    let new: Vec<NodeId> = nodes[6..].iter().map(|n| node_id(&n.peer)).collect();
    wait_for(
        30,
        || {
            trust_seen_by(&http)
                .iter()
                .filter(|(_, t)| t == "new")
                .count()
                >= 4
        },
        || format!("node 0 trusts: {:?}", trust_seen_by(&http)),
    );
    let src = net.dir.path().join("second");
    let files = mixed_files(&src, 27, 3 << 20);
    let o = net.push(&src, "eve/second");
    assert!(o.status.success(), "{}", text(&o));
    // Ten nodes, six pieces a stripe: a rotation that ignored standing would give four
    // new nodes three or four pieces of some stripe. Each stripe can lose two, so with
    // every new identity gone, each keeps four pieces on distinct established nodes.
    // (Pieces with the same bytes, the padding of short stripes, are held by many
    // nodes: `spread` counts them once.)
    let mut on_new = 0;
    let placed = placement(&net, "eve/second");
    assert!(placed.len() >= 10, "{} stripes", placed.len());
    for (pieces, holders) in &placed {
        let old: Vec<Vec<NodeId>> = holders
            .iter()
            .map(|hs| hs.iter().filter(|h| !new.contains(h)).copied().collect())
            .collect();
        let kept = storage_node::net::placement::spread(&old);
        assert!(
            kept >= pieces.len() - 2,
            "with the new identities gone a stripe keeps {kept} of {} pieces: {holders:?}",
            pieces.len()
        );
        on_new += holders
            .iter()
            .filter(|hs| hs.iter().any(|h| new.contains(h)))
            .count();
    }
    assert!(
        on_new > 0,
        "new nodes got no pieces, so they could never earn standing"
    );
    assert_reads_work(&net, "eve/second", &files, "after-newcomers");
}
