//! The network: storage nodes and the clients that push to and pull from them.
//!
//! - [`wire`]: control-plane messages and their limits.
//! - [`data`]: the data plane, pieces over iroh with the iroh-blobs protocol.
//! - `swarm`: the libp2p behaviour (request-response, identify, Kademlia, gossipsub, mDNS).
//! - [`node`]: a storage node: the swarm loop, request handlers, holdings, catch-up.
//! - [`client`]: push and pull for researchers, and the network view.
//! - [`placement`] and [`fetch`]: sans-IO decisions (where pieces go, which to fetch);
//!   [`domain`]: the failure domains placement keeps pieces of a stripe apart on.
//! - [`spot_check`]: a push's acknowledgements, challenged before it publishes.

pub mod budget;
pub mod client;
mod codec;
pub mod data;
pub mod domain;
pub mod fetch;
pub mod identity;
mod keep_alive;
pub mod metrics;
pub mod node;
pub mod placement;
pub mod reader;
pub mod spot_check;
mod swarm;
pub mod wire;

#[cfg(test)]
mod tests;

pub use client::{Client, ClientError, NextVersion, PullReport, PushReport, StripePlacement};
pub use data::{DataError, DataPlane, PieceSource, WhenFull};
pub use identity::NodeKey;
pub use node::{DEFAULT_HOLDER_ENTRIES, DEFAULT_IDLE_TIMEOUT, Node, NodeConfig, NodeStatus};
pub use reader::{Reader, ReaderStats, StripeKey};
pub use swarm::{Control, MAX_DHT_RECORDS, ip_of, peer_of};

/// Errors of the network layer.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The swarm could not be set up.
    #[error("network setup failed: {0}")]
    Setup(String),
    /// A listen address was refused.
    #[error("cannot listen on {addr}: {reason}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A peer could not be reached or did not answer.
    #[error("peer {peer} did not answer: {reason}")]
    Unreachable {
        /// The peer.
        peer: String,
        /// Why.
        reason: String,
    },
    /// A peer answered with an error.
    #[error("peer {peer} refused: {message} ({code:?})")]
    Refused {
        /// The peer.
        peer: String,
        /// Its code.
        code: wire::ErrorCode,
        /// Its message.
        message: String,
    },
    /// A peer answered with something that does not fit the question.
    #[error("peer {peer} answered with an unexpected message")]
    Unexpected {
        /// The peer.
        peer: String,
    },
    /// The swarm task has stopped.
    #[error("the network task has stopped")]
    Stopped,
    /// The data plane failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The operator label given is not one.
    #[error(transparent)]
    Operator(#[from] domain::BadOperator),
    /// The identity key could not be read or written.
    #[error("identity key {path}: {reason}")]
    Identity {
        /// The key file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// The libp2p peer id of a node: the same ed25519 key. `None` if the id is no key.
pub(crate) fn peer_of_node(id: &crate::ids::NodeId) -> Option<libp2p::PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(&id.0).ok()?;
    Some(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

/// The control-plane addresses of a node whose data plane listens at `data`: libp2p
/// listens on TCP at the same IP and port as the data plane's UDP.
pub(crate) fn control_addrs(data: &[std::net::SocketAddr]) -> Vec<libp2p::Multiaddr> {
    use libp2p::multiaddr::Protocol;
    data.iter()
        .map(|a| {
            let ip = match a.ip() {
                std::net::IpAddr::V4(ip) => Protocol::Ip4(ip),
                std::net::IpAddr::V6(ip) => Protocol::Ip6(ip),
            };
            libp2p::Multiaddr::empty()
                .with(ip)
                .with(Protocol::Tcp(a.port()))
        })
        .collect()
}

/// The data-plane addresses of a node whose control plane listens at `control`: the
/// inverse of [`control_addrs`].
pub(crate) fn data_addrs(control: &[libp2p::Multiaddr]) -> Vec<std::net::SocketAddr> {
    use libp2p::multiaddr::Protocol;
    control
        .iter()
        .filter_map(|a| {
            let mut ip = None;
            let mut port = None;
            for p in a {
                match p {
                    Protocol::Ip4(v) => ip = Some(std::net::IpAddr::V4(v)),
                    Protocol::Ip6(v) => ip = Some(std::net::IpAddr::V6(v)),
                    Protocol::Tcp(p) => port = Some(p),
                    _ => {}
                }
            }
            Some(std::net::SocketAddr::new(ip?, port?))
        })
        .collect()
}

/// `mean` scaled by a uniform draw from [0.5, 1.5), so timers and retries of many nodes
/// do not fall into step.
pub(crate) fn jittered(mean: std::time::Duration) -> std::time::Duration {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).ok();
    let u = (u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64;
    mean.mul_f64(0.5 + u)
}
