//! Control-plane messages: what nodes and clients say to each other over libp2p.
//!
//! Requests and responses travel as CBOR through libp2p's request-response codec, which
//! refuses any message over [`MAX_REQUEST`] / [`MAX_RESPONSE`] bytes before decoding it.
//! Decoding is serde's: a malformed message is an error, never a panic. Nothing in here
//! is trusted: ids are checked against manifests, manifests are verified before storing,
//! and every list a peer sends is truncated to a limit by the receiver.

use std::net::SocketAddr;

use proofs::codec::{Reader, Writer};
use serde::{Deserialize, Serialize};

pub use crate::audit::Trust;

/// The request-response protocol of the control plane.
pub const CONTROL_PROTOCOL: &str = "/cairn/control/1";
/// The Kademlia protocol of the network's DHT (placement records, and walks that sample
/// the network).
pub const KAD_PROTOCOL: &str = "/cairn/kad/1";
/// Largest request accepted: a manifest being published, with the holders of its pieces
/// (two bytes each, a sixteenth of the manifest) and room for framing.
pub const MAX_REQUEST: u64 = 18 << 20;
/// Largest response accepted.
pub const MAX_RESPONSE: u64 = 17 << 20;
/// Largest manifest carried on the network.
pub const MAX_NETWORK_MANIFEST: usize = 16 << 20;
/// Most entries in a list of ids a peer sends (versions).
pub const MAX_LIST: usize = 100_000;
/// Most placement records one `Place` carries, and most keys one `Placements` asks for:
/// the answer stays under [`MAX_RESPONSE`] even if every record is as large as allowed.
pub const MAX_PLACE: usize = 256;
/// Most pieces in one `Locate`, so its answer (up to [`MAX_HOLDERS_LISTED`] holders per
/// piece) stays under [`MAX_RESPONSE`].
pub const MAX_LOCATE: usize = 4096;
/// Most holders named per piece in a `Locate` answer.
pub const MAX_HOLDERS_LISTED: usize = 16;
/// Most datasets in one `Datasets` answer.
pub const MAX_DATASETS_LISTED: usize = 10_000;
/// Most nodes in one `Peers` answer, and asked about in one `Standing`.
pub const MAX_PEERS_LISTED: usize = 1024;
/// Longest license text in a dataset summary (the manifest has the whole text).
pub const MAX_SUMMARY_LICENSE: usize = crate::store::MAX_RECORD_LICENSE;
/// The gossipsub topic new manifest versions are announced on (32-byte version ids; the
/// manifest itself is then fetched from the announcer with [`Request::Manifest`]).
pub const MANIFEST_TOPIC: &str = "cairn/manifests/1";
/// The gossipsub topic repair claims are published on.
pub const REPAIRS_TOPIC: &str = "cairn/repairs/1";
/// Most records in one [`Request::Records`].
pub const AUDIT_BATCH: usize = 1024;
/// Most nodes in one `Ledger` answer.
pub const MAX_LEDGER_LISTED: usize = 4096;
/// Most piece ids in one holdings announcement (32 bytes each).
pub const HOLDINGS_BATCH: usize = 2048;
/// Most addresses a node names for itself on either plane; more are cut off when
/// sending and refused when received.
pub const MAX_DATA_ADDRS: usize = 16;
/// Largest gossip message: a full batch of audit records with room to spare.
pub const MAX_GOSSIP: usize = 256 << 10;

/// Where a node's data plane listens: its iroh endpoint id (the same ed25519 key as its
/// libp2p identity) and direct socket addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataAddr {
    /// The endpoint's public key.
    pub id: [u8; 32],
    /// Direct addresses (UDP).
    pub addrs: Vec<SocketAddr>,
}

/// Who holds each piece of a manifest, as a push placed them: a table of nodes and, per
/// piece in the manifest's order, an index into it (two bytes, little-endian;
/// [`PieceHolders::NONE`] for a piece with no holder named). A hint where to ask for
/// proofs, never taken as proof itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceHolders {
    /// The nodes named, at most [`MAX_PEERS_LISTED`].
    pub nodes: Vec<DataAddr>,
    /// Two bytes per piece.
    #[serde(with = "serde_bytes")]
    pub of_piece: Vec<u8>,
}

