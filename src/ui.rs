//! What the commands share: progress bars, sizes, addresses, the user's config dir.

use std::{net::SocketAddr, path::PathBuf, str::FromStr};

use anyhow::{Context, Result, anyhow, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use libp2p::Multiaddr;

/// A byte-count bar on stderr; drawn only on a terminal, silent when piped.
pub(crate) fn bytes_bar(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "  {prefix:<8} [{bar:32}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_prefix(what.to_string());
    bar
}

/// A size such as `500GiB`, `2TB`, `10MiB` or `4096`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Size(pub(crate) u64);

impl FromStr for Size {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        let num: f64 = num
            .parse()
            .map_err(|_| anyhow!("{s:?} is not a size; write e.g. 500GiB, 2TB or 1048576"))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            "t" | "tb" => 1_000_000_000_000,
            "tib" => 1 << 40,
            "p" | "pb" => 1_000_000_000_000_000,
            "pib" => 1 << 50,
            u => bail!(
                "unknown size unit {u:?} in {s:?}; use B, KB, KiB, MB, MiB, GB, GiB, TB, TiB, PB or PiB"
            ),
        };
        let v = num * mult as f64;
        if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
            bail!("size {s:?} is out of range");
        }
        Ok(Self(v as u64))
    }
}

/// Formats bytes for people.
pub(crate) fn human(b: u64) -> String {
    indicatif::BinaryBytes(b).to_string()
}

/// A libp2p listen address from `IP:PORT` or a multiaddr.
pub(crate) fn listen_addr(s: &str) -> Result<Multiaddr> {
    if let Ok(sa) = s.parse::<SocketAddr>() {
        let ip = match sa.ip() {
            std::net::IpAddr::V4(ip) => format!("/ip4/{ip}"),
            std::net::IpAddr::V6(ip) => format!("/ip6/{ip}"),
        };
        return Ok(format!("{ip}/tcp/{}", sa.port()).parse()?);
    }
    s.parse().with_context(|| {
        format!("{s:?} is neither IP:PORT nor a multiaddr like /ip4/0.0.0.0/tcp/7420")
    })
}

/// A peer address for `--peer`: a multiaddr ending in `/p2p/<peer id>`.
pub(crate) fn peer_addr(s: &str) -> Result<Multiaddr> {
    let a: Multiaddr = s.parse().with_context(|| {
        format!("{s:?} is not a peer address like /ip4/127.0.0.1/tcp/7420/p2p/12D3Koo...")
    })?;
    if storage_node::net::peer_of(&a).is_none() {
        bail!("peer address {s} must end in /p2p/<peer id> (see `cairn node status`)");
    }
    Ok(a)
}

/// The bootstrap peer from `--peer` or `CAIRN_PEER`.
pub(crate) fn bootstrap(peer: Option<&str>) -> Result<Multiaddr> {
    let s = match peer {
        Some(p) => p.to_string(),
        None => std::env::var("CAIRN_PEER").map_err(|_| {
            anyhow!("no network given: pass --peer ADDR or set CAIRN_PEER (e.g. a `peer` from DIR/network.json)")
        })?,
    };
    peer_addr(&s)
}

/// The client's config dir: `CAIRN_CONFIG_DIR`, else `$XDG_CONFIG_HOME/cairn`, else
/// `~/.config/cairn`.
pub(crate) fn config_dir() -> Result<PathBuf> {
    if let Some(d) = std::env::var_os("CAIRN_CONFIG_DIR") {
        return Ok(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CONFIG_HOME") {
        return Ok(PathBuf::from(d).join("cairn"));
    }
    let home = std::env::var_os("HOME")
        .ok_or_else(|| anyhow!("cannot find a config dir: set CAIRN_CONFIG_DIR or HOME"))?;
    Ok(PathBuf::from(home).join(".config").join("cairn"))
}

/// A multi-threaded runtime for the async commands.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("500GiB".parse::<Size>().unwrap().0, 500 << 30);
        assert_eq!("2TB".parse::<Size>().unwrap().0, 2_000_000_000_000);
        assert_eq!("1.5 MiB".parse::<Size>().unwrap().0, 3 << 19);
        assert_eq!("4096".parse::<Size>().unwrap().0, 4096);
        assert!("lots".parse::<Size>().is_err());
        assert!("5 parsecs".parse::<Size>().is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            listen_addr("127.0.0.1:7420").unwrap().to_string(),
            "/ip4/127.0.0.1/tcp/7420"
        );
        assert!(listen_addr("nonsense").is_err());
        assert!(peer_addr("/ip4/127.0.0.1/tcp/1").is_err());
    }
}
