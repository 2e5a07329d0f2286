//! The libp2p side: one behaviour for nodes and clients, and the plumbing that turns
//! request-response into `async fn request(..) -> Response`.

use std::{collections::HashMap, time::Duration};

use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, Transport, connection_limits,
    core::transport::{
        DialOpts as TransportDialOpts, ListenerId, PortUse, TransportError, TransportEvent,
    },
    gossipsub, identify,
    identity::Keypair,
    kad, mdns, noise, request_response,
    swarm::{NetworkBehaviour, behaviour::toggle::Toggle},
    tcp, yamux,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    NetError,
    codec::CountingCodec,
    keep_alive::{Keep, Quiet},
    metrics::NetMetrics,
    wire::{self, Request, Response},
};

/// How long a control request may take, including a `Hold` that fetches its piece.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Capacity of every command channel into a swarm task.
pub(crate) const COMMAND_QUEUE: usize = 256;

/// Most connections a node accepts from others at once, and being set up at once: what
/// a node holds needs its co-holders, its routing table and short-lived asks, far fewer.
const MAX_INCOMING: u32 = 1024;
const MAX_PENDING_INCOMING: u32 = 128;
/// Most connections with one peer (both sides may dial at once, and a redial may overlap
/// a closing one).
const MAX_PER_PEER: u32 = 4;

/// gossipsub's own mesh degree.
pub(crate) const DEFAULT_MESH: usize = 6;
/// Most DHT records a node stores for others.
pub const MAX_DHT_RECORDS: usize = 1 << 16;
/// Messages gossipsub queues for one connection, half of them forwards and gossip.
/// gossipsub allocates the forwarding half of this queue for every connection at once;
/// at its default (5000) that was about 0.5 MiB per connection, most of a node's heap
/// at 30 peers. Cairn's topics carry ids and small batches; past this, forwards to a
/// slow peer are dropped (gossip repairs them).
const GOSSIP_QUEUE: usize = 256;

/// How long a client's idle connection stays open.
const CLIENT_IDLE: Duration = Duration::from_secs(300);

/// Everything a Cairn peer speaks on libp2p.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) limits: connection_limits::Behaviour,
    pub(crate) keep: Keep,
    pub(crate) control: request_response::Behaviour<CountingCodec>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(crate) gossip: Quiet<gossipsub::Behaviour>,
    pub(crate) mdns: Toggle<mdns::tokio::Behaviour>,
}

/// What a swarm is for: a node serves the control protocol and counts as a peer of the
/// network; a client only asks, so identify does not list the protocol for it and nodes
/// never take it for one of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Node {
        mdns: bool,
        idle: Duration,
        /// gossipsub's mesh degree (D): how many peers each message is pushed to.
        mesh: usize,
    },
    Client,
}