impl PieceHolders {
    /// The index of a piece with no holder named.
    pub const NONE: u16 = u16::MAX;

    /// A table naming, for each piece in order, the node at that index of `nodes`.
    pub fn new(nodes: Vec<DataAddr>, of_piece: impl IntoIterator<Item = Option<u16>>) -> Self {
        let of_piece = of_piece
            .into_iter()
            .flat_map(|i| i.unwrap_or(Self::NONE).to_le_bytes())
            .collect();
        Self { nodes, of_piece }
    }

    /// Whether the table fits a manifest of `pieces` pieces: one index per piece, every
    /// index names a node of the table or none, and no node names more addresses than
    /// a node may.
    pub fn fits(&self, pieces: usize) -> bool {
        self.nodes.len() <= MAX_PEERS_LISTED
            && self.nodes.iter().all(|n| n.addrs.len() <= MAX_DATA_ADDRS)
            && self.of_piece.len() == 2 * pieces
            && self
                .indices()
                .all(|i| i == Self::NONE || usize::from(i) < self.nodes.len())
    }

    /// The node named for the `i`th piece of the manifest.
    pub fn holder_of(&self, i: usize) -> Option<&DataAddr> {
        let b = self.of_piece.get(2 * i..2 * i + 2)?;
        self.nodes
            .get(usize::from(u16::from_le_bytes([b[0], b[1]])))
    }

    fn indices(&self) -> impl Iterator<Item = u16> + '_ {
        self.of_piece
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
}

/// What a node says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// libp2p peer id, as text.
    pub peer: String,
    /// libp2p listen addresses, as multiaddr text (with `/p2p/<peer>`).
    pub addrs: Vec<String>,
    /// The data plane address.
    pub data: DataAddr,
    /// HTTP base URL, if the node serves one.
    pub http: Option<String>,
    /// Pieces held.
    pub pieces: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Capacity, if limited.
    pub capacity: Option<u64>,
    /// Peers it is connected to right now.
    pub connected: u32,
    /// Bytes it has served to others over the data plane (its own count).
    #[serde(default)]
    pub served: u64,
    /// How far the node that lists it trusts it, from that node's own ledger: set by the
    /// lister in a `Peers` answer. What a node says of itself here means nothing.
    #[serde(default)]
    pub trust: Trust,
    /// The operator it declares ([`super::domain`]): its failure domain by label.
    #[serde(default)]
    pub operator: Option<String>,
    /// The address the listing node sees its connection come from: its failure domain by
    /// network. Set by the lister in a `Peers` answer, like `trust`.
    #[serde(default)]
    pub seen: Option<std::net::IpAddr>,
}

impl NodeInfo {
    /// Whether its self-description is within bounds (a peer's `Info` is passed on to
    /// clients, so an oversized one is dropped rather than relayed).
    pub fn is_sane(&self) -> bool {
        self.peer.len() <= 128
            && self.addrs.len() <= MAX_DATA_ADDRS
            && self.addrs.iter().all(|a| a.len() <= 256)
            && self.data.addrs.len() <= MAX_DATA_ADDRS
            && self.http.as_ref().is_none_or(|h| h.len() <= 256)
            && self
                .operator
                .as_ref()
                .is_none_or(|o| o.len() <= super::domain::MAX_OPERATOR_LEN)
    }

    /// Its failure domains: the operator it declares and the network it is seen at.
    pub fn domains(&self) -> Vec<super::domain::FailureDomain> {
        super::domain::domains_of(self.operator.as_deref(), self.seen)
    }

    /// Bytes it can still accept (`u64::MAX` when unlimited).
    pub fn free(&self) -> u64 {
        self.capacity
            .map_or(u64::MAX, |c| c.saturating_sub(self.bytes))
    }
}

