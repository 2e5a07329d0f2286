//! A hostile peer, for tests only: a fresh key, the project's own libp2p stack and wire
//! formats, and nothing stored. It sends what an attacker would send: forged audit
//! records, repair claims, holdings announcements and control requests.
//!
//! Each [`Adversary`] is one identity with one swarm, run on a thread of its own, so a
//! test stays synchronous and can start as many identities as an attack needs.

#![allow(dead_code)] // each test uses a different part of the kit

use std::{thread::JoinHandle, time::Duration};

use ed25519_dalek::SigningKey;
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm,
    futures::StreamExt,
    gossipsub, identify, identity, kad, noise, request_response,
    swarm::{NetworkBehaviour, SwarmEvent},
    tcp, yamux,
};
use storage_node::{
    NodeId, PieceId,
    audit::{AuditRecord, Outcome, SignedRecord},
    net::wire::{self, Request, Response},
};
use tokio::sync::{mpsc, oneshot};

#[derive(NetworkBehaviour)]
struct Behaviour {
    gossip: gossipsub::Behaviour,
    identify: identify::Behaviour,
    /// Answers DHT walks, so that a pushing client that samples the network finds it.
    kad: kad::Behaviour<kad::store::MemoryStore>,
    control: request_response::cbor::Behaviour<Request, Response>,
}

/// A join waiting for its peers: whom (and where), until when, and whom to tell.
struct Joining {
    peers: Vec<(PeerId, Multiaddr)>,
    deadline: tokio::time::Instant,
    redial: tokio::time::Instant,
    reply: oneshot::Sender<Result<(), String>>,
}

/// How long a join may take, on a loaded machine.
const JOIN_TIME: Duration = Duration::from_secs(90);

enum Cmd {
    Join(Vec<Multiaddr>, oneshot::Sender<Result<(), String>>),
    Publish(&'static str, Vec<u8>, oneshot::Sender<Result<(), String>>),
    Request(PeerId, Request, oneshot::Sender<Result<Response, String>>),
}

/// One hostile identity.
pub(crate) struct Adversary {
    key: SigningKey,
    peer: PeerId,
    tx: Option<mpsc::Sender<Cmd>>,
    thread: Option<JoinHandle<()>>,
}

const TOPICS: [&str; 2] = [wire::MANIFEST_TOPIC, wire::REPAIRS_TOPIC];

/// How an adversary's swarm takes part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A client: it dials and publishes, and serves nothing.
    Plain,
    /// A storage node that stores nothing ([`Adversary::fake_node`]).
    FakeNode,
    /// A peer that serves the control protocol and answers nothing
    /// ([`Adversary::announcer`]).
    Announcer,
}

impl Adversary {
    /// A fresh identity: a key no node has seen.
    pub(crate) fn fresh() -> Self {
        Self::from_secret(fresh_secret())
    }

    /// The identity of `secret`.
    pub(crate) fn from_secret(secret: [u8; 32]) -> Self {
        Self::start(secret, Mode::Plain)
    }

    /// A fresh identity that poses as a storage node: it listens on 127.0.0.1, serves
    /// the control protocol, describes itself with room to spare, acknowledges every
    /// `Hold` as a piece it already has, and stores nothing.
    pub(crate) fn fake_node() -> Self {
        Self::start(fresh_secret(), Mode::FakeNode)
    }

    /// A fresh identity that connects like a node (it serves the control protocol, so a
    /// node counts it as a connected peer) but answers every request with an error: it is
    /// never offered pieces, and exists to announce holdings it does not have.
    pub(crate) fn announcer() -> Self {
        Self::start(fresh_secret(), Mode::Announcer)
    }