/// Builds a swarm over TCP with noise and yamux, counting its traffic into `metrics`.
/// A node's connections close once idle for `idle` ([`keep_alive`](super::keep_alive)
/// says which stay).
pub(crate) fn build(
    keypair: Keypair,
    role: Role,
    metrics: &NetMetrics,
) -> Result<Swarm<Behaviour>, NetError> {
    let idle = match role {
        Role::Node { idle, .. } => idle,
        Role::Client => CLIENT_IDLE,
    };
    let mut registry = metrics.registry();
    let net = |what: &'static str| {
        move |e: &dyn std::fmt::Display| NetError::Setup(format!("{what}: {e}"))
    };
    let swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_other_transport(|key| {
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                FreshPorts(tcp::tokio::Transport::new(
                    tcp::Config::default().nodelay(true),
                ))
                .upgrade(libp2p::core::upgrade::Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default()),
            )
        })
        .map_err(|e| net("tcp transport")(&e))?
        .with_bandwidth_metrics(&mut registry)
        .with_behaviour(|key| {
            let peer = key.public().to_peer_id();
            let codec = CountingCodec::new(metrics.control_bytes());
            let control = request_response::Behaviour::with_codec(
                codec,
                [(
                    StreamProtocol::new(wire::CONTROL_PROTOCOL),
                    match role {
                        Role::Node { .. } => request_response::ProtocolSupport::Full,
                        Role::Client => request_response::ProtocolSupport::Outbound,
                    },
                )],
                request_response::Config::default()
                    .with_request_timeout(REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(256),
            );
            let identify =
                identify::Behaviour::new(identify::Config::new("/cairn/1".into(), key.public()));
            let mut kcfg = kad::Config::new(StreamProtocol::new(wire::KAD_PROTOCOL));
            kcfg.set_query_timeout(Duration::from_secs(30));
            if role == Role::Client {
                // A client walks the DHT when it samples the network, not every 5 minutes.
                kcfg.set_periodic_bootstrap_interval(None);
            }
            // Records others ask this node to store are checked before they are kept
            // (`Command::StoreRecord`): only placement records of known stripes, signed by
            // their publishers. Provider records are not used, so none are kept.
            kcfg.set_record_filtering(kad::StoreInserts::FilterBoth);
            // A placement record of the widest stripe must fit in one message.
            kcfg.set_max_packet_size(crate::location::MAX_PLACEMENT_LEN + 4096);
            let store = kad::store::MemoryStore::with_config(
                peer,
                kad::store::MemoryStoreConfig {
                    max_provided_keys: 0,
                    max_records: MAX_DHT_RECORDS,
                    max_providers_per_key: 0,
                    // The store refuses a value of `max_value_bytes` itself.
                    max_value_bytes: crate::location::MAX_PLACEMENT_LEN + 1,
                },
            );
            let mut kad = kad::Behaviour::with_config(peer, store, kcfg);
            kad.set_mode(Some(match role {
                Role::Node { .. } => kad::Mode::Server,
                Role::Client => kad::Mode::Client,
            }));
            let d = match role {
                Role::Node { mesh, .. } => mesh.max(1),
                Role::Client => DEFAULT_MESH,
            };
            let gcfg = gossipsub::ConfigBuilder::default()
                // gossipsub's defaults at D = 6 (5, 6, 12, 2 and 4), scaled with D.
                .mesh_n(d)
                .mesh_n_low(d.saturating_sub(1).max(1))
                .mesh_n_high(d.saturating_mul(2))
                .mesh_outbound_min((d / 2).min(2))
                // Above D_hi it keeps this many best peers: no more than D (gossipsub
                // subtracts it from the peers it has past D_hi).
                .retain_scores(d.min(4))
                .max_transmit_size(wire::MAX_GOSSIP)
                .connection_handler_queue_len(GOSSIP_QUEUE)
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                // Nothing is forwarded until the node has judged it (`on_gossip`):
                // what a node would not take itself, it does not pass on.
                .validate_messages()
                .build()
                .map_err(|e| Box::new(std::io::Error::other(e.to_string())))?;
            let gossip = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gcfg,
            )
            .map_err(|e| Box::new(std::io::Error::other(e)))?
            .with_metrics(
                registry.sub_registry_with_prefix("cairn_gossip"),
                // Labels only for the two topics this node subscribes to: a stranger
                // publishing on topics of its own makes no metric.
                gossipsub::MetricsConfig {
                    max_topics: 2,
                    max_never_subscribed_topics: 0,
                    ..gossipsub::MetricsConfig::default()
                },
            );
            let mdns = if matches!(role, Role::Node { mdns: true, .. }) {
                Some(mdns::tokio::Behaviour::new(mdns::Config::default(), peer)?)
            } else {
                None
            };
            let limits = connection_limits::Behaviour::new(
                connection_limits::ConnectionLimits::default()
                    .with_max_established_incoming(Some(MAX_INCOMING))
                    .with_max_pending_incoming(Some(MAX_PENDING_INCOMING))
                    .with_max_established_per_peer(Some(MAX_PER_PEER)),
            );
            Ok(Behaviour {
                limits,
                keep: Keep::default(),
                control,
                identify,
                kad,
                gossip: Quiet(gossip),
                mdns: mdns.into(),
            })
        })
        .map_err(|e| net("behaviour")(&e))?
        .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
        .build();
    Ok(swarm)
}

