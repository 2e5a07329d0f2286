//! When a failed dial means a peer is gone. A peer is forgotten when nobody listens at
//! any of its addresses (every address refused the connection: its process is gone), or
//! after [`FAILURES_TO_FORGET`] failed dials in a row of any other kind (a host that went
//! away times out). One failure for a local reason says nothing of the peer: two nodes
//! that dial each other at once from their listening ports (libp2p's port reuse) make one
//! of the two dials fail with "address in use", while both are alive.

use std::collections::HashMap;

use libp2p::{PeerId, TransportError, swarm::DialError};

/// Failed dials in a row, of kinds that do not prove the peer gone, before it is
/// forgotten.
pub(super) const FAILURES_TO_FORGET: u8 = 3;
/// Peers whose failures are counted at once; more are not counted (their next failure
/// starts afresh).
const MAX_COUNTED: usize = 4096;

/// Failed dials in a row, per peer.
#[derive(Debug, Default)]
pub(super) struct DialFailures(HashMap<PeerId, u8>);

impl DialFailures {
    /// A dial to `peer` failed with `error`: whether the peer is gone.
    pub(super) fn failed(&mut self, peer: PeerId, error: &DialError) -> bool {
        let DialError::Transport(tried) = error else {
            return false;
        };
        if nobody_listens(tried) {
            self.0.remove(&peer);
            return true;
        }
        if !self.0.contains_key(&peer) && self.0.len() >= MAX_COUNTED {
            return false;
        }
        let n = self.0.entry(peer).or_default();
        *n = n.saturating_add(1);
        if *n >= FAILURES_TO_FORGET {
            self.0.remove(&peer);
            return true;
        }
        false
    }

    /// A connection to `peer` is up, or the peer was forgotten: its count starts afresh.
    pub(super) fn clear(&mut self, peer: &PeerId) {
        self.0.remove(peer);
    }
}

/// Whether every address tried refused the connection.
fn nobody_listens(tried: &[(libp2p::Multiaddr, TransportError<std::io::Error>)]) -> bool {
    !tried.is_empty()
        && tried.iter().all(|(_, e)| match e {
            TransportError::Other(e) => refused(e),
            TransportError::MultiaddrNotSupported(_) => false,
        })
}

/// Whether `e`, or an error inside it, is a refused connection. An `io::Error` that wraps
/// another gives it through `get_ref` (its `source` skips it); the transport's layers
/// (upgrades, `Either`s) do not give theirs at all, but show it in their `Debug`, where
/// the socket's error shows its kind.
fn refused(e: &std::io::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        cause = match c.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => return true,
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => c.source(),
        };
    }
    format!("{e:?}").contains("kind: ConnectionRefused")
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;

    fn dial_error(kinds: &[ErrorKind]) -> DialError {
        DialError::Transport(
            kinds
                .iter()
                .map(|&k| {
                    let addr = "/ip4/127.0.0.1/tcp/1".parse().expect("an address");
                    // As the transport wraps it: an error whose source is the socket's.
                    (addr, TransportError::Other(Error::other(Error::from(k))))
                })
                .collect(),
        )
    }

    /// A layer that hides what it wraps from `source`, as `Either` does.
    #[derive(Debug)]
    struct Layer(Error);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            self.0.fmt(f)
        }
    }

    impl std::error::Error for Layer {}

    #[test]
    fn a_refused_dial_forgets_at_once_and_others_only_in_a_row() {
        let mut f = DialFailures::default();
        let p = PeerId::random();
        assert!(f.failed(p, &dial_error(&[ErrorKind::ConnectionRefused])));
        // The socket's error as the transport's layers wrap it.
        let os = Error::from_raw_os_error(111);
        assert_eq!(os.kind(), ErrorKind::ConnectionRefused);
        let wrapped = DialError::Transport(vec![(
            "/ip4/127.0.0.1/tcp/1".parse().expect("an address"),
            TransportError::Other(Error::other(Layer(os))),
        )]);
        assert!(f.failed(p, &wrapped));
        // Both ends dialling at once from their listening ports: "address in use" says
        // nothing of the peer, nor does one refused address among others.
        let in_use = dial_error(&[ErrorKind::AddrInUse]);
        let mixed = dial_error(&[ErrorKind::ConnectionRefused, ErrorKind::TimedOut]);
        assert!(!f.failed(p, &in_use));
        assert!(!f.failed(p, &mixed));
        // A connection in between starts the count afresh.
        f.clear(&p);
        assert!(!f.failed(p, &in_use));
        assert!(!f.failed(p, &in_use));
        assert!(f.failed(p, &in_use), "three failures in a row forget it");
        // What is no transport failure (a dial refused by a limit, say) counts for
        // nothing.
        assert!(!f.failed(p, &DialError::Aborted));
        assert!(!f.failed(p, &DialError::Transport(Vec::new())));
    }
}
