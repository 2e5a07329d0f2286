//! Which connections stay open while idle. libp2p closes a connection once no behaviour
//! wants it and no stream is open on it for the idle timeout. gossipsub keeps a stream
//! open on every connection, so it alone would keep every connection open for ever
//! (rust-libp2p#5190); [`Quiet`] wraps it so that its streams do not count (gossipsub
//! still keeps its mesh peers' connections, which it asks for in its own right). [`Keep`]
//! keeps the connections of a chosen set of peers: the co-holders of what the node holds.
//! Every other connection closes once idle, with whatever streams were in use finished
//! first, so a node's connections grow with what it holds, not with the network.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    convert::Infallible,
    ops::{Deref, DerefMut},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll},
};

use futures::future::Either;
use libp2p::{
    Multiaddr, PeerId, Stream,
    core::{Endpoint, transport::PortUse, upgrade::DeniedUpgrade},
    swarm::{
        ConnectionDenied, ConnectionHandler, ConnectionHandlerEvent, ConnectionId, FromSwarm,
        NetworkBehaviour, NotifyHandler, SubstreamProtocol, THandler, THandlerInEvent,
        THandlerOutEvent, ToSwarm,
        handler::{
            ConnectionEvent, FullyNegotiatedInbound, FullyNegotiatedOutbound, InboundUpgradeSend,
            OutboundUpgradeSend,
        },
    },
};

/// What a negotiated stream is, as far as keep-alive goes: something that can be told
/// not to keep its connection open.
pub(crate) trait Streams {
    fn ignore_for_keep_alive(&mut self);
}

impl<C, K> Streams for (asynchronous_codec::Framed<Stream, C>, K) {
    fn ignore_for_keep_alive(&mut self) {
        self.0.deref_mut().ignore_for_keep_alive();
    }
}

impl<A: Streams> Streams for Either<A, Infallible> {
    fn ignore_for_keep_alive(&mut self) {
        if let Either::Left(a) = self {
            a.ignore_for_keep_alive();
        }
    }
}

/// A behaviour whose streams do not keep connections open; only its handlers' own wish
/// (`connection_keep_alive`) does.
pub(crate) struct Quiet<B>(pub(crate) B);

impl<B> Deref for Quiet<B> {
    type Target = B;
    fn deref(&self) -> &B {
        &self.0
    }
}

impl<B> DerefMut for Quiet<B> {
    fn deref_mut(&mut self) -> &mut B {
        &mut self.0
    }
}

impl<B> NetworkBehaviour for Quiet<B>
where
    B: NetworkBehaviour,
    QuietHandler<THandler<B>>:
        ConnectionHandler<FromBehaviour = THandlerInEvent<B>, ToBehaviour = THandlerOutEvent<B>>,
{
    type ConnectionHandler = QuietHandler<THandler<B>>;
    type ToSwarm = B::ToSwarm;

    fn handle_pending_inbound_connection(
        &mut self,
        id: ConnectionId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.0.handle_pending_inbound_connection(id, local, remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        local: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.0
            .handle_established_inbound_connection(id, peer, local, remote)
            .map(QuietHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.0
            .handle_pending_outbound_connection(id, peer, addresses, role)
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.0
            .handle_established_outbound_connection(id, peer, addr, role, port_use)
            .map(QuietHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.0.on_swarm_event(event);
    }

    fn on_connection_handler_event(
        &mut self,
        peer: PeerId,
        id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.0.on_connection_handler_event(peer, id, event);
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        self.0.poll(cx)
    }
}

/// [`Quiet`]'s handler: the wrapped one, with every stream it is handed marked as not
/// keeping the connection open.
pub(crate) struct QuietHandler<H>(H);

impl<H> ConnectionHandler for QuietHandler<H>
where
    H: ConnectionHandler,
    <H::InboundProtocol as InboundUpgradeSend>::Output: Streams,
    <H::OutboundProtocol as OutboundUpgradeSend>::Output: Streams,
{
    type FromBehaviour = H::FromBehaviour;
    type ToBehaviour = H::ToBehaviour;
    type InboundProtocol = H::InboundProtocol;
    type OutboundProtocol = H::OutboundProtocol;
    type InboundOpenInfo = H::InboundOpenInfo;
    type OutboundOpenInfo = H::OutboundOpenInfo;

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        self.0.listen_protocol()
    }

    fn connection_keep_alive(&self) -> bool {
        self.0.connection_keep_alive()
    }

    fn poll(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<
        ConnectionHandlerEvent<Self::OutboundProtocol, Self::OutboundOpenInfo, Self::ToBehaviour>,
    > {
        self.0.poll(cx)
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<Option<Self::ToBehaviour>> {
        self.0.poll_close(cx)
    }

    fn on_behaviour_event(&mut self, event: Self::FromBehaviour) {
        self.0.on_behaviour_event(event);
    }

    fn on_connection_event(
        &mut self,
        event: ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        let event = match event {
            ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound {
                mut protocol,
                info,
            }) => {
                protocol.ignore_for_keep_alive();
                ConnectionEvent::FullyNegotiatedInbound(FullyNegotiatedInbound { protocol, info })
            }
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                mut protocol,
                info,
            }) => {
                protocol.ignore_for_keep_alive();
                ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound { protocol, info })
            }
            other => other,
        };
        self.0.on_connection_event(event);
    }
}

