//! `cairn node run --check` validates a configuration without starting a node.

mod common;

use common::{run, text};

#[test]
fn config_files_are_validated_with_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:7420\"\nhttp = \"127.0.0.1:7421\"\ncapacity = \"2GiB\"\nmdns = false\npeers = [\"/ip4/127.0.0.1/tcp/7500/p2p/12D3KooWBmnccCy4XAvvUgZkHsPsk95bu8uLVmLLTv291AMZRwud\"]\n",
            dir.path().join("data")
        ),
    )
    .expect("write");
    let o = run(
        &[
            "node",
            "run",
            "--config",
            good.to_str().expect("utf-8"),
            "--check",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("capacity 2.00 GiB") && text(&o).contains("1 bootstrap peer"),
        "{}",
        text(&o)
    );
    assert!(
        !dir.path().join("data").exists(),
        "--check must not create the data dir"
    );

    for (body, needle) in [
        ("data_dir = \"/x\"\ncolour = \"blue\"\n", "unknown field"),
        ("data_dir = \"/x\"\ncapacity = \"lots\"\n", "not a size"),
        (
            "data_dir = \"/x\"\npeers = [\"/ip4/1.2.3.4/tcp/1\"]\n",
            "/p2p/",
        ),
        ("listen = \"127.0.0.1:1\"\n", "no data directory"),
        ("data_dir = \"/x\"\nhttp = \"localhost\"\n", "not IP:PORT"),
    ] {
        let f = dir.path().join("bad.toml");
        std::fs::write(&f, body).expect("write");
        let o = run(
            &[
                "node",
                "run",
                "--config",
                f.to_str().expect("utf-8"),
                "--check",
            ],
            &[],
        );
        assert!(!o.status.success(), "accepted {body:?}");
        assert!(text(&o).contains(needle), "{body:?} -> {}", text(&o));
    }
}
