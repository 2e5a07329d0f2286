//! End-to-end: attacks from throwaway keys against real `cairn node` processes. Each
//! test drives the [`adversary`] (fresh keys, the project's own libp2p stack and wire
//! formats, nothing stored) and ends with honest reads and pulls succeeding and no honest
//! node flagged.

mod adversary;
mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use adversary::Adversary;
use common::{Net, assert_same, mixed_files, piece_files, status, text, wait_for};
use storage_node::{
    NodeId, PieceId,
    audit::Outcome,
    manifest::{PieceRef, Stripe},
    net::{
        node::data_id_of,
        wire::{self, Request, Response},
    },
    repair::{self, Claim},
};

/// An audit round every second or so; repair of any loss.
const FAST: &[&str] = &["--audit-secs", "1", "--repair-threshold", "6"];

/// Every stripe of `name` as the network places it: piece ids and, per piece, holders.
fn placement(net: &Net, name: &str) -> Vec<(Vec<PieceId>, Vec<Vec<NodeId>>)> {
    let o = net.cmd(&["dataset", "info", name, "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    v["placement"]
        .as_array()
        .expect("placement")
        .iter()
        .map(|s| {
            let pieces = s["pieces"]
                .as_array()
                .expect("pieces")
                .iter()
                .map(|p| p.as_str().expect("hex").parse().expect("a piece id"))
                .collect();
            let holders = s["holders"]
                .as_array()
                .expect("holders")
                .iter()
                .map(|hs| {
                    hs.as_array()
                        .expect("holders of a piece")
                        .iter()
                        .map(|h| node_id(h.as_str().expect("peer id")))
                        .collect()
                })
                .collect();
            (pieces, holders)
        })
        .collect()
}

fn node_id(peer: &str) -> NodeId {
    let p: libp2p::PeerId = peer
        .rsplit('/')
        .next()
        .unwrap_or(peer)
        .parse()
        .expect("a peer id");
    NodeId(data_id_of(&p).expect("an ed25519 peer"))
}

/// Waits until every node has run `more` audit rounds beyond what it had run now, so
/// whatever was sent before has been taken in or refused.
fn wait_rounds(net: &Net, more: u64) {
    let nodes = net.nodes();
    let rounds = || -> Vec<u64> {
        nodes
            .iter()
            .map(|n| status(&n.http).map_or(0, |s| s.upkeep.audit_rounds))
            .collect()
    };
    let start = rounds();
    wait_for(
        60,
        || {
            rounds()
                .iter()
                .zip(&start)
                .all(|(now, then)| *now >= then + more)
        },
        || format!("audit rounds: {:?} from {start:?}", rounds()),
    );
}

/// Asserts that no live node's ledger has a live node flagged or failing, and that no
/// node is counted as audited by more auditors than there are honest nodes besides it.
/// `dead`: nodes killed by the test (rightly failing).
fn assert_no_honest_node_harmed(net: &Net, dead: &[usize]) {
    let nodes = net.nodes();
    let dead: Vec<&str> = dead.iter().map(|&i| nodes[i].peer.as_str()).collect();
    for n in nodes.iter().filter(|n| !dead.contains(&n.peer.as_str())) {
        let s = status(&n.http).expect("a node status");
        for e in &s.ledger {
            if dead.iter().any(|d| d.ends_with(&e.peer)) {
                continue;
            }
            let r = e.reputation;
            assert!(
                !r.flagged && !r.failing,
                "node {} sees {} as flagged or failing: {r:?}",
                n.peer,
                e.peer
            );
            assert!(
                (r.auditors as usize) < nodes.len(),
                "node {} counts {} auditors of {}: strangers were heard",
                n.peer,
                r.auditors,
                e.peer
            );
        }
    }
}

/// Reads and pulls work: a pull is identical and an HTTP read of a file answers 200.
fn assert_reads_work(net: &Net, name: &str, files: &[(String, blake3::Hash)], tag: &str) {
    let dest = net.dir.path().join(format!("pulled-{tag}"));
    let o = net.pull(name, &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, files);
    let http = &net.nodes()[1].http;
    let url = format!("{http}/v1/datasets/{name}/resolve/latest/shards/000.bin");
    let body = ureq::get(&url)
        .call()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_vec()
        .expect("body");
    let want = files
        .iter()
        .find(|f| f.0 == "shards/000.bin")
        .expect("file");
    assert_eq!(blake3::hash(&body), want.1);
}

#[test]
fn forged_records_from_fresh_keys_move_no_standing() {
    let net = Net::up_with(6, FAST);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 21, 1 << 20);
    let o = net.push(&src, "eve/target");
    assert!(o.status.success(), "{}", text(&o));
    let about: Vec<(NodeId, PieceId)> = placement(&net, "eve/target")
        .into_iter()
        .flat_map(|(pieces, holders)| {
            pieces
                .into_iter()
                .zip(holders)
                .flat_map(|(p, hs)| hs.into_iter().map(move |h| (h, p)))
        })
        .collect();
    assert!(!about.is_empty());
    let addrs: Vec<String> = net.nodes().iter().map(|n| n.peer.clone()).collect();
    // Two keys swear every node forged a proof of every piece it holds (two witnesses
    // is what flagging takes), a third that every node timed out again and again.
    let (smear1, smear2, stall) = (Adversary::fresh(), Adversary::fresh(), Adversary::fresh());
    for a in [&smear1, &smear2, &stall] {
        a.join(&addrs);
    }
    smear1.send_records(&smear1.records(&about, Outcome::BadProof, 1));
    smear2.send_records(&smear2.records(&about, Outcome::WrongBytes, 1));
    stall.send_records(&stall.records(&about, Outcome::Timeout, 8));
    // And records whose signatures do not verify, in their own names.
    let mut broken = smear1.records(&about, Outcome::BadProof, 2);
    for r in &mut broken {
        r.sig[0] ^= 1;
    }
    smear1.send_records(&broken);
    wait_rounds(&net, 3);
    assert_no_honest_node_harmed(&net, &[]);
    assert_reads_work(&net, "eve/target", &files, "after-records");
}

#[test]
fn repair_claims_from_non_holders_hold_nothing_back() {
    let net = Net::up_with(7, FAST);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 22, 1 << 20);
    let o = net.push(&src, "eve/squatted");
    assert!(o.status.success(), "{}", text(&o));
    let nodes = net.nodes();
    let honest: Vec<NodeId> = nodes.iter().map(|n| node_id(&n.peer)).collect();
    let stripes: Vec<storage_node::StripeId> = placement(&net, "eve/squatted")
        .into_iter()
        .map(|(pieces, _)| {
            repair::stripe_id(&Stripe {
                data_len: 0,
                block_len: 0,
                pieces: pieces
                    .into_iter()
                    .map(|id| PieceRef { id, len: 0 })
                    .collect(),
            })
        })
        .collect();
    // For each stripe, a throwaway key whose claim outranks every honest node's.
    let candidates: Vec<[u8; 32]> = (0..256u32)
        .map(|i| {
            *blake3::hash(format!("squatter {i} {}", std::process::id()).as_bytes()).as_bytes()
        })
        .collect();
    let id_of = |secret: &[u8; 32]| {
        NodeId(
            ed25519_dalek::SigningKey::from_bytes(secret)
                .verifying_key()
                .to_bytes(),
        )
    };
    let mut squatters: Vec<([u8; 32], Vec<storage_node::StripeId>)> = Vec::new();
    for s in &stripes {
        let best_honest = honest.iter().map(|h| repair::claim_rank(s, h)).min();
        let best = candidates
            .iter()
            .min_by_key(|c| repair::claim_rank(s, &id_of(c)))
            .expect("candidates");
        if Some(repair::claim_rank(s, &id_of(best))) < best_honest {
            match squatters.iter_mut().find(|(c, _)| c == best) {
                Some((_, ss)) => ss.push(*s),
                None => squatters.push((*best, vec![*s])),
            }
        }
    }
    assert!(
        squatters.iter().map(|(_, s)| s.len()).sum::<usize>() * 4 >= stripes.len() * 3,
        "too few stripes outranked to make this an attack"
    );
    let addrs: Vec<String> = nodes.iter().map(|n| n.peer.clone()).collect();
    let squatters: Vec<(Adversary, Vec<storage_node::StripeId>)> = squatters
        .into_iter()
        .map(|(secret, ss)| {
            let a = Adversary::from_secret(secret);
            a.join(&addrs);
            (a, ss)
        })
        .collect();
    // They claim their stripes and keep renewing, as long as the test runs.
    let stop = Arc::new(AtomicBool::new(false));
    let claimer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                for (a, ss) in &squatters {
                    for s in ss {
                        let c = Claim {
                            stripe: *s,
                            claimer: a.node_id(),
                            expires_unix: now + 3600,
                            done: false,
                        };
                        a.publish(wire::REPAIRS_TOPIC, c.encode());
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };
    // A holder dies; every piece it held is rebuilt elsewhere all the same.
    let victim = 3;
    let lost: Vec<String> = piece_files(&nodes[victim].data_dir)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert!(!lost.is_empty(), "the victim held nothing");
    net.kill(victim);
    let live: Vec<&std::path::Path> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .map(|(_, n)| n.data_dir.as_path())
        .collect();
    wait_for(
        90,
        || {
            lost.iter()
                .all(|id| live.iter().any(|d| common::holds_intact(d, id)))
        },
        || {
            let left = lost
                .iter()
                .filter(|id| !live.iter().any(|d| common::holds_intact(d, id)))
                .count();
            format!("{left} of {} pieces not rebuilt", lost.len())
        },
    );
    stop.store(true, Ordering::Relaxed);
    claimer.join().expect("claimer thread");
    assert_no_honest_node_harmed(&net, &[victim]);
    assert_reads_work(&net, "eve/squatted", &files, "after-claims");
}

/// Opens `n` connections to `to` from the loopback address `from`, each sending `send`
/// (nothing, or a request it will never read the answer of), with a small receive buffer.
async fn connect_many(
    from: std::net::Ipv4Addr,
    to: std::net::SocketAddr,
    n: usize,
    send: &[u8],
) -> Vec<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = tokio::net::TcpSocket::new_v4().expect("socket");
        s.set_recv_buffer_size(4096).ok();
        s.bind((from, 0).into()).expect("bind a loopback address");
        let Ok(mut c) = s.connect(to).await else {
            continue;
        };
        if !send.is_empty() {
            c.write_all(send).await.ok();
        }
        out.push(c);
    }
    out
}