/// Keeps the connections of a chosen set of peers open.
#[derive(Default)]
pub(crate) struct Keep {
    /// Peers to keep.
    keep: HashSet<PeerId>,
    /// Per connected peer, the flag its connections' handlers read, and the connections.
    flags: HashMap<PeerId, (Arc<AtomicBool>, Vec<ConnectionId>)>,
    /// Handlers to wake because their peer's flag changed.
    wake: VecDeque<(PeerId, ConnectionId)>,
}

impl Keep {
    /// Keeps exactly `peers` from now on; connections of peers no longer kept close once
    /// idle.
    pub(crate) fn set(&mut self, peers: HashSet<PeerId>) {
        for (peer, (flag, conns)) in &self.flags {
            let kept = peers.contains(peer);
            if flag.swap(kept, Ordering::Relaxed) != kept {
                // A connection reads its handlers' wish again only when polled.
                self.wake.extend(conns.iter().map(|c| (*peer, *c)));
            }
        }
        self.keep = peers;
    }

    /// Whether `peer` is kept.
    pub(crate) fn keeps(&self, peer: &PeerId) -> bool {
        self.keep.contains(peer)
    }

    fn handler(&mut self, peer: PeerId, id: ConnectionId) -> KeepHandler {
        let kept = self.keep.contains(&peer);
        let (flag, conns) = self
            .flags
            .entry(peer)
            .or_insert_with(|| (Arc::new(AtomicBool::new(kept)), Vec::new()));
        conns.push(id);
        KeepHandler { keep: flag.clone() }
    }
}

impl NetworkBehaviour for Keep {
    type ConnectionHandler = KeepHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, id))
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(self.handler(peer, id))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(c) = event
            && let Some((_, conns)) = self.flags.get_mut(&c.peer_id)
        {
            conns.retain(|id| *id != c.connection_id);
            if conns.is_empty() {
                self.flags.remove(&c.peer_id);
            }
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        e: THandlerOutEvent<Self>,
    ) {
        match e {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        while let Some((peer_id, id)) = self.wake.pop_front() {
            if self
                .flags
                .get(&peer_id)
                .is_some_and(|(_, conns)| conns.contains(&id))
            {
                return Poll::Ready(ToSwarm::NotifyHandler {
                    peer_id,
                    handler: NotifyHandler::One(id),
                    event: (),
                });
            }
        }
        Poll::Pending
    }
}

/// [`Keep`]'s side of one connection: opens no streams, and keeps the connection while
/// its peer is kept.
pub(crate) struct KeepHandler {
    keep: Arc<AtomicBool>,
}

impl ConnectionHandler for KeepHandler {
    /// A nudge: the peer's flag changed.
    type FromBehaviour = ();
    type ToBehaviour = Infallible;
    type InboundProtocol = DeniedUpgrade;
    type OutboundProtocol = DeniedUpgrade;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = ();