/// A dataset as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetSummary {
    /// `owner/name`.
    pub name: String,
    /// Latest version id, hex.
    pub latest: String,
    /// Versions held.
    pub versions: u32,
    /// Total file bytes of the latest version.
    pub size: u64,
    /// Files in the latest version.
    pub files: u32,
    /// License of the latest version.
    pub license: String,
}

/// One version of a dataset, as listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSummary {
    /// Version id.
    pub version: [u8; 32],
    /// Publication time, seconds since the epoch.
    pub created_unix: u64,
    /// Total file bytes.
    pub size: u64,
    /// Files.
    pub files: u32,
}

/// A control-plane request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Describe yourself.
    Info,
    /// Describe every node you are connected to, yourself included.
    Peers,
    /// Hold this piece: fetch it from `from` over the data plane, check it, store it.
    Hold {
        /// The piece's BLAKE3 hash.
        piece: [u8; 32],
        /// Its length in bytes.
        len: u32,
        /// Where to fetch it from.
        from: DataAddr,
    },
    /// Verify, store and announce this signed manifest.
    Publish {
        /// The manifest's bytes.
        #[serde(with = "serde_bytes")]
        manifest: Vec<u8>,
        /// Who took each piece in the push: where the node asks for proofs that the
        /// version is placed.
        #[serde(default)]
        holders: Option<PieceHolders>,
    },
    /// Every dataset you know.
    Datasets,
    /// Every version id you hold (for catching up after missed gossip).
    Versions,
    /// A manifest: by version id, or the latest of a name.
    Manifest {
        /// `owner/name`.
        name: Option<String>,
        /// A version id.
        version: Option<[u8; 32]>,
    },
    /// Every version of a dataset, oldest first.
    History {
        /// `owner/name`.
        name: String,
    },
    /// Who holds these pieces, as far as you know.
    Locate {
        /// Piece ids.
        pieces: Vec<[u8; 32]>,
    },
    /// Prove you hold a piece: an encoded `proofs::Challenge`.
    Challenge {
        /// The challenge's bytes.
        #[serde(with = "serde_bytes")]
        challenge: Vec<u8>,
    },
    /// Every node's standing as your ledger has it.
    Ledger,
    /// Who holds the pieces of these stripes of a publisher's versions, as far as you
    /// know: each stripe's placement record first, then announcements.
    LocateStripes {
        /// The publisher whose records count.
        publisher: [u8; 32],
        /// Each stripe's piece ids, in order; at most [`MAX_PLACE`] stripes and
        /// [`MAX_LOCATE`] pieces in all.
        stripes: Vec<Vec<[u8; 32]>>,
    },
    /// Keep these placement records (`location::SignedPlacement`) of stripes you hold
    /// pieces of; with `publish`, also store every one in the DHT before answering.
    Place {
        /// Encoded records, at most [`MAX_PLACE`].
        records: Vec<serde_bytes::ByteBuf>,
        /// Whether to store them in the DHT.
        publish: bool,
    },
    /// The placement records stored under these keys, from your own store or the DHT.
    Placements {
        /// `location::PlacementKey`s, at most [`MAX_PLACE`].
        keys: Vec<[u8; 32]>,
    },
    /// The sender's holdings of stripes it shares with you: a [`Holdings`], encoded. A
    /// node tells only the co-holders of each stripe, never the network.
    Holdings(#[serde(with = "serde_bytes")] Vec<u8>),
    /// How far you trust each of these nodes, from your own ledger.
    Standing {
        /// libp2p peer ids, as text, at most [`MAX_PEERS_LISTED`].
        peers: Vec<String>,
    },
    /// The sender's own signed audit records about stripes it shares with you, encoded
    /// ([`encode_records`]), at most [`AUDIT_BATCH`]. An auditor sends them to the
    /// audited stripe's co-holders only.
    Records(#[serde(with = "serde_bytes")] Vec<u8>),
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorCode {
    /// The request was malformed or named something invalid.
    BadRequest,
    /// Not enough free capacity.
    NoCapacity,
    /// Not found.
    NotFound,
    /// The name belongs to another publisher.
    NotOwner,
    /// The publisher has used up its quota on the node.
    Quota,
    /// A version whose pieces are not where the network can prove them.
    NotPlaced,
    /// The node is shedding load; try again later.
    Busy,
    /// The piece could not be fetched or did not match its hash.
    FetchFailed,
    /// The node's copy of the piece is corrupt (it deletes it).
    Corrupt,
    /// Something failed on the node.
    Internal,
}

/// A control-plane response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Request::Info`].
    Info(NodeInfo),
    /// Answer to [`Request::Peers`].
    Peers(Vec<NodeInfo>),
    /// The piece is stored; `already` if it was held before the request.
    Held {
        /// Whether nothing had to be fetched.
        already: bool,
    },
    /// The manifest is stored; `new` if it was not held before.
    Published {
        /// Whether the manifest was new to this node.
        new: bool,
    },
    /// Answer to [`Request::Datasets`].
    Datasets(Vec<DatasetSummary>),
    /// Answer to [`Request::Versions`].
    Versions(Vec<[u8; 32]>),
    /// Answer to [`Request::Manifest`].
    Manifest(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Answer to [`Request::History`].
    History(Vec<VersionSummary>),
    /// Answer to [`Request::Locate`]: for each piece asked, the nodes known to hold it.
    Located(Vec<Vec<NodeRef>>),
    /// Answer to [`Request::Challenge`]: an encoded `proofs::Proof`.
    Proof(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Answer to [`Request::Ledger`].
    Ledger(Vec<LedgerEntry>),
    /// Answer to [`Request::Place`]: how many records this node keeps as a holder.
    Placed {
        /// Records kept.
        kept: u32,
    },
    /// Answer to [`Request::Placements`]: per key, the record found, if any.
    Placements(Vec<Option<serde_bytes::ByteBuf>>),
    /// Answer to [`Request::Holdings`]: how many of its pieces were taken.
    Heard {
        /// Pieces taken into the holder table.
        taken: u32,
    },
    /// Answer to [`Request::Records`]: how many records were taken into the ledger.
    RecordsTaken {
        /// Records taken.
        taken: u32,
    },
    /// Answer to [`Request::Standing`].
    Standing {
        /// Per peer asked, in order: its trust in the answering node's ledger.
        trust: Vec<Trust>,
        /// Whether the network's nodes count the subnet a node is reached at as its
        /// failure domain (not a network that is one site).
        subnets: bool,
    },
    /// The request was refused.
    Error {
        /// Why, for programs.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
}

impl Request {
    /// Its name, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Peers => "peers",
            Self::Hold { .. } => "hold",
            Self::Publish { .. } => "publish",
            Self::Datasets => "datasets",
            Self::Versions => "versions",
            Self::Manifest { .. } => "manifest",
            Self::History { .. } => "history",
            Self::Locate { .. } => "locate",
            Self::Challenge { .. } => "challenge",
            Self::Ledger => "ledger",
            Self::LocateStripes { .. } => "locate_stripes",
            Self::Place { .. } => "place",
            Self::Placements { .. } => "placements",
            Self::Holdings(_) => "holdings",
            Self::Standing { .. } => "standing",
            Self::Records(_) => "records",
        }
    }
}

impl Response {
    /// Its name, for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Info(_) => "info",
            Self::Peers(_) => "peers",
            Self::Held { .. } => "held",
            Self::Published { .. } => "published",
            Self::Datasets(_) => "datasets",
            Self::Versions(_) => "versions",
            Self::Manifest(_) => "manifest",
            Self::History(_) => "history",
            Self::Located(_) => "located",
            Self::Proof(_) => "proof",
            Self::Ledger(_) => "ledger",
            Self::Placed { .. } => "placed",
            Self::Placements(_) => "placements",
            Self::Heard { .. } => "heard",
            Self::RecordsTaken { .. } => "records_taken",
            Self::Standing { .. } => "standing",
            Self::Error { .. } => "error",
        }
    }
}