    fn start(secret: [u8; 32], mode: Mode) -> Self {
        let key = SigningKey::from_bytes(&secret);
        let kp = identity::Keypair::ed25519_from_bytes(secret).expect("an ed25519 secret");
        let peer = kp.public().to_peer_id();
        let (tx, rx) = mpsc::channel(64);
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            rt.block_on(run(kp, rx, mode));
        });
        Self {
            key,
            peer,
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    /// Its node id (its ed25519 key).
    pub(crate) fn node_id(&self) -> NodeId {
        NodeId(self.key.verifying_key().to_bytes())
    }

    /// Its libp2p peer id.
    pub(crate) fn peer_id(&self) -> PeerId {
        self.peer
    }

    fn call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> T {
        let (reply, rx) = oneshot::channel();
        self.tx
            .as_ref()
            .expect("running")
            .blocking_send(make(reply))
            .expect("adversary running");
        rx.blocking_recv().expect("adversary answers")
    }

    /// Connects to every node in `addrs` (multiaddrs ending in `/p2p/<id>`) and waits
    /// until each is known to take every Cairn gossip topic from it.
    pub(crate) fn join(&self, addrs: &[String]) {
        let addrs: Vec<Multiaddr> = addrs
            .iter()
            .map(|a| a.parse().expect("a multiaddr"))
            .collect();
        self.call(|r| Cmd::Join(addrs, r))
            .unwrap_or_else(|e| panic!("adversary could not join: {e}"));
    }

    /// Publishes `data` on gossip topic `topic` under its own name.
    pub(crate) fn publish(&self, topic: &'static str, data: Vec<u8>) {
        self.call(|r| Cmd::Publish(topic, data, r))
            .unwrap_or_else(|e| panic!("adversary could not publish on {topic}: {e}"));
    }

    /// Sends a control request to `peer` (connected through [`Adversary::join`]).
    pub(crate) fn request(&self, peer: &str, request: Request) -> Result<Response, String> {
        let peer: PeerId = peer.parse().map_err(|e| format!("bad peer id: {e}"))?;
        self.call(|r| Cmd::Request(peer, request, r))
    }

    /// Sends all of `requests` to `peer` at once; their answers, in order.
    pub(crate) fn request_all(
        &self,
        peer: &str,
        requests: Vec<Request>,
    ) -> Vec<Result<Response, String>> {
        let Ok(peer) = peer.parse::<PeerId>() else {
            return vec![Err("bad peer id".into()); requests.len()];
        };
        let waits: Vec<oneshot::Receiver<Result<Response, String>>> = requests
            .into_iter()
            .map(|request| {
                let (reply, rx) = oneshot::channel();
                self.tx
                    .as_ref()
                    .expect("running")
                    .blocking_send(Cmd::Request(peer, request, reply))
                    .expect("adversary running");
                rx
            })
            .collect();
        waits
            .into_iter()
            .map(|rx| rx.blocking_recv().unwrap_or_else(|_| Err("dropped".into())))
            .collect()
    }

    /// Audit records in its own name, signed with its own key: `outcome` for every
    /// (holder, piece) in `about`, `copies` times each (as rounds `0..copies`).
    pub(crate) fn records(
        &self,
        about: &[(NodeId, PieceId)],
        outcome: Outcome,
        copies: u64,
    ) -> Vec<SignedRecord> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut out = Vec::new();
        for round in 0..copies {
            for (holder, piece) in about {
                out.push(
                    AuditRecord {
                        auditor: self.node_id(),
                        holder: *holder,
                        piece: *piece,
                        len: 64 << 10,
                        round,
                        time_unix: now,
                        outcome,
                    }
                    .sign(&self.key),
                );
            }
        }
        out
    }

    /// Announces to `peer` holding `pieces` (it holds none), in batches, as a node
    /// announces what it holds to its co-holders. Whether `peer` took every batch.
    pub(crate) fn announce(&self, peer: &str, pieces: &[[u8; 32]]) -> bool {
        let requests = pieces
            .chunks(wire::HOLDINGS_BATCH)
            .map(|chunk| {
                let h = wire::Holdings {
                    data: wire::DataAddr {
                        id: self.node_id().0,
                        addrs: vec![],
                    },
                    pieces: chunk.to_vec(),
                    dropped: vec![],
                };
                Request::Holdings(h.encode())
            })
            .collect();
        self.request_all(peer, requests)
            .iter()
            .all(|r| matches!(r, Ok(wire::Response::Heard { .. })))
    }

    /// Sends `records` to every node in `addrs` (multiaddrs ending in `/p2p/<id>`, joined
    /// first), as a node sends its own to its co-holders: how many the nodes took in all.
    pub(crate) fn send_records(&self, addrs: &[String], records: &[SignedRecord]) -> u64 {
        addrs.iter().map(|a| self.records_to(a, records).0).sum()
    }

    /// Sends `records` to the node at `addr`, in [`wire::AUDIT_BATCH`]es all at once: how
    /// many records it took, how many batches it answered with what it took, and how many
    /// it refused as over this key's allowance.
    pub(crate) fn records_to(&self, addr: &str, records: &[SignedRecord]) -> (u64, usize, usize) {
        let peer = addr.rsplit("/p2p/").next().unwrap_or(addr);
        let requests = records
            .chunks(wire::AUDIT_BATCH)
            .map(|chunk| Request::Records(wire::encode_records(chunk)))
            .collect();
        let (mut taken, mut answered, mut over) = (0, 0, 0);
        for r in self.request_all(peer, requests) {
            match r {
                Ok(Response::RecordsTaken { taken: n }) => {
                    taken += u64::from(n);
                    answered += 1;
                }
                Ok(Response::Error {
                    code: wire::ErrorCode::Busy,
                    message,
                }) if message.contains("allowance") => over += 1,
                _ => {}
            }
        }
        (taken, answered, over)
    }
}

