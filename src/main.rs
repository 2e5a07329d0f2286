//! `cairn`: the one command-line binary. It parses arguments and dispatches; everything it
//! runs lives in the library crates.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod demo;

#[derive(Debug, Parser)]
#[command(
    name = "cairn",
    version,
    about = "Decentralized storage for AI training data"
)]
struct Cli {
    /// Log filter (also RUST_LOG), e.g. `info` or `storage_node=debug`.
    #[arg(long, global = true, default_value = "warn", env = "CAIRN_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole storage engine end to end on this machine: generate a dataset, publish
    /// it across local storage nodes with erasure coding, audit every piece with Merkle
    /// proofs, destroy nodes and corrupt a piece, scrub, and pull the dataset back intact.
    Demo(demo::DemoArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .map_err(|e| anyhow::anyhow!("bad --log filter {:?}: {e}", cli.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Demo(args) => demo::run(args),
    }
}

/// A directory the user named, or a fresh temporary one removed at exit.
pub(crate) enum WorkDir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl WorkDir {
    pub(crate) fn new(dir: Option<PathBuf>) -> Result<Self> {
        Ok(match dir {
            Some(d) => {
                std::fs::create_dir_all(&d)?;
                Self::Kept(d)
            }
            None => Self::Temp(tempfile::Builder::new().prefix("cairn-demo-").tempdir()?),
        })
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        match self {
            Self::Kept(p) => p,
            Self::Temp(t) => t.path(),
        }
    }
}