/// How many of `conns` the server has closed (a read sees the end, or an error).
async fn closed(conns: &mut [tokio::net::TcpStream], wait: Duration) -> usize {
    use tokio::io::AsyncReadExt;
    tokio::time::sleep(wait).await;
    let mut n = 0;
    let mut buf = vec![0u8; 1 << 16];
    for c in conns.iter_mut() {
        // Drain what is there without waiting; the end of the stream means closed.
        loop {
            match tokio::time::timeout(Duration::from_millis(1), c.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => {
                    n += 1;
                    break;
                }
                Ok(Ok(_)) => continue,
                Err(_) => break,
            }
        }
    }
    n
}

#[test]
fn silent_and_stalled_http_clients_cannot_take_the_api_away() {
    let net = Net::up(6);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 23, 16 << 20);
    let o = net.push(&src, "eve/served");
    assert!(o.status.success(), "{}", text(&o));
    let http = net.nodes()[1].http.clone();
    let addr: std::net::SocketAddr = http
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let path = "/v1/datasets/eve/served/resolve/latest/shards/000.bin";
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stalled_get = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    let (silent_closed, stalled_closed, _held) = rt.block_on(async {
        // 600 connections that never send a byte, from one address...
        let mut silent = connect_many([127, 0, 0, 2].into(), addr, 600, b"").await;
        // ...and 600 downloads of a 16 MiB file that are never read, from another: more
        // than the node's 512 download slots.
        let mut stalled =
            connect_many([127, 0, 0, 3].into(), addr, 600, stalled_get.as_bytes()).await;
        let s = closed(&mut silent, Duration::from_secs(2)).await;
        let t = closed(&mut stalled, Duration::from_millis(10)).await;
        (s, t, (silent, stalled))
    });
    // Each address keeps its quota of connections; the rest were closed at once.
    let cap = dataset_api::server::MAX_PER_ADDRESS;
    assert!(silent_closed >= 600 - cap, "{silent_closed} silent closed");
    assert!(
        stalled_closed >= 600 - cap,
        "{stalled_closed} stalled closed"
    );
    // An honest reader is served all the while.
    for i in 0..10u64 {
        let from = i * 100_000;
        let r = ureq::get(format!("{http}{path}"))
            .header("Range", format!("bytes={from}-{}", from + 65_535))
            .call()
            .unwrap_or_else(|e| panic!("an honest range request failed under attack: {e}"));
        assert_eq!(r.status().as_u16(), 206);
    }
    assert_reads_work(&net, "eve/served", &files, "after-slow-clients");
}