/// The peers a DHT walk found, each with the addresses it learnt.
pub(crate) type Found = Vec<(PeerId, Vec<Multiaddr>)>;

/// DHT walks in flight, by query: a client's sample of the network.
#[derive(Default)]
pub(crate) struct Walks(HashMap<kad::QueryId, oneshot::Sender<Found>>);

impl Walks {
    /// Starts a walk towards `key`.
    pub(crate) fn start(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        key: [u8; 32],
        reply: oneshot::Sender<Found>,
    ) {
        let id = swarm.behaviour_mut().kad.get_closest_peers(key.to_vec());
        self.0.insert(id, reply);
    }

    /// Answers the walk a Kademlia event finishes (one that timed out gives what it
    /// found), at most [`wire::MAX_DATA_ADDRS`] addresses per peer.
    pub(crate) fn on_event(&mut self, event: &kad::Event) {
        let kad::Event::OutboundQueryProgressed {
            id,
            result: kad::QueryResult::GetClosestPeers(r),
            step,
            ..
        } = event
        else {
            return;
        };
        if !step.last {
            return;
        }
        let Some(reply) = self.0.remove(id) else {
            return;
        };
        let peers = match r {
            Ok(kad::GetClosestPeersOk { peers, .. })
            | Err(kad::GetClosestPeersError::Timeout { peers, .. }) => peers,
        };
        let found = peers
            .iter()
            .map(|p| {
                let addrs = p.addrs.iter().take(wire::MAX_DATA_ADDRS).cloned().collect();
                (p.peer_id, addrs)
            })
            .collect();
        reply.send(found).ok();
    }
}

/// TCP that dials from a port of its own. libp2p dials from the listening port by default
/// (port reuse, for hole punching, which Cairn does not do): that fails with "address in
/// use" whenever the port is also some other socket's ephemeral port on the machine (then
/// every dial of the node fails) or the peer is dialing this node at the same moment.
struct FreshPorts<T>(T);

impl<T: Transport + Unpin> Transport for FreshPorts<T> {
    type Output = T::Output;
    type Error = T::Error;
    type ListenerUpgrade = T::ListenerUpgrade;
    type Dial = T::Dial;

    fn listen_on(
        &mut self,
        id: ListenerId,
        addr: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.0.listen_on(id, addr)
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.0.remove_listener(id)
    }

    fn dial(
        &mut self,
        addr: Multiaddr,
        mut opts: TransportDialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        opts.port_use = PortUse::New;
        self.0.dial(addr, opts)
    }

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll(cx)
    }
}

/// A request waiting for its response.
pub(crate) type Reply = oneshot::Sender<Result<Response, NetError>>;

/// Outbound requests in flight, by id.
#[derive(Default)]
pub(crate) struct Pending(HashMap<request_response::OutboundRequestId, Reply>);

impl Pending {
    pub(crate) fn send(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Request,
        reply: Reply,
    ) {
        let id = swarm
            .behaviour_mut()
            .control
            .send_request_with_addresses(&peer, request, addrs);
        self.0.insert(id, reply);
    }

    /// Routes a request-response event that answers one of ours. Returns inbound requests
    /// for the caller to handle.
    pub(crate) fn on_event(
        &mut self,
        event: request_response::Event<Request, Response>,
    ) -> Option<(PeerId, Request, request_response::ResponseChannel<Response>)> {
        match event {
            request_response::Event::Message { peer, message, .. } => match message {
                request_response::Message::Request {
                    request, channel, ..
                } => return Some((peer, request, channel)),
                request_response::Message::Response {
                    request_id,
                    response,
                } => {
                    if let Some(tx) = self.0.remove(&request_id) {
                        tx.send(Ok(response)).ok();
                    }
                }
            },
            request_response::Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                if let Some(tx) = self.0.remove(&request_id) {
                    tx.send(Err(NetError::Unreachable {
                        peer: peer.to_string(),
                        reason: error.to_string(),
                    }))
                    .ok();
                }
            }
            request_response::Event::InboundFailure { .. }
            | request_response::Event::ResponseSent { .. } => {}
        }
        None
    }
}