    fn listen_protocol(&self) -> SubstreamProtocol<Self::InboundProtocol> {
        SubstreamProtocol::new(DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        self.keep.load(Ordering::Relaxed)
    }

    fn on_behaviour_event(&mut self, (): ()) {}

    fn poll(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<ConnectionHandlerEvent<Self::OutboundProtocol, (), Self::ToBehaviour>> {
        Poll::Pending
    }

    fn on_connection_event(
        &mut self,
        _: ConnectionEvent<Self::InboundProtocol, Self::OutboundProtocol>,
    ) {
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::{collections::HashSet, time::Duration};

    use futures::StreamExt;
    use libp2p::{Swarm, swarm::SwarmEvent};

    use crate::net::{
        metrics::NetMetrics,
        swarm::{self, Behaviour, Role},
    };

    fn node(idle: Duration) -> Swarm<Behaviour> {
        let key = libp2p::identity::Keypair::generate_ed25519();
        let role = Role::Node {
            mdns: false,
            idle,
            mesh: swarm::DEFAULT_MESH,
        };
        let mut s = swarm::build(key, role, &NetMetrics::new()).unwrap();
        s.listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
            .unwrap();
        s
    }

    async fn listening(s: &mut Swarm<Behaviour>) -> libp2p::Multiaddr {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = s.select_next_some().await {
                return address;
            }
        }
    }

    /// Drives every swarm until `done` holds of the first, or for at most `limit`.
    /// Whether it came to hold.
    async fn drive(
        all: &mut [Swarm<Behaviour>],
        limit: Duration,
        done: impl Fn(&Swarm<Behaviour>) -> bool,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if done(&all[0]) {
                return true;
            }
            let step = futures::future::select_all(all.iter_mut().map(|s| s.select_next_some()));
            if tokio::time::timeout_at(deadline, step).await.is_err() {
                return done(&all[0]);
            }
        }
    }

    /// Real swarms, gossipsub and all, over TCP on 127.0.0.1: a node dials two peers and
    /// keeps one (which keeps it too, as co-holders do). The other connection closes once
    /// idle, although gossipsub holds streams open on it (`Quiet`); the kept one stays for
    /// many idle times, and closes once it is no longer kept.
    #[tokio::test]
    async fn kept_peers_stay_connected_and_the_rest_close_when_idle() {
        let idle = Duration::from_millis(300);
        let mut all = vec![node(idle), node(idle), node(idle)];
        let mut addrs = Vec::new();
        for s in &mut all {
            addrs.push(listening(s).await);
        }
        let (a, b, c) = (
            *all[0].local_peer_id(),
            *all[1].local_peer_id(),
            *all[2].local_peer_id(),
        );
        // Subscribed to topics of their own, a and c hold gossipsub streams open on
        // their connection without being each other's mesh.
        for (s, topic) in [(0, "a"), (2, "c")] {
            all[s]
                .behaviour_mut()
                .gossip
                .subscribe(&libp2p::gossipsub::IdentTopic::new(topic))
                .unwrap();
        }
        all[0].behaviour_mut().keep.set([b].into());
        all[1].behaviour_mut().keep.set([a].into());
        all[0].dial(addrs[1].clone()).unwrap();
        all[0].dial(addrs[2].clone()).unwrap();
        let long = Duration::from_secs(20);
        assert!(
            drive(&mut all, long, |s| s.is_connected(&b) && s.is_connected(&c)).await,
            "the dials did not connect"
        );
        assert!(
            drive(&mut all, long, |s| !s.is_connected(&c)).await,
            "an idle connection to a peer not kept stayed open"
        );
        assert!(
            !drive(&mut all, idle * 10, |s| !s.is_connected(&b)).await,
            "a kept peer's connection closed"
        );
        all[0].behaviour_mut().keep.set(HashSet::new());
        all[1].behaviour_mut().keep.set(HashSet::new());
        assert!(
            drive(&mut all, long, |s| !s.is_connected(&b)).await,
            "a peer no longer kept stayed connected"
        );
    }
}
