//! Versions and names from strangers: piece-less manifests and a second publisher of a
//! taken name.

use super::*;

/// Publishes, through `node`'s control protocol and from a fresh identity, a version of
/// `name` over the files under `src` signed by the key of `secret`, placing nothing
/// itself; with `named`, the table sent along names those nodes (in turn) as the
/// holders of its pieces. Returns the node's answer.
fn publish_signed_by(
    node: &common::NodeEntry,
    src: &std::path::Path,
    name: &str,
    secret: &[u8],
    named: &[&common::NodeEntry],
) -> Result<wire::Response, String> {
    let files = storage_node::engine::scan(src).expect("scan");
    let key = storage_node::PublisherKey::from_secret_bytes(blake3::hash(secret).as_bytes());
    let opts = storage_node::EncodeOptions {
        name: name.parse().expect("a name"),
        parent: None,
        license: "CC0-1.0".into(),
        params: storage_node::ErasureParams::new(4, 2, 64 << 10).expect("params"),
        created_unix: 1_900_000_000,
    };
    let m = storage_node::engine::encode_files(&files, &opts, &key, |_, _, _| Ok(()), |_| {})
        .expect("a manifest");
    let eve = Adversary::fresh();
    eve.join(std::slice::from_ref(&node.peer));
    let peer = node.peer.rsplit('/').next().expect("peer").to_string();
    let mut table = Vec::new();
    for n in named {
        let id = n.peer.rsplit('/').next().expect("peer").to_string();
        eve.join(std::slice::from_ref(&n.peer));
        match eve.request(&id, wire::Request::Info) {
            Ok(wire::Response::Info(i)) => table.push(i.data),
            other => panic!("Info from {id}: {other:?}"),
        }
    }
    let holders = (!table.is_empty()).then(|| {
        let n = table.len();
        let of_piece = (0..m.pieces().count()).map(move |i| Some((i % n) as u16));
        wire::PieceHolders::new(table, of_piece)
    });
    eve.request(
        &peer,
        wire::Request::Publish {
            manifest: m.as_bytes().to_vec(),
            holders,
        },
    )
}

#[test]
fn a_version_whose_pieces_nobody_holds_is_not_kept() {
    let net = Net::up(6);
    let nodes = net.nodes();
    // A signed manifest from a fresh publisher key for files whose pieces went nowhere.
    let src = net.dir.path().join("ghost");
    mixed_files(&src, 27, 1 << 20);
    // Alone, and naming honest nodes that hold none of its pieces as their holders.
    let others: Vec<&common::NodeEntry> = nodes[1..].iter().collect();
    for named in [&[][..], &others[..]] {
        let answer = publish_signed_by(&nodes[0], &src, "eve/ghost", b"ghost publisher", named);
        assert!(
            matches!(
                answer,
                Ok(wire::Response::Error {
                    code: wire::ErrorCode::NotPlaced,
                    ..
                })
            ),
            "{answer:?}"
        );
    }
    // Nowhere to be seen.
    for n in &nodes {
        let url = format!("{}/v1/datasets/eve/ghost", n.http);
        let code = match ureq::get(&url).call() {
            Ok(r) => r.status().as_u16(),
            Err(ureq::Error::StatusCode(c)) => c,
            Err(e) => panic!("GET {url}: {e}"),
        };
        assert_eq!(code, 404, "{url}");
    }
}

#[test]
fn a_second_publisher_of_a_name_is_refused_and_the_conflict_reported() {
    let net = Net::up(6);
    let nodes = net.nodes();
    let src = net.dir.path().join("src");
    mixed_files(&src, 28, 1 << 20);
    let o = net.push(&src, "alice/data");
    assert!(o.status.success(), "{}", text(&o));
    // Another key signs a version of the same name over the same files: its pieces are
    // the ones just placed, so only the name is in dispute.
    let answer = publish_signed_by(&nodes[0], &src, "alice/data", b"mallory", &[]);
    assert!(
        matches!(
            answer,
            Ok(wire::Response::Error {
                code: wire::ErrorCode::NotOwner,
                ..
            })
        ),
        "{answer:?}"
    );
    // The first publisher's version is still the one served, and the split is not
    // silent: the node counts it, in its network view and its metrics.
    let view: serde_json::Value = ureq::get(format!("{}/v1/network", nodes[0].http))
        .call()
        .expect("network view")
        .body_mut()
        .read_json()
        .expect("json");
    assert_eq!(view["name_conflicts"], 1, "{view}");
    let metrics = ureq::get(format!("{}/metrics", nodes[0].http))
        .call()
        .expect("metrics")
        .body_mut()
        .read_to_string()
        .expect("text");
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("cairn_name_conflicts_total "))
        .and_then(|v| v.trim().parse::<f64>().ok());
    assert_eq!(counted, Some(1.0), "{metrics}");
    let o = net.cmd(&["dataset", "info", "alice/data", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let dest = net.dir.path().join("out");
    let o = net.pull("alice/data", &dest);
    assert!(o.status.success(), "{}", text(&o));
}
