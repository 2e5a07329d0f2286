//! A network of real nodes in Linux network namespaces, made by
//! `deploy/netns-network.sh`: every node its own host on a bridge, so traffic crosses
//! real (virtual) interfaces and nodes can sit in different subnets.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use super::text;

/// A netns network, taken down when dropped.
pub(crate) struct NetnsNet {
    pub(crate) dir: tempfile::TempDir,
    script: PathBuf,
}

impl NetnsNet {
    /// `nodes` nodes spread over `subnets` /24s, or `None` (with the reason printed)
    /// where namespaces cannot be made: not root, or no usable `ip netns`.
    pub(crate) fn up(nodes: usize, subnets: usize) -> Option<Self> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        if !root {
            eprintln!("skipped: deploy/netns-network.sh needs root to create network namespaces");
            return None;
        }
        // Root alone is not enough (a container may lack the capabilities): make and
        // remove a namespace to find out.
        let probe = format!("cairn-probe-{}", std::process::id());
        let ip = |args: &[&str]| {
            Command::new("ip")
                .args(args)
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ip(&["netns", "add", &probe]) {
            eprintln!("skipped: `ip netns add` (iproute2) is not usable here");
            return None;
        }
        ip(&["netns", "del", &probe]);
        let net = Self {
            dir: tempfile::tempdir().expect("tempdir"),
            script: Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/netns-network.sh"),
        };
        let o = net.sh(&[
            "up",
            &net.net_dir(),
            &nodes.to_string(),
            &subnets.to_string(),
        ]);
        assert!(o.status.success(), "netns up: {}", text(&o));
        Some(net)
    }

    /// Where network.json and the nodes' data live.
    pub(crate) fn net_dir(&self) -> String {
        self.dir
            .path()
            .join("net")
            .to_str()
            .expect("utf-8")
            .to_string()
    }

    /// Runs the script with `args`.
    pub(crate) fn sh(&self, args: &[&str]) -> Output {
        Command::new(&self.script)
            .args(args)
            .env("CAIRN", env!("CARGO_BIN_EXE_cairn"))
            .env_remove("CAIRN_PEER")
            .output()
            .expect("the script runs")
    }

    /// `cairn ARGS` in the client namespace, with a config dir of this network's own.
    pub(crate) fn cairn(&self, args: &[&str]) -> Output {
        let cfg = format!(
            "CAIRN_CONFIG_DIR={}",
            self.dir.path().join("cfg").to_str().expect("utf-8")
        );
        let net = self.net_dir();
        let mut a = vec!["exec", &net, "env", &cfg, env!("CARGO_BIN_EXE_cairn")];
        a.extend_from_slice(args);
        self.sh(&a)
    }

    /// Node `i`'s libp2p address, as network.json has it.
    pub(crate) fn peer(&self, i: usize) -> String {
        let nodes: serde_json::Value = serde_json::from_slice(
            &std::fs::read(self.dir.path().join("net/network.json")).expect("network.json"),
        )
        .expect("json");
        nodes["nodes"][i]["peer"]
            .as_str()
            .expect("peer")
            .to_string()
    }
}

impl Drop for NetnsNet {
    fn drop(&mut self) {
        self.sh(&["down", &self.net_dir()]);
    }
}
