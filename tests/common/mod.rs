//! A local network of real `cairn node` processes for end-to-end tests.

#![allow(dead_code)] // each test binary uses a different part of the kit

pub(crate) mod netns;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

pub(crate) fn cairn() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
    c.env_remove("CAIRN_PEER").env("RUST_BACKTRACE", "0");
    c
}

/// Runs `cairn args...`, returning its output.
pub(crate) fn run(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut c = cairn();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("cairn runs")
}

pub(crate) fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[derive(Debug, Clone, serde::Deserialize)]
pub(crate) struct NodeEntry {
    pub(crate) peer: String,
    pub(crate) http: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) pid: u32,
    /// What `cairn node run` was started with.
    #[serde(default)]
    pub(crate) args: Vec<String>,
}

/// How `cairn train` reads Fisher's iris as [`Net::push_iris`] pushes it: CSV, the
/// `species` column as the class.
pub(crate) const IRIS_COLUMNS: &[&str] = &[
    "--format", "csv", "--label", "species", "--task", "classify",
];

/// A network started with `cairn network up`, stopped (and its processes killed) on drop.
pub(crate) struct Net {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) config: PathBuf,
}

impl Net {
    pub(crate) fn up(nodes: usize) -> Self {
        Self::up_with(nodes, &[])
    }

    /// A network whose `network up` gets `extra` arguments too (timers, thresholds).
    pub(crate) fn up_with(nodes: usize, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("net");
        let n = nodes.to_string();
        let mut args = vec![
            "network",
            "up",
            "--nodes",
            &n,
            "--dir",
            net.to_str().expect("utf-8 path"),
            "--announce-secs",
            "5",
        ];
        args.extend_from_slice(extra);
        let o = run(&args, &[]);
        assert!(o.status.success(), "network up failed: {}", text(&o));
        let config = dir.path().join("config");
        Self { dir, config }
    }

    /// `cairn network add`: one more node, with a key and an operator label of its own.
    pub(crate) fn add(&self) {
        let o = self.cmd(&[
            "network",
            "add",
            "--dir",
            self.net_dir().to_str().expect("utf-8"),
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }

    pub(crate) fn net_dir(&self) -> PathBuf {
        self.dir.path().join("net")
    }

    pub(crate) fn nodes(&self) -> Vec<NodeEntry> {
        #[derive(serde::Deserialize)]
        struct N {
            nodes: Vec<NodeEntry>,
        }
        let bytes = std::fs::read(self.net_dir().join("network.json")).expect("network.json");
        serde_json::from_slice::<N>(&bytes)
            .expect("valid network.json")
            .nodes
    }

    /// `cairn` with the network and a config dir of this test's own.
    pub(crate) fn cmd(&self, args: &[&str]) -> Output {
        let mut c = cairn();
        c.args(args)
            .env("CAIRN_PEER", &self.nodes()[0].peer)
            .env("CAIRN_CONFIG_DIR", &self.config);
        c.output().expect("cairn runs")
    }

    /// `cairn dataset push SRC --name NAME` with k=4, m=2 and 64 KiB blocks.
    pub(crate) fn push(&self, src: &Path, name: &str) -> Output {
        self.push_coded(src, name, 4, 2)
    }

    /// `cairn dataset push SRC --name NAME` with `k` + `m` pieces of 64 KiB blocks.
    pub(crate) fn push_coded(&self, src: &Path, name: &str, k: u8, m: u8) -> Output {
        let (k, m) = (k.to_string(), m.to_string());
        self.cmd(&[
            "dataset",
            "push",
            src.to_str().expect("utf-8"),
            "--name",
            name,
            "--k",
            &k,
            "--m",
            &m,
            "--block-size",
            "64KiB",
            "--license",
            "CC0-1.0",
        ])
    }

    /// Pushes Fisher's iris (`data/iris`) as `uci/iris`, with small pieces so that it
    /// spans several stripes.
    pub(crate) fn push_iris(&self) {
        let iris = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data")
            .join("iris");
        let o = self.cmd(&[
            "dataset",
            "push",
            iris.to_str().expect("utf-8"),
            "--name",
            "uci/iris",
            "--k",
            "4",
            "--m",
            "2",
            "--block-size",
            "64",
            "--license",
            "CC-BY-4.0",
        ]);
        assert!(o.status.success(), "{}", text(&o));
    }

    /// `cairn dataset pull NAME DEST`.
    pub(crate) fn pull(&self, name: &str, dest: &Path) -> Output {
        self.cmd(&["dataset", "pull", name, dest.to_str().expect("utf-8")])
    }

    /// Starts `cairn args...` against the network in the background, output captured.
    pub(crate) fn spawn(&self, args: &[&str]) -> std::process::Child {
        cairn()
            .args(args)
            .env("CAIRN_PEER", &self.nodes()[0].peer)
            .env("CAIRN_CONFIG_DIR", &self.config)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("cairn starts")
    }

    /// Copies the nodes' logs to `$CAIRN_TEST_LOGS/<this network's dir name>/` when that
    /// is set, so a failed test's network can be read after it is gone.
    fn keep_logs(&self, nodes: &[NodeEntry]) {
        let Some(root) = std::env::var_os("CAIRN_TEST_LOGS") else {
            return;
        };
        let to = Path::new(&root).join(self.dir.path().file_name().unwrap_or_default());
        if std::fs::create_dir_all(&to).is_err() {
            return;
        }
        for (i, n) in nodes.iter().enumerate() {
            std::fs::copy(n.data_dir.join("node.log"), to.join(format!("node{i}.log"))).ok();
        }
        eprintln!("node logs kept in {}", to.display());
    }

    pub(crate) fn kill(&self, i: usize) {
        let pid = self.nodes()[i].pid;
        let ok = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "could not kill node {i}");
        // Wait until it is gone, so its peers see the connection drop.
        for _ in 0..100 {
            if !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.split_whitespace().nth(2) == Some("Z"))
                    .unwrap_or(true)
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let nodes = self.nodes();
        if std::thread::panicking() {
            self.keep_logs(&nodes);
        }
        let o = run(
            &[
                "network",
                "down",
                "--dir",
                self.net_dir().to_str().unwrap_or(""),
            ],
            &[],
        );
        if !o.status.success() {
            for n in nodes {
                Command::new("kill")
                    .args(["-KILL", &n.pid.to_string()])
                    .status()
                    .ok();
            }
        }
    }
}

/// Creates a push token named `name` on the node whose data dir is `data_dir`.
pub(crate) fn token(data_dir: &Path, name: &str) -> String {
    let o = run(
        &[
            "node",
            "token",
            "create",
            "--data-dir",
            data_dir.to_str().expect("utf-8"),
            "--name",
            name,
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// Writes a mix of files under `dir`: a card, a CSV, binary shards across several stripes,
/// a tiny file and an empty one. Returns their BLAKE3 hashes by relative path.
pub(crate) fn mixed_files(dir: &Path, seed: u64, big: usize) -> Vec<(String, blake3::Hash)> {
    let bytes = |n: usize, salt: u64| storage_node::local::synthetic(n, seed * 31 + salt);
    let mut csv = String::from("a,b,label\n");
    for i in 0..2000 {
        csv.push_str(&format!("{i},{},{}\n", i * 7 % 13, i % 3));
    }
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "README.md",
            b"# test/mixed\n\nFiles for end-to-end tests.\n".to_vec(),
        ),
        ("table.csv", csv.into_bytes()),
        ("shards/000.bin", bytes(big, 1)),
        ("shards/001.bin", bytes(big / 3 + 17, 2)),
        ("tiny.txt", b"x".to_vec()),
        ("empty", Vec::new()),
    ];
    let mut out = Vec::new();
    for (p, b) in files {
        let path = dir.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, &b).expect("write");
        out.push((p.to_string(), blake3::hash(&b)));
    }
    out
}

/// Asserts every file in `expected` is at `dest` with the same hash.
pub(crate) fn assert_same(dest: &Path, expected: &[(String, blake3::Hash)]) {
    for (p, h) in expected {
        let got = std::fs::read(dest.join(p)).unwrap_or_else(|e| panic!("{p} missing: {e}"));
        assert_eq!(blake3::hash(&got), *h, "{p} differs");
    }
}

/// Every regular file under `dir`, relative.
pub(crate) fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap_or(&p).display().to_string());
            }
        }
    }
    out
}

