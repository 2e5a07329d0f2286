//! Read after write on the scale part's largest network: each round pushes a dataset of
//! its own through one node, and the moment the push returns reads it through three
//! others (an HTTP range, a training run, a pull), with no sleep and no retry.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{BenchNet, CSV_EPOCH, cairn, client_env, push_with, write_csv, xorshift};

/// Bytes of CSV in each round's dataset.
const BYTES: u64 = 200_000;
/// The rounds' block size: stripes of `k` such blocks (128 KiB at k = 4), so a dataset
/// spans two stripes and the HTTP range below crosses from one to the next.
const BLOCK: &str = "32KiB";

/// How the rounds went.
#[derive(Debug, Clone, Serialize)]
pub(super) struct ReadAfterWrite {
    nodes: usize,
    rounds: usize,
    /// Rounds whose push returned.
    pushed: usize,
    /// Rounds whose push returned and whose every read succeeded at once: the range and
    /// the pull returned the pushed bytes, the training run finished its epoch.
    pub(super) held: usize,
    /// What failed first, if anything did: the round and the error.
    first_failure: Option<String>,
}

/// Runs `rounds` rounds on `net`, with the client's config dir and data under `root`.
pub(super) fn read_after_write(
    net: &BenchNet,
    root: &Path,
    rounds: usize,
) -> Result<ReadAfterWrite> {
    let nodes = &net.net.nodes;
    let n = nodes.len();
    let config = root.join(format!("raw-{n}-config"));
    let config = config.to_str().context("work dir is not UTF-8")?;
    let env = |i: usize| client_env(&nodes[i].peer, config);
    let mut out = ReadAfterWrite {
        nodes: n,
        rounds,
        pushed: 0,
        held: 0,
        first_failure: None,
    };
    for i in 0..rounds {
        // The push goes through node 0; the reads through three other nodes, a different
        // three each round.
        let [http, train, pull] = [0, 1, 2].map(|j| (i * 3 + j) % (n - 1) + 1);
        let mut round = || -> Result<()> {
            let src = root.join(format!("raw-{n}-{i}"));
            std::fs::create_dir_all(&src)?;
            let file = src.join("part.csv");
            write_csv(&file, &mut xorshift(7000 + i as u64), BYTES)?;
            let data = std::fs::read(&file)?;
            let name = format!("bench/raw-{i}");
            push_with(
                src.to_str().context("UTF-8")?,
                &name,
                &["--block-size", BLOCK],
                &env(0),
            )?;
            out.pushed += 1;

            let (from, to) = (
                data.len() / 3,
                (data.len() / 3 + 70_000).min(data.len() - 1),
            );
            let base = &nodes[http].http;
            let mut r = ureq::get(format!("{base}/v1/datasets/{name}/resolve/latest/part.csv"))
                .header("Range", format!("bytes={from}-{to}"))
                .call()
                .with_context(|| format!("the HTTP range through {base} failed"))?;
            let status = r.status().as_u16();
            let body = r.body_mut().with_config().limit(1 << 20).read_to_vec()?;
            if status != 206 {
                bail!("the HTTP range through {base} answered {status}, not 206");
            }
            if body != data[from..=to] {
                bail!("the HTTP range through {base} returned other bytes");
            }

            let mut args = vec!["train", "--dataset", &name, "--batch-size", "64"];
            args.extend(CSV_EPOCH);
            cairn(&args, &env(train))?;

            let dest = root.join(format!("raw-{n}-{i}-out"));
            cairn(
                &["dataset", "pull", &name, dest.to_str().context("UTF-8")?],
                &env(pull),
            )?;
            if std::fs::read(dest.join("part.csv"))? != data {
                bail!("the pull through {} wrote other bytes", nodes[pull].http);
            }
            std::fs::remove_dir_all(&src).ok();
            std::fs::remove_dir_all(&dest).ok();
            Ok(())
        };
        match round() {
            Ok(()) => out.held += 1,
            Err(e) => {
                let e = format!("round {i}: {e:#}");
                println!("  read after write failed, {e}");
                out.first_failure.get_or_insert(e);
            }
        }
    }
    println!(
        "  read after write at {n} nodes: {} of {rounds} rounds read at once (HTTP range, training, pull); {} pushes returned",
        out.held, out.pushed
    );
    Ok(out)
}
