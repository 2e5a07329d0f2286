//! Records and claims from keys that hold nothing: standing and repair stay untouched.

use super::*;

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
    // Every node hears them, and takes none: their signers hold nothing.
    let taken = smear1.send_records(&addrs, &smear1.records(&about, Outcome::BadProof, 1))
        + smear2.send_records(&addrs, &smear2.records(&about, Outcome::WrongBytes, 1))
        + stall.send_records(&addrs, &stall.records(&about, Outcome::Timeout, 8));
    // And records whose signatures do not verify, in their own names.
    let mut broken = smear1.records(&about, Outcome::BadProof, 2);
    for r in &mut broken {
        r.sig[0] ^= 1;
    }
    let taken = taken + smear1.send_records(&addrs, &broken);
    assert_eq!(taken, 0, "nodes took records from keys that hold nothing");
    // A key that floods one node with records is cut off at its allowance (a burst of
    // `AUDITOR_BURST`) before they are decoded: twice the burst, all at once.
    let flood = Adversary::fresh();
    flood.join(&addrs);
    let burst = storage_node::audit::AUDITOR_BURST as u64;
    let copies = (2 * burst).div_ceil(about.len() as u64);
    let many = flood.records(&about, Outcome::Timeout, copies);
    let batches = many.len().div_ceil(wire::AUDIT_BATCH);
    let (taken, answered, over) = flood.records_to(&addrs[2], &many);
    assert_eq!(
        taken, 0,
        "a node took records from a key that holds nothing"
    );
    // The burst's worth of batches is decoded and filtered (a little more, if the
    // allowance refilled while they arrived); every other batch is refused unread.
    let within = (burst as usize).div_ceil(wire::AUDIT_BATCH);
    assert!(
        (within..=within + 2).contains(&answered) && answered + over == batches,
        "of {batches} batches, {answered} answered and {over} refused as over the \
         allowance; {within} (or a little more) fit in it"
    );
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