/// A child process killed when the test ends, however it ends.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

/// The number just before `label` in `out` ("12 pieces fetched" -> 12).
pub(crate) fn count_before(out: &str, label: &str) -> u64 {
    out.split(label)
        .next()
        .and_then(|x| x.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count before {label:?} in: {out}"))
}

/// Waits up to `secs` for `ok()`, polling; panics with `what()` when time runs out.
pub(crate) fn wait_for(secs: u64, mut ok: impl FnMut() -> bool, what: impl Fn() -> String) {
    let t0 = std::time::Instant::now();
    while !ok() {
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(secs),
            "gave up after {secs} s: {}",
            what()
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// A running node's status from its HTTP API.
pub(crate) fn status(http: &str) -> Option<storage_node::net::NodeStatus> {
    ureq::get(format!("{http}/v1/node"))
        .call()
        .ok()?
        .body_mut()
        .read_json()
        .ok()
}

/// Every piece file under a node's data dir, by piece id (hex).
pub(crate) fn piece_files(data_dir: &Path) -> Vec<(String, PathBuf)> {
    let root = data_dir.join("pieces");
    let mut out: Vec<(String, PathBuf)> = files_under(&root)
        .into_iter()
        .map(|rel| {
            let p = root.join(&rel);
            let id = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (id, p)
        })
        .filter(|(id, _)| id.len() == 64)
        .collect();
    out.sort();
    out
}

/// Whether some file under `data_dir` holds piece `id` intact.
pub(crate) fn holds_intact(data_dir: &Path, id: &str) -> bool {
    piece_files(data_dir).iter().any(|(i, p)| {
        i == id && std::fs::read(p).is_ok_and(|b| blake3::hash(&b).to_hex().as_str() == id)
    })
}

/// Resident memory of process `pid`, in bytes.
pub(crate) fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib << 10)
}

/// Bytes of every file under `dir`.
pub(crate) fn du(dir: &std::path::Path) -> u64 {
    files_under(dir)
        .iter()
        .filter_map(|f| std::fs::metadata(dir.join(f)).ok())
        .map(|m| m.len())
        .sum()
}

/// Every stripe of `name` as the network places it: piece ids and, per piece, holders.
pub(crate) fn placement(
    net: &Net,
    name: &str,
) -> Vec<(Vec<storage_node::PieceId>, Vec<Vec<storage_node::NodeId>>)> {
    placement_of(&net.cmd(&["dataset", "info", name, "--json"]))
}

/// The stripes in the output of `cairn dataset info NAME --json`.
pub(crate) fn placement_of(
    o: &Output,
) -> Vec<(Vec<storage_node::PieceId>, Vec<Vec<storage_node::NodeId>>)> {
    assert!(o.status.success(), "{}", text(o));
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

pub(crate) fn node_id(peer: &str) -> storage_node::NodeId {
    let p: libp2p::PeerId = peer
        .rsplit('/')
        .next()
        .unwrap_or(peer)
        .parse()
        .expect("a peer id");
    storage_node::NodeId(storage_node::net::node::data_id_of(&p).expect("an ed25519 peer"))
}
