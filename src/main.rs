//! `cairn`: the one command-line binary. It parses arguments and dispatches; everything it
//! runs lives in the library crates.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod bench_cmd;
mod dataset_cmd;
mod demo;
mod network_cmd;
mod node_cmd;
mod sim_cmd;
mod train_cmd;
mod ui;

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
    /// The main job on this machine, narrated: a local network of 6 nodes, a real dataset
    /// pushed and audited, a piece corrupted and a node killed, repair, and a model trained
    /// from shards streamed from the survivors. Cleans up after itself (also on Ctrl-C).
    Demo(demo::DemoArgs),
    /// Run a storage node, or ask one how it is doing.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Publish, fetch and inspect datasets on a network.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Start and stop a local network of node processes on 127.0.0.1.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Train a burn model on a dataset streamed from the network (or from --local files).
    /// A flag given twice takes its last value.
    #[command(args_override_self = true)]
    Train(Box<train_cmd::TrainArgs>),
    /// Model the network at scale.
    #[command(subcommand)]
    Sim(SimCommand),
    /// Measure the whole system on a local network, each figure beside a baseline taken
    /// in the same run: transfers, training, audits, repair, memory, kernels.
    Bench(bench_cmd::BenchArgs),
}

#[derive(Debug, Subcommand)]
enum SimCommand {
    /// Monte Carlo estimate of the chance a stripe is lost per year under node churn,
    /// audits and lazy repair, with a 95% interval, and the repair traffic per node.
    Durability(sim_cmd::DurabilityArgs),
    /// What one node costs (connections, tables, memory, idle traffic) in a network of
    /// a given size and data volume, by a closed-form model checked against the scale
    /// bench; by default 10,000 nodes holding 10 PB.
    Scale(sim_cmd::ScaleArgs),
}

#[derive(Debug, Subcommand)]
enum NodeCommand {
    /// Run a storage node until SIGINT or SIGTERM.
    Run(Box<node_cmd::RunArgs>),
    /// Identity, peers, pieces and capacity of a node.
    Status(node_cmd::StatusArgs),
    /// Bearer tokens that let HTTP clients publish through a node.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (once; the node keeps only its hash).
    Create(node_cmd::TokenArgs),
    /// List tokens by name.
    List(node_cmd::TokenArgs),
    /// Revoke a token by name.
    Revoke(node_cmd::TokenArgs),
}

#[derive(Debug, Subcommand)]
enum DatasetCommand {
    /// Encode a directory and publish it as a new version.
    Push(dataset_cmd::PushArgs),
    /// Fetch a version into a directory, verified.
    Pull(dataset_cmd::PullArgs),
    /// List the datasets on the network.
    Ls(dataset_cmd::PeerArg),
    /// Files, card, license and placement health of a version.
    Info(dataset_cmd::InfoArgs),
}

#[derive(Debug, Subcommand)]
enum NetworkCommand {
    /// Start N nodes on 127.0.0.1 and wait until they see each other.
    Up(network_cmd::UpArgs),
    /// Stop the nodes of a network started with `up`.
    Down(network_cmd::DirArgs),
    /// Every node of a local network: what it holds and serves, and its standing in the
    /// other nodes' audit ledgers.
    Status(network_cmd::StatusArgs),
    /// Start one node of a local network again (after it was killed).
    Restart(network_cmd::RestartArgs),
    /// Add a node to a local network (to replace a lost one, or for more room).
    Add(network_cmd::DirArgs),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cli.log))
        .map_err(|e| anyhow::anyhow!("bad --log filter {:?}: {e}", cli.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Node(NodeCommand::Run(a)) => node_cmd::run(*a),
        Command::Node(NodeCommand::Status(a)) => node_cmd::status(a),
        Command::Node(NodeCommand::Token(TokenCommand::Create(a))) => node_cmd::token_create(a),
        Command::Node(NodeCommand::Token(TokenCommand::List(a))) => node_cmd::token_list(a),
        Command::Node(NodeCommand::Token(TokenCommand::Revoke(a))) => node_cmd::token_revoke(a),
        Command::Dataset(DatasetCommand::Push(a)) => dataset_cmd::push(a),
        Command::Dataset(DatasetCommand::Pull(a)) => dataset_cmd::pull(a),
        Command::Dataset(DatasetCommand::Ls(a)) => dataset_cmd::ls(a),
        Command::Dataset(DatasetCommand::Info(a)) => dataset_cmd::info(a),
        Command::Network(NetworkCommand::Up(a)) => network_cmd::up(a),
        Command::Network(NetworkCommand::Down(a)) => network_cmd::down(a),
        Command::Network(NetworkCommand::Status(a)) => network_cmd::status(a),
        Command::Network(NetworkCommand::Restart(a)) => network_cmd::restart(a),
        Command::Network(NetworkCommand::Add(a)) => network_cmd::add_cmd(a),
        Command::Sim(SimCommand::Durability(a)) => sim_cmd::durability(a),
        Command::Sim(SimCommand::Scale(a)) => sim_cmd::scale(a),
        Command::Train(a) => train_cmd::run(*a),
        Command::Bench(a) => bench_cmd::run(a),
    }
}

/// A directory the user named, or a fresh temporary one removed at exit.
pub(crate) enum WorkDir {
    Kept(PathBuf),
    Temp(tempfile::TempDir),
}

impl WorkDir {
    pub(crate) fn new(dir: Option<PathBuf>) -> Result<Self> {
        Self::new_prefixed(dir, "cairn-demo-")
    }

    /// As [`WorkDir::new`], naming a temporary directory `prefix...`.
    pub(crate) fn new_prefixed(dir: Option<PathBuf>, prefix: &str) -> Result<Self> {
        Ok(match dir {
            Some(d) => {
                std::fs::create_dir_all(&d)?;
                Self::Kept(d)
            }
            None => Self::Temp(tempfile::Builder::new().prefix(prefix).tempdir()?),
        })
    }

    pub(crate) fn path(&self) -> &std::path::Path {
        match self {
            Self::Kept(p) => p,
            Self::Temp(t) => t.path(),
        }
    }
}
