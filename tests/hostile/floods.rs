//! Floods: silent and stalled HTTP clients, challenges that make a node read its disk,
//! and holdings that would fill the holder table.

use super::*;

/// Opens `n` connections to `to` from the loopback address `from`, each sending `send`
/// (nothing, or a request it will never read the answer of), with a small receive buffer.
pub(super) async fn connect_many(
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
pub(super) async fn closed(conns: &mut [tokio::net::TcpStream], wait: Duration) -> usize {
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
                a.announce(&node0_id, junk);
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
                    a.announce(&node0_id, junk);
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

#[test]
fn a_flood_of_publishes_is_turned_away_before_it_is_decoded() {
    let net = Net::up(3);
    let nodes = net.nodes();
    let peer = nodes[0].peer.rsplit('/').next().expect("peer").to_string();
    let junk = || wire::Request::Publish {
        manifest: vec![0xA5; 64 << 10],
        holders: None,
    };
    let refused = |answers: &[Result<wire::Response, String>], code: wire::ErrorCode| {
        answers
            .iter()
            .filter(|a| matches!(a, Ok(wire::Response::Error { code: c, .. }) if *c == code))
            .count()
    };
    // One identity, far past its allowance (32 at once, then one a second): the node
    // decodes what the allowance holds, and turns the rest away unread. Sent in batches
    // well below the node's handler cap, so that only the allowance says Busy.
    let eve = Adversary::fresh();
    eve.join(std::slice::from_ref(&nodes[0].peer));
    let t0 = std::time::Instant::now();
    let answers: Vec<_> = (0..10)
        .flat_map(|_| eve.request_all(&peer, (0..20).map(|_| junk()).collect()))
        .collect();
    let refilled = t0.elapsed().as_secs_f64().ceil() as usize;
    let (decoded, turned) = (
        refused(&answers, wire::ErrorCode::BadRequest),
        refused(&answers, wire::ErrorCode::Busy),
    );
    assert_eq!(decoded + turned, answers.len(), "{answers:?}");
    assert!(
        (32..=33 + refilled).contains(&decoded),
        "{decoded} decoded in {refilled} s"
    );
    // Another identity has an allowance of its own.
    let mallory = Adversary::fresh();
    mallory.join(std::slice::from_ref(&nodes[0].peer));
    let answer = mallory.request(&peer, junk());
    assert!(
        matches!(
            answer,
            Ok(wire::Response::Error {
                code: wire::ErrorCode::BadRequest,
                ..
            })
        ),
        "{answer:?}"
    );
}