/// One node's standing in a [`Response::Ledger`], computed by the answering node from the
/// audit records others signed about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The node's libp2p peer id, as text.
    pub peer: String,
    /// Its standing.
    pub reputation: crate::audit::Reputation,
}

/// Encodes signed audit records for [`Request::Records`] (fixed-size records back to
/// back).
pub fn encode_records(records: &[crate::audit::SignedRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len() * crate::audit::RECORD_LEN);
    for r in records.iter().take(AUDIT_BATCH) {
        out.extend_from_slice(&r.encode());
    }
    out
}

/// Decodes a [`Request::Records`] batch into records whose signatures are still
/// unchecked (checking them is the expensive part, done on the blocking pool for records
/// that pass the ledger's cheap filters), or `None` if the bytes are not a whole number
/// of well formed records, or too many.
pub fn decode_records(bytes: &[u8]) -> Option<Vec<crate::audit::SignedRecord>> {
    let len = crate::audit::RECORD_LEN;
    if !bytes.len().is_multiple_of(len) || bytes.len() / len > AUDIT_BATCH {
        return None;
    }
    bytes
        .chunks_exact(len)
        .map(|c| crate::audit::SignedRecord::decode(c).ok())
        .collect()
}

/// A node as named in a [`Response::Located`]: enough to reach both of its planes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRef {
    /// libp2p peer id, as text.
    pub peer: String,
    /// The data plane address.
    pub data: DataAddr,
}