#[test]
fn challenge_floods_are_cut_off_at_the_peers_allowance() {
    let net = Net::up_with(6, FAST);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 24, 1 << 20);
    let o = net.push(&src, "eve/challenged");
    assert!(o.status.success(), "{}", text(&o));
    let nodes = net.nodes();
    let target = &nodes[1];
    let target_id = node_id(&target.peer);
    // A piece the target holds, and its length (the stripe's block length).
    let (piece, len) = placement(&net, "eve/challenged")
        .into_iter()
        .find_map(|(pieces, holders)| {
            pieces
                .into_iter()
                .zip(holders)
                .find(|(_, hs)| hs.contains(&target_id))
                .map(|(p, _)| p)
        })
        .map(|p| {
            let file = piece_files(&target.data_dir)
                .into_iter()
                .find(|(id, _)| *id == p.to_string())
                .expect("the piece file");
            (p, std::fs::metadata(file.1).expect("size").len())
        })
        .expect("the target holds a piece");
    let flooder = Adversary::fresh();
    flooder.join(std::slice::from_ref(&target.peer));
    let peer = target.peer.rsplit('/').next().expect("peer id").to_string();
    let t0 = std::time::Instant::now();
    let (waves, wave) = (30u64, 100u64);
    let (mut proofs, mut refused, mut lost) = (0u64, 0u64, 0u64);
    for w in 0..waves {
        // A wave of challenges at once (as many streams as a peer opens by default),
        // each with a nonce of its own.
        let requests = (0..wave)
            .map(|i| {
                let mut nonce = [0u8; 32];
                nonce[..8].copy_from_slice(&(w * wave + i).to_le_bytes());
                let c = proofs::Challenge::new(piece.to_proofs_hash(), len, proofs::Nonce(nonce));
                wire::Request::Challenge {
                    challenge: c.encode(),
                }
            })
            .collect();
        for r in flooder.request_all(&peer, requests) {
            match r {
                Ok(wire::Response::Proof(_)) => proofs += 1,
                // Busy: refused without a read.
                Ok(wire::Response::Error {
                    code: wire::ErrorCode::Busy,
                    ..
                }) => refused += 1,
                // A stream the node would not open, or an answer that never came.
                Err(_) => lost += 1,
                Ok(other) => panic!("a challenge answered with {other:?}"),
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    // Proofs cost a read of the piece each: the allowance and its refill bound them.
    let allowed = 1024.0 + 64.0 * secs + 1.0;
    assert!(
        (proofs as f64) <= allowed,
        "{proofs} proofs in {secs:.1} s, over the allowance of {allowed:.0}"
    );
    eprintln!("{proofs} proofs, {refused} refused as busy, {lost} unanswered, in {secs:.1} s");
    assert_eq!(proofs + refused + lost, waves * wave);
    assert!(refused > 0, "nothing was refused");
    // The node answers: a challenge it will not prove is refused, not left hanging.
    assert_eq!(lost, 0, "{lost} challenges were never answered");
    wait_rounds(&net, 2);
    assert_no_honest_node_harmed(&net, &[]);
    assert_reads_work(&net, "eve/challenged", &files, "after-challenges");
}

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
        let o = net.cmd(&[
            "network",
            "add",
            "--dir",
            net.net_dir().to_str().expect("utf-8"),
        ]);
        assert!(o.status.success(), "{}", text(&o));
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

#[test]
fn junk_holdings_cannot_fill_the_holder_table_against_new_nodes() {
    // A holder table of 2000 entries, so that a few identities can fill it.
    let net = Net::up_with(
        6,
        &[
            "--audit-secs",
            "1",
            "--repair-threshold",
            "6",
            "--holder-entries",
            "2000",
        ],
    );
    let first = net.dir.path().join("first");
    mixed_files(&first, 28, 1 << 20);
    let o = net.push(&first, "eve/first");
    assert!(o.status.success(), "{}", text(&o));
    // Four identities connect to node 0 and each announces 2000 pieces it does not hold.
    let node0 = net.nodes()[0].peer.clone();
    let node0_id = node0.rsplit('/').next().expect("peer id").to_string();
    let sybils: Vec<Adversary> = (0..4).map(|_| Adversary::announcer()).collect();
    let junk: Vec<Vec<[u8; 32]>> = (0..sybils.len())
        .map(|i| {
            (0..2000u32)
                .map(|j| *blake3::hash(format!("junk {i} {j}").as_bytes()).as_bytes())
                .collect()
        })
        .collect();
    for (i, (a, junk)) in sybils.iter().zip(&junk).enumerate() {
        a.join(std::slice::from_ref(&node0));
        // Node 0 has taken in the announcement once it lists this identity as the holder
        // of its first junk piece. Like a node, it announces again until then (node 0
        // takes holdings only once it knows the sender as a peer).
        let first = junk[0];
        wait_for(
            30,
            || {
                a.announce(junk);
                std::thread::sleep(std::time::Duration::from_millis(300));
                matches!(
                    a.request(&node0_id, Request::Locate { pieces: vec![first] }),
                    Ok(Response::Located(holders)) if holders.first().is_some_and(|h| !h.is_empty())
                )
            },
            || format!("node 0 never took in identity {i}'s announcement"),
        );
    }
    // The table is full. The identities keep announcing, as nodes do, so that nothing
    // they claimed expires while an honest node joins and a new version puts pieces on
    // it. Node 0 must hear of them and audit the newcomer like any other co-holder.
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(Ordering::Relaxed) {
                for (a, junk) in sybils.iter().zip(&junk) {
                    a.announce(junk);
                }
                // Within the 15 s after which a node forgets a silent announcer.
                for _ in 0..40 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        });
        let o = net.cmd(&[
            "network",
            "add",
            "--dir",
            net.net_dir().to_str().expect("utf-8"),
        ]);
        let newcomer = net.nodes().get(6).map(|n| n.peer.clone());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert!(o.status.success(), "{}", text(&o));
            let newcomer = newcomer.expect("the newcomer is listed");
            let newcomer_id = newcomer.rsplit('/').next().expect("peer id").to_string();
            let src = net.dir.path().join("second");
            let files = mixed_files(&src, 29, 3 << 20);
            let o = net.push(&src, "eve/second");
            assert!(o.status.success(), "{}", text(&o));
            let http0 = net.nodes()[0].http.clone();
            wait_for(
                60,
                || {
                    status(&http0).is_some_and(|s| {
                        s.ledger
                            .iter()
                            .any(|e| e.peer == newcomer_id && e.reputation.passes > 0)
                    })
                },
                || format!("node 0 never audited the newcomer {newcomer}"),
            );
            assert_no_honest_node_harmed(&net, &[]);
            assert_reads_work(&net, "eve/second", &files, "after-junk");
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
    });
}

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
        smear1.send_records(&smear1.records(&about, Outcome::BadProof, 1));
        smear2.send_records(&smear2.records(&about, Outcome::Timeout, 2));
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
            let o = net.cmd(&[
                "train",
                "--dataset",
                "uci/iris",
                "--format",
                "csv",
                "--label",
                "species",
                "--task",
                "classify",
                "--epochs",
                "2",
                "--seed",
                "3",
            ]);
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

/// Publishes, through `node`'s control protocol and from a fresh identity, a version of
/// `name` over the files under `src` signed by the key of `secret`, placing nothing
/// itself. Returns the node's answer.
fn publish_signed_by(
    node: &common::NodeEntry,
    src: &std::path::Path,
    name: &str,
    secret: &[u8],
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
    eve.request(
        &peer,
        wire::Request::Publish {
            manifest: m.as_bytes().to_vec(),
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
    let answer = publish_signed_by(&nodes[0], &src, "eve/ghost", b"ghost publisher");
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
    let answer = publish_signed_by(&nodes[0], &src, "alice/data", b"mallory");
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