/// A secret no one has used: the time, the thread and the process, hashed.
fn fresh_secret() -> [u8; 32] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static DRAWN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = DRAWN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let salt = format!(
        "{nanos} {n} {:?} {}",
        std::thread::current().id(),
        std::process::id()
    );
    *blake3::hash(salt.as_bytes()).as_bytes()
}

impl Drop for Adversary {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            t.join().ok();
        }
    }
}

fn build(kp: identity::Keypair, mode: Mode) -> Swarm<Behaviour> {
    libp2p::SwarmBuilder::with_existing_identity(kp)
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_behaviour(|key| {
            let gcfg = gossipsub::ConfigBuilder::default()
                .max_transmit_size(wire::MAX_GOSSIP)
                .heartbeat_interval(Duration::from_millis(500))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .build()
                .expect("gossipsub config");
            let gossip = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gcfg,
            )
            .expect("gossipsub");
            let me = key.public().to_peer_id();
            let mut kad = kad::Behaviour::with_config(
                me,
                kad::store::MemoryStore::new(me),
                kad::Config::new(StreamProtocol::new(wire::KAD_PROTOCOL)),
            );
            kad.set_mode(Some(if mode != Mode::Plain {
                kad::Mode::Server
            } else {
                kad::Mode::Client
            }));
            Behaviour {
                gossip,
                kad,
                identify: identify::Behaviour::new(identify::Config::new(
                    "/cairn/1".into(),
                    key.public(),
                )),
                control: request_response::cbor::Behaviour::new(
                    [(
                        StreamProtocol::new(wire::CONTROL_PROTOCOL),
                        if mode != Mode::Plain {
                            request_response::ProtocolSupport::Full
                        } else {
                            request_response::ProtocolSupport::Outbound
                        },
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                ),
            }
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(300)))
        .build()
}

/// What a fake node answers: the lies that get it chosen for pieces it will not store.
fn fake_answer(swarm: &Swarm<Behaviour>, key: &[u8; 32], request: Request) -> Response {
    let me = *swarm.local_peer_id();
    match request {
        Request::Info => Response::Info(wire::NodeInfo {
            peer: me.to_string(),
            addrs: swarm
                .listeners()
                .map(|a| a.clone().with_p2p(me).unwrap_or_else(|a| a).to_string())
                .collect(),
            data: wire::DataAddr {
                id: *key,
                addrs: vec![],
            },
            http: None,
            pieces: 0,
            bytes: 0,
            capacity: None,
            connected: 1,
            served: 0,
            // It says it is trusted; the node that lists it says otherwise.
            trust: wire::Trust::Established,
            operator: None,
            seen: None,
        }),
        Request::Hold { .. } => Response::Held { already: true },
        _ => Response::Error {
            code: wire::ErrorCode::NotFound,
            message: "not here".into(),
        },
    }
}

async fn run(kp: identity::Keypair, mut rx: mpsc::Receiver<Cmd>, mode: Mode) {
    let public = kp
        .public()
        .try_into_ed25519()
        .expect("an ed25519 key")
        .to_bytes();
    let mut swarm = build(kp, mode);
    if mode != Mode::Plain {
        swarm
            .listen_on("/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr"))
            .expect("listen");
    }
    for t in TOPICS {
        swarm
            .behaviour_mut()
            .gossip
            .subscribe(&gossipsub::IdentTopic::new(t))
            .expect("subscribe");
    }
    let mut joining: Vec<Joining> = Vec::new();
    let mut asked: std::collections::HashMap<
        request_response::OutboundRequestId,
        oneshot::Sender<Result<Response, String>>,
    > = std::collections::HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None => break,
                Some(Cmd::Join(addrs, reply)) => {
                    let mut peers = Vec::new();
                    for a in addrs {
                        if let Some(libp2p::multiaddr::Protocol::P2p(p)) = a.iter().last() {
                            peers.push((p, a.clone()));
                        }
                        swarm.dial(a).ok();
                    }
                    let now = tokio::time::Instant::now();
                    joining.push(Joining {
                        peers,
                        deadline: now + JOIN_TIME,
                        redial: now + Duration::from_secs(2),
                        reply,
                    });
                }
                Some(Cmd::Publish(topic, data, reply)) => {
                    let r = swarm
                        .behaviour_mut()
                        .gossip
                        .publish(gossipsub::IdentTopic::new(topic), data)
                        .map(|_| ())
                        .map_err(|e| e.to_string());
                    reply.send(r).ok();
                }
                Some(Cmd::Request(peer, request, reply)) => {
                    let id = swarm.behaviour_mut().control.send_request(&peer, request);
                    asked.insert(id, reply);
                }
            },
            _ = tick.tick() => {
                let now = tokio::time::Instant::now();
                let hashes: Vec<gossipsub::TopicHash> =
                    TOPICS.iter().map(|t| gossipsub::IdentTopic::new(*t).hash()).collect();
                let subscribed: std::collections::HashSet<PeerId> = swarm
                    .behaviour()
                    .gossip
                    .all_peers()
                    .filter(|(_, ts)| hashes.iter().all(|h| ts.contains(&h)))
                    .map(|(p, _)| *p)
                    .collect();
                let ready = |p: &PeerId| subscribed.contains(p);
                let mut still = Vec::new();
                for mut j in joining.drain(..) {
                    if j.peers.iter().all(|(p, _)| ready(p)) {
                        j.reply.send(Ok(())).ok();
                    } else if now > j.deadline {
                        let left: Vec<&PeerId> =
                            j.peers.iter().filter(|(p, _)| !ready(p)).map(|(p, _)| p).collect();
                        j.reply.send(Err(format!("not subscribed after {JOIN_TIME:?}: {left:?}"))).ok();
                    } else {
                        if now > j.redial {
                            // A dial may fail on a loaded machine: try again.
                            j.redial = now + Duration::from_secs(2);
                            for (p, a) in &j.peers {
                                if !swarm.is_connected(p) {
                                    swarm.dial(a.clone()).ok();
                                }
                            }
                        }
                        still.push(j);
                    }
                }
                joining = still;
            }
            event = swarm.select_next_some() => {
                if let SwarmEvent::Behaviour(BehaviourEvent::Control(e)) = event {
                    match e {
                        request_response::Event::Message {
                            message: request_response::Message::Request { request, channel, .. },
                            ..
                        } => {
                            let answer = match mode {
                                Mode::FakeNode => fake_answer(&swarm, &public, request),
                                _ => Response::Error {
                                    code: wire::ErrorCode::NotFound,
                                    message: "not here".into(),
                                },
                            };
                            swarm.behaviour_mut().control.send_response(channel, answer).ok();
                        }
                        request_response::Event::Message {
                            message: request_response::Message::Response { request_id, response },
                            ..
                        } => {
                            if let Some(r) = asked.remove(&request_id) {
                                r.send(Ok(response)).ok();
                            }
                        }
                        request_response::Event::OutboundFailure { request_id, error, .. } => {
                            if let Some(r) = asked.remove(&request_id) {
                                r.send(Err(error.to_string())).ok();
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}
