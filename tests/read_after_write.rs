//! End-to-end: when a push returns, every read path works at once (HTTP, pull and
//! training), through the node the push went through and through one that had no part
//! in it. Each read below is made the moment its push returns, with no sleep and no
//! retry, 20 times for each kind of push.

mod common;

use std::process::Command;

use common::{Net, text};

const ROUNDS: usize = 20;

/// GETs `url`, returning the status and the body.
fn get(url: &str) -> (u16, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut r = agent.get(url).call().expect("the node answers");
    let status = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(16 << 20)
        .read_to_vec()
        .expect("body");
    (status, body)
}

/// A small dataset of its own for round `i`: two files spanning a few stripes.
fn dataset(dir: &std::path::Path, i: usize) -> Vec<u8> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let data = storage_node::local::synthetic(300_000 + i * 1000, 900 + i as u64);
    std::fs::write(dir.join("data.bin"), &data).expect("write");
    std::fs::write(dir.join("README.md"), format!("# round {i}\n")).expect("write");
    data
}

#[test]
fn cli_and_http_pushes_are_readable_the_moment_they_return() {
    let net = Net::up(6);
    let nodes = net.nodes();
    // Reads through the node the CLI went through, and through one that had no part.
    let (entry, other) = (&nodes[0].http, &nodes[4].http);
    for i in 0..ROUNDS {
        let src = net.dir.path().join(format!("cli-{i}"));
        let data = dataset(&src, i);
        let name = format!("raw/cli-{i}");
        let o = net.push(&src, &name);
        assert!(o.status.success(), "{}", text(&o));
        for base in [entry, other] {
            let (status, body) = get(&format!(
                "{base}/v1/datasets/{name}/resolve/latest/data.bin"
            ));
            assert_eq!(
                status,
                200,
                "round {i}, {base}: {}",
                String::from_utf8_lossy(&body)
            );
            assert!(body == data, "round {i}, {base}: other bytes");
        }
        let dest = net.dir.path().join(format!("cli-{i}-out"));
        let o = net.pull(&name, &dest);
        assert!(o.status.success(), "round {i}: {}", text(&o));
        assert!(std::fs::read(dest.join("data.bin")).expect("pulled") == data);
    }

    // New versions of one dataset (2 + 1 pieces on 6 nodes, so a node holds only some
    // of its stripes): the version just pushed is read at once by its id through a node
    // that had no part in it, and it is `latest` through the node the push went
    // through. (Another node's `latest` may name the previous version until the new one
    // is announced to it: names have no record of their own in the DHT yet.)
    for i in 0..ROUNDS / 4 {
        let src = net.dir.path().join(format!("versions-{i}"));
        let data = dataset(&src, 2 * ROUNDS + i);
        let o = net.push_coded(&src, "raw/versions", 2, 1);
        assert!(o.status.success(), "{}", text(&o));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        let version = out
            .lines()
            .find_map(|l| l.trim().strip_prefix("published raw/versions@"))
            .unwrap_or_else(|| panic!("no version in: {out}"))
            .to_string();
        for (base, revision) in [(entry, "latest"), (other, version.as_str())] {
            let (status, body) = get(&format!(
                "{base}/v1/datasets/raw/versions/resolve/{revision}/data.bin"
            ));
            assert_eq!(
                status,
                200,
                "version {i}, {base}: {}",
                String::from_utf8_lossy(&body)
            );
            assert!(body == data, "version {i}, {base}: another version's bytes");
        }
    }

    let token = common::token(&nodes[1].data_dir, "raw");
    let base = &nodes[1].http;
    for i in 0..ROUNDS {
        let src = net.dir.path().join(format!("http-{i}"));
        let data = dataset(&src, ROUNDS + i);
        let tar = Command::new("tar")
            .arg("-C")
            .arg(&src)
            .args(["-cf", "-", "."])
            .output()
            .expect("tar runs");
        assert!(tar.status.success());
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent
            .post(format!(
                "{base}/v1/datasets/raw/http-{i}?k=4&m=2&block_size=65536"
            ))
            .header("Authorization", format!("Bearer {token}"))
            .send(&tar.stdout[..])
            .expect("the node answers");
        let status = r.status().as_u16();
        let answer = r.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 201, "round {i}: {answer}");
        let (status, body) = get(&format!(
            "{base}/v1/datasets/raw/http-{i}/resolve/latest/data.bin"
        ));
        assert_eq!(status, 200, "round {i}: {}", String::from_utf8_lossy(&body));
        assert!(body == data, "round {i}: other bytes");
    }
}

#[test]
fn training_streams_a_dataset_the_moment_its_push_returns() {
    let net = Net::up(6);
    let nodes = net.nodes();
    let iris = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join("iris");
    for i in 0..ROUNDS {
        // Each round a dataset of its own, pushed through the first node...
        let src = net.dir.path().join(format!("iris-{i}"));
        std::fs::create_dir_all(&src).expect("mkdir");
        let mut csv = std::fs::read_to_string(iris.join("iris.csv")).expect("iris");
        csv.push_str(&format!("5.{i},3.0,1.4,0.2,0\n"));
        std::fs::write(src.join("iris.csv"), csv).expect("write");
        let name = format!("uci/iris-{i}");
        let o = net.push(&src, &name);
        assert!(o.status.success(), "round {i}: {}", text(&o));
        // ...and at once trained on through a node that had no part in it.
        let metrics = net.dir.path().join(format!("iris-{i}.json"));
        let mut args = vec!["train", "--dataset", &name];
        args.extend_from_slice(common::IRIS_COLUMNS);
        args.extend([
            "--epochs",
            "1",
            "--batch-size",
            "16",
            "--metrics-out",
            metrics.to_str().expect("utf-8"),
        ]);
        let o = common::cairn()
            .args(&args)
            .env("CAIRN_PEER", &nodes[4].peer)
            .env("CAIRN_CONFIG_DIR", &net.config)
            .output()
            .expect("cairn runs");
        assert!(o.status.success(), "round {i}: {}", text(&o));
        assert!(metrics.exists(), "round {i}: no metrics written");
    }
}