/// A holdings announcement: the sender holds these pieces. It travels as a direct
/// request ([`Request::Holdings`]), whose connection says who sent it, so a node can only
/// speak for itself.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Holdings {
    /// Where to fetch them.
    pub data: DataAddr,
    /// Piece ids (at most [`HOLDINGS_BATCH`]).
    pub pieces: Vec<[u8; 32]>,
    /// Pieces it no longer holds.
    pub dropped: Vec<[u8; 32]>,
}

const HOLDINGS_VERSION: u8 = 1;

impl Holdings {
    /// Encodes: 32 bytes per piece.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + 32 * (self.pieces.len() + self.dropped.len()));
        w.u8(HOLDINGS_VERSION);
        w.raw(&self.data.id);
        let addrs = &self.data.addrs[..self.data.addrs.len().min(MAX_DATA_ADDRS)];
        w.u32(addrs.len() as u32);
        for a in addrs {
            w.str(&a.to_string());
        }
        for list in [&self.pieces, &self.dropped] {
            w.u32(list.len() as u32);
            for p in list {
                w.raw(p);
            }
        }
        w.into_bytes()
    }

    /// Decodes; `None` for anything malformed or over the limits.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let mut r = Reader::new(bytes);
        r.version("holdings", HOLDINGS_VERSION).ok()?;
        let id = r.array::<32>("endpoint id").ok()?;
        let n = r.count(MAX_DATA_ADDRS, 1, "addresses").ok()?;
        let mut addrs = Vec::with_capacity(n);
        for _ in 0..n {
            addrs.push(r.str(64, "address").ok()?.parse().ok()?);
        }
        let mut lists = [Vec::new(), Vec::new()];
        for list in &mut lists {
            let n = r.count(HOLDINGS_BATCH, 32, "pieces").ok()?;
            list.reserve_exact(n);
            for _ in 0..n {
                list.push(r.array::<32>("piece").ok()?);
            }
        }
        r.finish().ok()?;
        let [pieces, dropped] = lists;
        Some(Self {
            data: DataAddr { id, addrs },
            pieces,
            dropped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any bytes from a peer decode or are refused; never a panic, and what decodes
        /// survives a second round trip unchanged.
        #[test]
        fn holdings_decoder_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Some(h) = Holdings::decode(&bytes) {
                let again = Holdings::decode(&h.encode()).expect("re-decodes");
                prop_assert_eq!(again.pieces, h.pieces);
                prop_assert_eq!(again.data, h.data);
            }
        }

        /// Valid announcements with one byte changed never panic the decoder.
        #[test]
        fn holdings_decoder_takes_mutated_announcements(n in 0usize..8, at in any::<usize>(), to in any::<u8>()) {
            let h = Holdings {
                data: DataAddr { id: [5; 32], addrs: vec![SocketAddr::from(([127, 0, 0, 1], 7420))] },
                pieces: (0..n).map(|i| [i as u8; 32]).collect(),
                dropped: vec![],
            };
            let mut b = h.encode();
            let i = at % b.len();
            b[i] = to;
            let _ = Holdings::decode(&b);
        }

        #[test]
        fn holdings_roundtrip(n in 0usize..50, d in 0usize..5, port in any::<u16>()) {
            let h = Holdings {
                data: DataAddr { id: [3; 32], addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))] },
                pieces: (0..n).map(|i| [i as u8; 32]).collect(),
                dropped: (0..d).map(|i| [i as u8 ^ 0xff; 32]).collect(),
            };
            let b = h.encode();
            let back = Holdings::decode(&b).expect("decodes");
            prop_assert_eq!(back.pieces, h.pieces);
            prop_assert_eq!(back.dropped, h.dropped);
            prop_assert_eq!(back.data, h.data);
            prop_assert!(Holdings::decode(&b[..b.len() - 1]).is_none());
        }
    }

    proptest! {
        /// A table of piece holders names, for each piece, the node it was built with,
        /// and fits exactly the manifest it was built for; any bytes from a peer are
        /// either refused by `fits` or read without a panic.
        #[test]
        fn piece_holders_name_what_they_were_built_with(
            nodes in 1usize..40,
            picks in proptest::collection::vec(proptest::option::of(any::<u16>()), 0..300),
            junk in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let table: Vec<DataAddr> = (0..nodes).map(|i| DataAddr { id: [i as u8; 32], addrs: vec![] }).collect();
            let picks: Vec<Option<u16>> = picks.iter().map(|p| p.map(|p| p % nodes as u16)).collect();
            let h = PieceHolders::new(table.clone(), picks.iter().copied());
            prop_assert!(h.fits(picks.len()));
            prop_assert!(!h.fits(picks.len() + 1));
            for (i, p) in picks.iter().enumerate() {
                prop_assert_eq!(h.holder_of(i), p.map(|p| &table[usize::from(p)]));
            }
            prop_assert!(h.holder_of(picks.len()).is_none());
            let hostile = PieceHolders { nodes: table, of_piece: junk };
            if hostile.fits(hostile.of_piece.len() / 2) {
                for i in 0..hostile.of_piece.len() / 2 {
                    let _ = hostile.holder_of(i);
                }
            }
        }
    }

    #[test]
    fn a_table_of_piece_holders_naming_no_node_of_its_own_does_not_fit() {
        let one = vec![DataAddr {
            id: [1; 32],
            addrs: vec![],
        }];
        let bad = PieceHolders {
            nodes: one.clone(),
            of_piece: 1u16.to_le_bytes().to_vec(),
        };
        assert!(!bad.fits(1));
        let none = PieceHolders::new(one.clone(), [None]);
        assert!(none.fits(1));
        assert!(none.holder_of(0).is_none());
        let odd = PieceHolders {
            nodes: one,
            of_piece: vec![0, 0, 0],
        };
        assert!(!odd.fits(1) && !odd.fits(2));
        let many = PieceHolders::new(
            vec![
                DataAddr {
                    id: [2; 32],
                    addrs: vec![]
                };
                MAX_PEERS_LISTED + 1
            ],
            [Some(0)],
        );
        assert!(!many.fits(1));
    }

    #[test]
    fn holdings_roundtrip_and_limits() {
        let h = Holdings {
            data: DataAddr {
                id: [7; 32],
                addrs: vec!["127.0.0.1:4000".parse().expect("addr")],
            },
            pieces: vec![[1; 32], [2; 32]],
            dropped: vec![],
        };
        let back = Holdings::decode(&h.encode()).expect("decodes");
        assert_eq!(back.pieces, h.pieces);
        assert_eq!(back.data, h.data);
        let big = Holdings {
            pieces: vec![[0; 32]; HOLDINGS_BATCH + 1],
            ..h
        };
        assert!(Holdings::decode(&big.encode()).is_none());
        assert!(Holdings::decode(b"\xff\x00garbage").is_none());
    }
}
