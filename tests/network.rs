//! End-to-end: real `cairn node` processes on 127.0.0.1, started by `cairn network up`,
//! with datasets pushed and pulled by the real CLI.

mod common;

use common::{Net, assert_same, count_before, files_under, mixed_files, text};

#[test]
fn push_then_pull_returns_identical_files_and_repeat_push_sends_nothing() {
    let net = Net::up(6);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 1, 3 << 20);
    let o = net.push(&src, "alice/mixed");
    assert!(o.status.success(), "{}", text(&o));

    let ls = net.cmd(&["dataset", "ls"]);
    assert!(
        ls.status.success() && String::from_utf8_lossy(&ls.stdout).contains("alice/mixed"),
        "{}",
        text(&ls)
    );
    let info = net.cmd(&["dataset", "info", "alice/mixed"]);
    let info_out = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "{}", text(&info));
    assert!(
        info_out.contains(", 0 below k;")
            && info_out.contains("CC0-1.0")
            && info_out.contains("shards/000.bin"),
        "{info_out}"
    );

    let dest = net.dir.path().join("out");
    let o = net.pull("alice/mixed", &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);
    assert_eq!(
        files_under(&dest).len(),
        files.len(),
        "no stray files: {:?}",
        files_under(&dest)
    );

    // Same data again: every piece is already held and no new version appears.
    let o = net.push(&src, "alice/mixed");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("), 0 sent,") && out.contains("unchanged"),
        "{}",
        text(&o)
    );

    // A pull into the same place finds every file complete and fetches nothing.
    let o = net.pull("alice/mixed", &dest);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("0 files written, 6 already complete"),
        "{}",
        text(&o)
    );

    // A second version: new content, same name, same key; info lists both.
    std::fs::write(src.join("tiny.txt"), b"y").expect("write");
    let o = net.push(&src, "alice/mixed");
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).contains("published"),
        "{}",
        text(&o)
    );
    let info = net.cmd(&["dataset", "info", "alice/mixed"]);
    assert!(
        String::from_utf8_lossy(&info.stdout).contains("versions   2 (oldest first)"),
        "{}",
        text(&info)
    );

    // Another publisher may not take the name.
    let mut c = common::cairn();
    let other = net.dir.path().join("other-config");
    let o = c
        .args([
            "dataset",
            "push",
            src.to_str().expect("utf-8"),
            "--name",
            "alice/mixed",
            "--k",
            "4",
            "--m",
            "2",
        ])
        .env("CAIRN_PEER", &net.nodes()[0].peer)
        .env("CAIRN_CONFIG_DIR", &other)
        .output()
        .expect("runs");
    assert!(
        !o.status.success() && text(&o).contains("belongs to"),
        "{}",
        text(&o)
    );
}

#[test]
fn pull_survives_m_killed_nodes_and_fails_cleanly_past_m() {
    let net = Net::up(6);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 2, 2 << 20);
    let o = net.push(&src, "bob/sturdy");
    let pushed = text(&o);
    assert!(o.status.success(), "{pushed}");

    // Any m = 2 holders of every stripe gone: still identical bytes.
    net.kill(2);
    net.kill(4);
    let dest = net.dir.path().join("out");
    let o = net.pull("bob/sturdy", &dest);
    if !o.status.success() {
        let placed = text(&net.cmd(&["dataset", "info", "bob/sturdy", "--placement"]));
        panic!(
            "{}\nwhere node 0 finds the pieces now:\n{placed}\nthe push:\n{pushed}",
            text(&o)
        );
    }
    assert_same(&dest, &files);

    // m + 1 gone: a clear error naming the stripes, and nothing written.
    net.kill(5);
    let dest = net.dir.path().join("out-lost");
    let o = net.pull("bob/sturdy", &dest);
    let all = text(&o);
    assert!(!o.status.success(), "{all}");
    assert!(
        all.contains("cannot be rebuilt") && all.contains("stripe 0: 3 of 4 needed"),
        "{all}"
    );
    assert!(
        files_under(&dest).is_empty(),
        "partial files written: {:?}",
        files_under(&dest)
    );
}

#[test]
fn node_killed_mid_push_leaves_no_version_and_comes_back_consistent() {
    let net = Net::up(6);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 3, 12 << 20);
    let victim = 3;
    let status_url = net.nodes()[victim].http.clone();

    let child = net.spawn(&[
        "dataset",
        "push",
        src.to_str().expect("utf-8"),
        "--name",
        "carol/interrupted",
        "--k",
        "4",
        "--m",
        "2",
        "--block-size",
        "64KiB",
    ]);
    // Kill the victim once it has taken some pieces, while the push is still going.
    let held = |url: &str| -> u64 {
        let o = common::run(&["node", "status", "--http", url, "--json"], &[]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .ok()
            .and_then(|v| v["info"]["pieces"].as_u64())
            .unwrap_or(0)
    };
    let t0 = std::time::Instant::now();
    let mut before = 0;
    while before < 5 {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "the victim never took 5 pieces"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        before = held(&status_url);
    }
    net.kill(victim);
    let o = child.wait_with_output().expect("push ends");
    let victim_id = net.nodes()[victim]
        .peer
        .rsplit('/')
        .next()
        .expect("peer id")
        .to_string();
    assert!(
        !o.status.success(),
        "push should fail without the node: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("no version was published") && text(&o).contains(&victim_id),
        "the error should name the lost node: {}",
        text(&o)
    );
    let ls = net.cmd(&["dataset", "ls"]);
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("no datasets yet"),
        "{}",
        text(&ls)
    );

    // The node restarts on its own data dir, consistent; the push then completes and the
    // pieces it already took are not sent again.
    let o = common::run(
        &[
            "network",
            "restart",
            "--dir",
            net.net_dir().to_str().expect("utf-8"),
            "--node",
            &victim.to_string(),
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let t0 = std::time::Instant::now();
    loop {
        let o = common::run(
            &[
                "network",
                "status",
                "--dir",
                net.net_dir().to_str().expect("utf-8"),
            ],
            &[],
        );
        let s = String::from_utf8_lossy(&o.stdout).to_string();
        // Node rows start with the node's index; the header and the footnote do not.
        let rows: Vec<&str> = s
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .next()
                    .is_some_and(|w| w.parse::<usize>().is_ok())
            })
            .collect();
        if !s.contains("down")
            && rows.len() == 6
            && rows
                .iter()
                .all(|l| l.split_whitespace().nth(3) == Some("5"))
        {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "network did not heal: {s}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // It kept every piece it had taken before it died.
    assert!(
        held(&status_url) >= before,
        "the restarted node lost pieces"
    );
    let o = net.push(&src, "carol/interrupted");
    assert!(o.status.success(), "{}", text(&o));
    let dest = net.dir.path().join("out");
    let o = net.pull("carol/interrupted", &dest);
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);
}

