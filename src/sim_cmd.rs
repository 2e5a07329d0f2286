//! `cairn sim`: the durability model of `sim` (`durability`) and its per-node cost model
//! (`scale`) from the command line.

use std::time::Instant;

mod scale;
pub(crate) use scale::{ScaleArgs, scale};

use anyhow::{Context, Result, bail};
use clap::Args;

/// Defaults are Cairn's default code (16 + 8, `erasure::DEFAULT_K/M`) under heavy churn;
/// see `sim::Params`.
#[derive(Debug, Args)]
pub(crate) struct DurabilityArgs {
    /// Data pieces per stripe (any `k` of `k + m` rebuild it).
    #[arg(long, default_value_t = storage_node::erasure::DEFAULT_K)]
    k: u16,
    /// Parity pieces per stripe (how many losses a stripe survives).
    #[arg(long, default_value_t = storage_node::erasure::DEFAULT_M)]
    m: u16,
    /// Nodes in the network (scales network-wide repair traffic).
    #[arg(long, default_value_t = 1000)]
    nodes: u32,
    /// Mean time to permanent failure of a node, in days.
    #[arg(long = "node-mttf", value_name = "DAYS", default_value_t = 365.0)]
    node_mttf: f64,
    /// How long one repair takes, in hours.
    #[arg(long, value_name = "H", default_value_t = 12.0)]
    repair_hours: f64,
    /// Audit period in hours: a lost piece is noticed up to this long after its node dies.
    #[arg(long, value_name = "H", default_value_t = 24.0)]
    audit_hours: f64,
    /// Repair a stripe below this many healthy pieces [default: k + ceil(m/2)].
    #[arg(long)]
    threshold: Option<u16>,
    /// Horizon of one simulated stripe's life, in years.
    #[arg(long, value_name = "Y", default_value_t = 1.0)]
    years: f64,
    /// Stripe lifetimes simulated.
    #[arg(long, value_name = "T", default_value_t = 100_000)]
    trials: u64,
    /// Seed: the same arguments and seed print the same figures.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Piece size in MiB (turns piece counts into bytes).
    #[arg(long, default_value_t = 64.0)]
    piece_mib: f64,
    /// Piece data each node stores, in TiB (scales repair traffic).
    #[arg(long, default_value_t = 1.0)]
    stored_tib: f64,
    /// Failure domains (operators, IPv4 /24s, IPv6 /48s) the nodes are spread over evenly;
    /// 0: every node its own domain.
    #[arg(long, value_name = "N", default_value_t = 0)]
    domains: u32,
    /// Mean time between losses of a whole failure domain, in days (every piece on every
    /// node of the domain at once) [default: never].
    #[arg(
        long = "domain-mttf",
        visible_alias = "domain-mttf-days",
        value_name = "DAYS"
    )]
    domain_mttf: Option<f64>,
    /// Place a stripe's pieces on random nodes, several possibly in one domain, instead
    /// of one piece per domain (Cairn's rule, which needs at least k + m domains).
    #[arg(long)]
    no_spread_domains: bool,
    /// Also run the other placement (pieces spread over domains, or at random) and print
    /// both in a Markdown table.
    #[arg(long)]
    compare_placement: bool,
    /// Also compare other codes under the same churn, e.g. `10+4,10+6,16+8,29+51`
    /// (each with its default threshold); prints a Markdown table.
    #[arg(long, value_name = "K+M,...", value_delimiter = ',')]
    compare: Vec<String>,
}

pub(crate) fn durability(a: DurabilityArgs) -> Result<()> {
    let params = sim::Params {
        k: a.k,
        m: a.m,
        nodes: a.nodes,
        node_mttf_days: a.node_mttf,
        repair_hours: a.repair_hours,
        audit_hours: a.audit_hours,
        threshold: a.threshold,
        years: a.years,
        trials: a.trials,
        seed: a.seed,
        piece_mib: a.piece_mib,
        stored_tib_per_node: a.stored_tib,
        domains: a.domains,
        domain_mttf_days: a.domain_mttf.unwrap_or(f64::INFINITY),
        spread_domains: !a.no_spread_domains,
    };
    let codes = a
        .compare
        .iter()
        .map(|c| parse_code(c))
        .collect::<Result<Vec<_>>>()?;
    let t0 = Instant::now();
    let report = sim::run(&params).context("cannot simulate these parameters")?;
    println!("{report}");
    println!("took {:.1} s", t0.elapsed().as_secs_f64());
    if a.compare_placement {
        let other = sim::Params {
            spread_domains: !params.spread_domains,
            ..params.clone()
        };
        let t0 = Instant::now();
        let other = sim::run(&other).context("cannot simulate the other placement")?;
        let (spread, random) = if params.spread_domains {
            (report, other)
        } else {
            (other, report)
        };
        println!();
        print!("{}", sim::markdown_table(&[spread, random]));
        println!("took {:.1} s", t0.elapsed().as_secs_f64());
    }
    if !codes.is_empty() {
        let base = sim::Params {
            threshold: None,
            ..params
        };
        let t0 = Instant::now();
        let reports = sim::compare_codes(&base, &codes).context("cannot compare these codes")?;
        println!();
        print!("{}", sim::markdown_table(&reports));
        println!("took {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok(())
}

/// `"10+4"` → `(10, 4)`.
fn parse_code(s: &str) -> Result<(u16, u16)> {
    let Some((k, m)) = s.trim().split_once('+') else {
        bail!("--compare takes codes like 10+4, got {s:?}");
    };
    let num = |x: &str| {
        x.trim()
            .parse::<u16>()
            .with_context(|| format!("--compare: {x:?} in {s:?} is not a piece count"))
    };
    Ok((num(k)?, num(m)?))
}

#[cfg(test)]
mod tests {
    use super::parse_code;

    #[test]
    fn codes_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_code("10+4").unwrap(), (10, 4));
        assert_eq!(parse_code(" 29 + 51 ").unwrap(), (29, 51));
        for bad in ["10", "10+", "+4", "a+b", "10+70000"] {
            assert!(parse_code(bad).is_err(), "{bad}");
        }
    }
}
