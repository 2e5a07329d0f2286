//! Every attack at once, for minutes, while a client pulls, reads and trains.

use super::floods::connect_many;
use super::*;

/// Every attack at once, for `CAIRN_SOAK_SECS` (300 by default) against 8 nodes, while a
/// client pulls, reads over HTTP and trains: the bytes stay identical, no honest node is
/// flagged or failing, and the nodes' memory and metadata stay within bounds.
#[test]
fn soak_every_attack_at_once_while_a_client_pulls_and_trains() {
    let secs: u64 = std::env::var("CAIRN_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let net = Net::up_with(8, &["--audit-secs", "3", "--repair-threshold", "6"]);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 26, 1 << 20);
    let o = net.push(&src, "soak/data");
    assert!(o.status.success(), "{}", text(&o));
    net.push_iris();
    let nodes = net.nodes();
    let addrs: Vec<String> = nodes.iter().map(|n| n.peer.clone()).collect();
    let stripes = placement(&net, "soak/data");
    let about: Vec<(NodeId, PieceId)> = stripes
        .iter()
        .flat_map(|(pieces, holders)| {
            pieces
                .iter()
                .zip(holders)
                .flat_map(|(p, hs)| hs.iter().map(move |h| (*h, *p)))
        })
        .collect();
    let stripe_ids: Vec<storage_node::StripeId> = stripes
        .iter()
        .map(|(pieces, _)| {
            repair::stripe_id(&Stripe {
                data_len: 0,
                block_len: 0,
                pieces: pieces
                    .iter()
                    .map(|id| PieceRef { id: *id, len: 0 })
                    .collect(),
            })
        })
        .collect();
    let (smear1, smear2, squat, flood) = (
        Adversary::fresh(),
        Adversary::fresh(),
        Adversary::fresh(),
        Adversary::fresh(),
    );
    for a in [&smear1, &smear2, &squat, &flood] {
        a.join(&addrs);
    }
    let http: std::net::SocketAddr = nodes[1]
        .http
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let challenge_peer = nodes[1].peer.rsplit('/').next().expect("peer").to_string();
    let (challenged, len) = {
        let id = node_id(&nodes[1].peer);
        let p = stripes
            .iter()
            .find_map(|(pieces, holders)| {
                pieces
                    .iter()
                    .zip(holders)
                    .find(|(_, hs)| hs.contains(&id))
                    .map(|(p, _)| *p)
            })
            .expect("node 1 holds a piece");
        let f = piece_files(&nodes[1].data_dir)
            .into_iter()
            .find(|(i, _)| *i == p.to_string())
            .expect("its file");
        (p, std::fs::metadata(f.1).expect("size").len())
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stalled_get =
        "GET /v1/datasets/soak/data/resolve/latest/shards/000.bin HTTP/1.1\r\nHost: x\r\n\r\n";
    let t0 = std::time::Instant::now();
    let (mut rounds, mut trained) = (0u64, 0u64);
    let mut last_train: Option<std::time::Instant> = None;
    while t0.elapsed() < Duration::from_secs(secs) {
        rounds += 1;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Forged records, claims, challenges, silent and stalled connections.
        smear1.send_records(&addrs, &smear1.records(&about, Outcome::BadProof, 1));
        smear2.send_records(&addrs, &smear2.records(&about, Outcome::Timeout, 2));
        for s in &stripe_ids {
            let c = Claim {
                stripe: *s,
                claimer: squat.node_id(),
                expires_unix: now + 3600,
                done: false,
            };
            squat.publish(wire::REPAIRS_TOPIC, c.encode());
        }
        for i in 0..200u64 {
            let mut nonce = [0u8; 32];
            nonce[..8].copy_from_slice(&(rounds * 1000 + i).to_le_bytes());
            let c = proofs::Challenge::new(challenged.to_proofs_hash(), len, proofs::Nonce(nonce));
            flood
                .request(
                    &challenge_peer,
                    wire::Request::Challenge {
                        challenge: c.encode(),
                    },
                )
                .ok();
        }
        let _held = rt.block_on(async {
            (
                connect_many([127, 0, 0, 2].into(), http, 50, b"").await,
                connect_many([127, 0, 0, 3].into(), http, 20, stalled_get.as_bytes()).await,
            )
        });
        // The client: a pull and a read, identical every time; training now and then.
        assert_reads_work(&net, "soak/data", &files, &format!("soak-{rounds}"));
        std::fs::remove_dir_all(net.dir.path().join(format!("pulled-soak-{rounds}"))).ok();
        if last_train.is_none_or(|t| t.elapsed() > Duration::from_secs(60)) {
            let mut args = vec![
                "train",
                "--dataset",
                "uci/iris",
                "--epochs",
                "2",
                "--seed",
                "3",
            ];
            args.extend_from_slice(common::IRIS_COLUMNS);
            let o = net.cmd(&args);
            assert!(o.status.success(), "training under attack: {}", text(&o));
            trained += 1;
            last_train = Some(std::time::Instant::now());
        }
    }
    assert!(
        rounds >= 2 && trained >= 1,
        "{rounds} rounds, {trained} trainings"
    );
    assert_no_honest_node_harmed(&net, &[]);
    for n in &nodes {
        let (mem, db) = (common::rss(n.pid), common::du(&n.data_dir.join("db")));
        assert!(mem < 512 << 20, "node {} uses {} MiB", n.peer, mem >> 20);
        assert!(
            db < 256 << 20,
            "node {}'s rocksdb is {} MiB",
            n.peer,
            db >> 20
        );
    }
}