/// The peer id at the end of a multiaddr (`.../p2p/<id>`), if any.
pub fn peer_of(addr: &Multiaddr) -> Option<PeerId> {
    addr.iter().last().and_then(|p| match p {
        libp2p::multiaddr::Protocol::P2p(id) => Some(id),
        _ => None,
    })
}

/// The IP address a multiaddr starts from, if it names one.
pub fn ip_of(addr: &Multiaddr) -> Option<std::net::IpAddr> {
    addr.iter().find_map(|p| match p {
        libp2p::multiaddr::Protocol::Ip4(ip) => Some(ip.into()),
        libp2p::multiaddr::Protocol::Ip6(ip) => Some(ip.into()),
        _ => None,
    })
}

/// Why a record was not stored in the DHT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PutFailed {
    /// No close peer took it in time (a loaded or still-forming network): worth asking
    /// again.
    #[error("no peer took the record in time")]
    NoPeerInTime,
    /// This node's own record store refused it (full): asking again does not help.
    #[error("this node's DHT record store is full")]
    StoreFull,
    /// The swarm task is gone: the node is shutting down.
    #[error("the node is shutting down")]
    ShuttingDown,
}

/// Commands into a swarm task.
pub(crate) enum Command {
    Request {
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Request,
        reply: Reply,
    },
    Respond {
        channel: request_response::ResponseChannel<Response>,
        response: Response,
    },
    Gossip {
        topic: &'static str,
        data: Vec<u8>,
    },
    /// Store a record in the DHT (here and at the closest peers); with a reply, say
    /// whether it was stored here and sent to the closest peers (who answer before they
    /// have checked it, so their answer says nothing more).
    PutRecord {
        record: kad::Record,
        reply: Option<oneshot::Sender<Result<(), PutFailed>>>,
    },
    /// Records from the DHT: this node's own copy, or what a lookup finds (a few).
    GetRecord {
        key: kad::RecordKey,
        reply: oneshot::Sender<Vec<Vec<u8>>>,
    },
    /// Keep a record another peer asked this node to store, now that it checked it.
    StoreRecord(kad::Record),
    /// This node's DHT copy of a record, if it has one (no lookup).
    LocalRecord {
        key: kad::RecordKey,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
    /// Keep these peers connected, and no others beyond their idle time.
    KeepConnected(std::collections::HashSet<PeerId>),
    /// A DHT walk: the nodes closest to `key`, with the addresses the walk learnt (a
    /// client's, for sampling the network; a node answers none).
    ClosestPeers {
        key: [u8; 32],
        reply: oneshot::Sender<Found>,
    },
    /// The IP address each of these peers is connected at now, as this side dialed or
    /// accepted it (a client's; a node answers none).
    RemoteIps {
        peers: Vec<PeerId>,
        reply: oneshot::Sender<Vec<Option<std::net::IpAddr>>>,
    },
    /// The peers connected now, and those of them in the gossip mesh.
    #[cfg(test)]
    Connections(
        oneshot::Sender<(
            std::collections::HashSet<PeerId>,
            std::collections::HashSet<PeerId>,
        )>,
    ),
}

/// A cheap handle for talking to a swarm task.
#[derive(Clone, Debug)]
pub struct Control {
    pub(crate) tx: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Command")
    }
}

impl Control {
    /// Sends `request` to `peer` (dialing `addrs` if not connected) and waits for the answer.
    pub async fn request(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        request: Request,
    ) -> Result<Response, NetError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Command::Request {
                peer,
                addrs,
                request,
                reply,
            })
            .await
            .map_err(|_| NetError::Stopped)?;
        rx.await.map_err(|_| NetError::Stopped)?
    }

    pub(crate) async fn send(&self, cmd: Command) -> Result<(), NetError> {
        self.tx.send(cmd).await.map_err(|_| NetError::Stopped)
    }
}