#[test]
#[cfg_attr(
    not(feature = "fault-injection"),
    ignore = "starts a misbehaving node: needs --features fault-injection (scripts/test)"
)]
fn bytes_that_do_not_match_their_hash_are_routed_around() {
    let net = Net::up(6);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 4, 2 << 20);
    let o = net.push(&src, "dave/guarded");
    assert!(o.status.success(), "{}", text(&o));

    // Node 1 comes back as a liar: it serves every piece with a flipped byte.
    net.kill(1);
    let n = &net.nodes()[1];
    let http = n.http.trim_start_matches("http://").to_string();
    let listen = n.peer.split("/p2p/").next().expect("addr").to_string();
    let port = listen.rsplit('/').next().expect("port");
    let liar = common::cairn()
        .args([
            "node",
            "run",
            "--data-dir",
            n.data_dir.to_str().expect("utf-8"),
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--http",
            &http,
            "--no-mdns",
            "--peer",
            &net.nodes()[0].peer,
            "--fault-serve-corrupt",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("liar starts");
    let _liar = common::KillOnDrop(liar);
    // The liar itself must be up before the placement is read: node 0 may still list
    // node 1 as it was before the kill, and a pull made while the liar is starting
    // would never ask it.
    common::wait_for(
        30,
        || common::status(&n.http).is_some(),
        || "the liar's API never came up".into(),
    );
    let t0 = std::time::Instant::now();
    loop {
        let o = net.cmd(&["dataset", "info", "dave/guarded"]);
        if String::from_utf8_lossy(&o.stdout)
            .contains("with all 6 pieces on distinct reachable nodes, 0 degraded")
        {
            break;
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(30),
            "liar not back: {}",
            text(&o)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let dest = net.dir.path().join("out");
    let o = net.pull("dave/guarded", &dest);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);
    let routed = count_before(&out, " fetches routed around");
    assert!(
        routed > 0,
        "the liar was never asked, so nothing was shown: {out}"
    );
}

#[test]
fn interrupted_pull_resumes_from_its_last_whole_stripe() {
    let net = Net::up(6);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 5, 16 << 20);
    let o = net.push(&src, "erin/resumable");
    assert!(o.status.success(), "{}", text(&o));

    let dest = net.dir.path().join("out");
    let mut child = net.spawn(&[
        "dataset",
        "pull",
        "erin/resumable",
        dest.to_str().expect("utf-8"),
    ]);
    // Stop it hard once the big file is part way.
    let partial_len = || -> u64 {
        std::fs::read_dir(dest.join(".cairn-partial"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .max()
            .unwrap_or(0)
    };
    let t0 = std::time::Instant::now();
    while partial_len() < (2 << 20) {
        assert!(
            child.try_wait().expect("wait").is_none(),
            "pull finished before it could be interrupted"
        );
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "pull made no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().expect("kill");
    child.wait().expect("reaped");
    for (p, _) in &files {
        if p == "shards/000.bin" {
            assert!(!dest.join(p).exists(), "an unfinished file is visible");
        }
    }

    let o = net.pull("erin/resumable", &dest);
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!out.contains(", 0 B resumed"), "nothing was resumed: {out}");
    assert_same(&dest, &files);
    assert!(
        !dest.join(".cairn-partial").exists(),
        "partial dir left behind"
    );
    // A fresh pull of the same version needs more pieces than the resumed one took.
    let fresh = net.dir.path().join("fresh");
    let f = net.pull("erin/resumable", &fresh);
    let (resumed, whole) = (
        count_before(&out, " pieces fetched"),
        count_before(&String::from_utf8_lossy(&f.stdout), " pieces fetched"),
    );
    assert!(
        resumed < whole,
        "resumed pull fetched {resumed} pieces, a fresh one {whole}"
    );
}

#[test]
fn a_holder_that_dies_during_a_pull_is_routed_around() {
    let net = Net::up(6);
    let src = net.dir.path().join("src");
    let files = mixed_files(&src, 6, 16 << 20);
    let o = net.push(&src, "frank/steady");
    assert!(o.status.success(), "{}", text(&o));

    let dest = net.dir.path().join("out");
    let mut child = net.spawn(&[
        "dataset",
        "pull",
        "frank/steady",
        dest.to_str().expect("utf-8"),
    ]);
    let t0 = std::time::Instant::now();
    while !dest.join(".cairn-partial").exists() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(60),
            "pull made no progress"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(
        child.try_wait().expect("wait").is_none(),
        "pull ended before a holder could die"
    );
    net.kill(3);
    let o = child.wait_with_output().expect("pull ends");
    assert!(o.status.success(), "{}", text(&o));
    assert_same(&dest, &files);
}
