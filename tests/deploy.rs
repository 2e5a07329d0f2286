//! `deploy/`: the systemd unit verifies, the example config and the command lines of the
//! unit, the container image and the compose file are accepted by the node, and the
//! network-namespace script starts a network that discovers itself and moves data across
//! real interfaces (when the test runs as root).

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use common::{run, text};

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file)
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).unwrap_or_else(|e| panic!("deploy/{file}: {e}"))
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `cairn ARGS --check` from `dir`, with `/var/lib/cairn` and `/etc/cairn/node.toml`
/// standing for a data dir of the test's and the example config.
fn check_command_line(args: &[String], data: &Path) -> std::process::Output {
    let args: Vec<String> = args
        .iter()
        .map(|a| match a.as_str() {
            "/var/lib/cairn" | "/data" => data.display().to_string(),
            "/etc/cairn/node.toml" => deploy("example.toml").display().to_string(),
            _ => a.clone(),
        })
        .collect();
    let mut v: Vec<&str> = args.iter().map(String::as_str).collect();
    if !v.contains(&"--check") {
        v.push("--check");
    }
    run(&v, &[])
}

#[test]
fn the_example_config_is_valid_and_documents_every_key() {
    let o = run(
        &[
            "node",
            "run",
            "--config",
            deploy("example.toml").to_str().expect("utf-8"),
            "--check",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("capacity 500.00 GiB") && text(&o).contains("1 bootstrap peer"),
        "{}",
        text(&o)
    );
    // Every key the node takes is in the example (commented out or set).
    let example = read("example.toml");
    for key in [
        "data_dir",
        "listen",
        "http",
        "peers",
        "capacity",
        "mdns",
        "announce_secs",
        "orphan_grace_secs",
        "audit_secs",
        "scrub_secs",
        "scrub_rate",
        "repair_threshold",
        "http_max_body",
        "http_cache",
    ] {
        assert!(
            example
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{key} ="))),
            "deploy/example.toml does not show {key}"
        );
    }
}

#[test]
fn the_systemd_unit_verifies_and_its_command_lines_are_valid() {
    let unit = read("cairn-node.service");
    for needed in [
        "User=cairn",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/cairn",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.contains(needed), "the unit lacks {needed}");
    }
    let data = tempfile::tempdir().expect("tempdir");
    for line in unit.lines() {
        let Some(cmd) = line
            .strip_prefix("ExecStart=")
            .or_else(|| line.strip_prefix("ExecStartPre="))
        else {
            continue;
        };
        let args: Vec<String> = cmd.split_whitespace().skip(1).map(String::from).collect();
        let o = check_command_line(&args, data.path());
        assert!(o.status.success(), "{line}: {}", text(&o));
    }
    if !have("systemd-analyze") {
        eprintln!("skipped systemd-analyze verify: systemd-analyze is not installed");
        return;
    }
    // systemd-analyze checks that the binary exists: point the unit at the one built.
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("cairn-node.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/cairn", env!("CARGO_BIN_EXE_cairn")),
    )
    .expect("write unit");
    let o = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze runs");
    let out = text(&o);
    assert!(o.status.success(), "systemd-analyze verify: {out}");
    assert!(
        !String::from_utf8_lossy(&o.stderr).contains("cairn-node.service:"),
        "systemd-analyze has remarks: {out}"
    );
}

/// The first `[...]` JSON array on the line that starts with `prefix`.
fn json_array_after(text: &str, prefix: &str) -> Vec<String> {
    let line = text
        .lines()
        .map(str::trim_start)
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?}"));
    let start = line.find('[').expect("[");
    let end = line.rfind(']').expect("]");
    serde_json::from_str(&line[start..=end]).unwrap_or_else(|e| panic!("{line}: {e}"))
}

#[test]
fn the_container_and_compose_commands_are_valid() {
    let data = tempfile::tempdir().expect("tempdir");
    let dockerfile = read("Dockerfile");
    let entry = json_array_after(&dockerfile, "ENTRYPOINT");
    assert_eq!(entry, ["cairn"]);
    let cmd = json_array_after(&dockerfile, "CMD");
    let o = check_command_line(&cmd, data.path());
    assert!(o.status.success(), "Dockerfile CMD {cmd:?}: {}", text(&o));
    let compose = read("compose.yaml");
    let cmd = json_array_after(&compose, "command:");
    let o = check_command_line(&cmd, data.path());
    assert!(o.status.success(), "compose command {cmd:?}: {}", text(&o));
    // Six nodes, one of which publishes the gateway port.
    let nodes = (0..10)
        .filter(|i| compose.contains(&format!("\n  node{i}:\n")))
        .count();
    assert_eq!(nodes, 6, "compose.yaml should define node0..node5");
    assert!(compose.contains("\"7421:7421/tcp\""));
}

#[test]
fn netns_network_discovers_itself_and_moves_data_across_real_interfaces() {
    let Some(net) = common::netns::NetnsNet::up(5, 1) else {
        return;
    };
    let peer = |i: usize| net.peer(i);
    assert!(peer(0).starts_with("/ip4/10.87.0.10/"), "{}", peer(0));

    // Push through node 0 and pull through node 3, from the client namespace: every piece
    // crosses the bridge.
    let src = net.dir.path().join("src");
    let files = common::mixed_files(&src, 2, 1 << 20);
    let p0 = peer(0);
    let o = net.cairn(&[
        "dataset",
        "push",
        src.to_str().expect("utf-8"),
        "--name",
        "ns/bridged",
        "--k",
        "3",
        "--m",
        "2",
        "--block-size",
        "64KiB",
        "--peer",
        &p0,
    ]);
    assert!(o.status.success(), "push: {}", text(&o));
    let dest = net.dir.path().join("out");
    let p3 = peer(3);
    let o = net.cairn(&[
        "dataset",
        "pull",
        "ns/bridged",
        dest.to_str().expect("utf-8"),
        "--peer",
        &p3,
    ]);
    assert!(o.status.success(), "pull: {}", text(&o));
    common::assert_same(&dest, &files);
    // Every node took part: each holds pieces, and the status view reaches them all.
    let o = net.cairn(&["network", "status", "--dir", &net.net_dir(), "--json"]);
    assert!(o.status.success(), "status: {}", text(&o));
    let rows: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let rows = rows.as_array().expect("rows");
    assert_eq!(rows.len(), 5);
    for r in rows {
        assert!(r["up"] == true && r["peers"] == 4, "{r}");
        assert!(
            r["pieces"].as_u64().unwrap_or(0) > 0,
            "a node holds nothing: {r}"
        );
    }
}
