//! Placement records: where a stripe's pieces are, signed and versioned.
//!
//! A [`PlacementRecord`] names, for each piece index of one stripe, the node that holds
//! it and the socket addresses its data plane listens on. The pushing publisher signs
//! the first one once every piece is acknowledged; the stripe's holders keep it, and
//! Kademlia stores it under [`PlacementKey`], so a reader finds a stripe's holders with
//! one lookup and no node has to know every holder in the network.
//!
//! A record is a hint about where to look, never a reason to trust bytes: every piece
//! fetched through it is still checked against its hash in the manifest. What a record
//! must not do is let anyone but the stripe's publisher (or, after repair, its group,
//! below) say where its pieces are: [`SignedPlacement::check`] takes only a record
//! signed by the publisher of the manifest being read and shaped like the stripe, and
//! [`SignedPlacement::fits`] one shaped like it whose signer was checked on its way in.
//! Of two records for one stripe, the one with the higher `seq` is the current one.
//!
//! Repair moves pieces, and the publisher is not there to sign again: a node of the
//! stripe's group (a holder the current record names) signs an update, which others
//! take only if [`update::moves`] allows it and every piece it moves is shown to have
//! left its old holder and to be held by its new one.
//!
//! **Invariant:** a [`SignedPlacement`] value always carries a valid signature: it is
//! made only by [`PlacementRecord::sign`] or [`SignedPlacement::decode`], which verifies.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ed25519_dalek::{Signature, VerifyingKey};
use proofs::codec::{Reader, Writer};

use crate::{
    erasure::MAX_SHARDS,
    ids::{NodeId, PublisherId, StripeId, VersionId},
    manifest::PublisherKey,
};

/// Socket addresses kept per holder.
pub const MAX_HOLDER_ADDRS: usize = 4;
/// The longest encoding: a full stripe, every holder with every address (IPv6).
pub const MAX_PLACEMENT_LEN: usize =
    HEADER_LEN + MAX_SHARDS as usize * (1 + 32 + 4 + MAX_HOLDER_ADDRS * 19) + 32 + 64;

const FORMAT: u8 = 1;
const HEADER_LEN: usize = 1 + 32 + 32 + 32 + 4 + 4 + 8 + 4;
const SIGNING_CONTEXT: &[u8] = b"cairn placement record v1\0";
const KEY_CONTEXT: &[u8] = b"cairn placement key v1\0";

/// Milliseconds since the epoch: what a record's `seq` is made of.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Where a stripe's record is stored in the DHT: a hash of its publisher and stripe id,
/// so that two publishers of the same bytes never overwrite each other's records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlacementKey(pub [u8; 32]);

impl PlacementKey {
    /// The key of `publisher`'s record for `stripe`.
    pub fn of(publisher: &PublisherId, stripe: &StripeId) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(KEY_CONTEXT);
        h.update(&publisher.0);
        h.update(&stripe.0);
        Self(*h.finalize().as_bytes())
    }
}

/// One piece's holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// The node.
    pub node: NodeId,
    /// Its data plane's direct addresses, at most [`MAX_HOLDER_ADDRS`].
    pub addrs: Vec<SocketAddr>,
}

/// Where one stripe's pieces are, as its publisher states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementRecord {
    /// Whose stripe.
    pub publisher: PublisherId,
    /// The stripe.
    pub stripe: StripeId,
    /// A version that contains the stripe, so a node storing the record can find the
    /// manifest it belongs to, and the stripe's place in it.
    pub version: VersionId,
    /// The file's index in that version.
    pub file: u32,
    /// The stripe's index in that file.
    pub index: u32,
    /// Orders records of one stripe: the higher is current. Milliseconds since the
    /// epoch when the record was made.
    pub seq: u64,
    /// Per piece index, its holder, if any.
    pub holders: Vec<Option<Holder>>,
}

/// Why a placement record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementRecordError {
    /// The bytes are not a record.
    #[error("malformed placement record: {0}")]
    Malformed(String),
    /// The signature is not the signer's.
    #[error("placement record signature does not verify")]
    BadSignature,
    /// Signed by someone other than the stripe's publisher.
    #[error("placement record not signed by the stripe's publisher")]
    NotPublisher,
    /// It describes another stripe, or a stripe of another shape.
    #[error("placement record does not match the stripe: {0}")]
    Mismatch(&'static str),
}

impl PlacementRecord {
    /// The key this record is stored under.
    pub fn key(&self) -> PlacementKey {
        PlacementKey::of(&self.publisher, &self.stripe)
    }

    fn body(&self, signer: &[u8; 32]) -> Writer {
        let mut w = Writer::with_capacity(HEADER_LEN + self.holders.len() * 50 + 96);
        w.u8(FORMAT);
        w.raw(&self.publisher.0);
        w.raw(&self.stripe.0);
        w.raw(&self.version.0);
        w.u32(self.file);
        w.u32(self.index);
        w.u64(self.seq);
        w.u32(self.holders.len() as u32);
        for h in &self.holders {
            match h {
                None => w.u8(0),
                Some(h) => {
                    w.u8(1);
                    w.raw(&h.node.0);
                    w.u32(h.addrs.len() as u32);
                    for a in &h.addrs {
                        match a.ip() {
                            IpAddr::V4(ip) => {
                                w.u8(4);
                                w.raw(&ip.octets());
                            }
                            IpAddr::V6(ip) => {
                                w.u8(6);
                                w.raw(&ip.octets());
                            }
                        }
                        w.u16(a.port());
                    }
                }
            }
        }
        w.raw(signer);
        w
    }

    /// Signs the record as its publisher. Addresses past [`MAX_HOLDER_ADDRS`] are
    /// dropped, and so are IPv6 flow labels and scopes: a record carries IP and port.
    pub fn sign(self, key: &PublisherKey) -> SignedPlacement {
        self.sign_with(key.id().0, |msg| key.sign_bytes(msg))
    }

    /// Signs the record as a node of the stripe's group: a repair's update, which others
    /// take only as [`update::moves`] allows.
    pub fn sign_as_node(self, key: &ed25519_dalek::SigningKey) -> SignedPlacement {
        use ed25519_dalek::Signer;
        self.sign_with(key.verifying_key().to_bytes(), |msg| {
            key.sign(msg).to_bytes()
        })
    }

    fn sign_with(
        mut self,
        signer: [u8; 32],
        sign: impl FnOnce(&[u8]) -> [u8; 64],
    ) -> SignedPlacement {
        for h in self.holders.iter_mut().flatten() {
            h.addrs.truncate(MAX_HOLDER_ADDRS);
            for a in &mut h.addrs {
                *a = SocketAddr::new(a.ip(), a.port());
            }
        }
        self.holders.truncate(MAX_SHARDS as usize);
        let mut bytes = self.body(&signer).into_bytes();
        let mut msg = SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(&bytes);
        bytes.extend_from_slice(&sign(&msg));
        SignedPlacement {
            record: self,
            signer,
            bytes,
        }
    }
}

/// A placement record with a valid signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPlacement {
    record: PlacementRecord,
    signer: [u8; 32],
    bytes: Vec<u8>,
}

impl SignedPlacement {
    /// The record.
    pub fn record(&self) -> &PlacementRecord {
        &self.record
    }

    /// Who signed it: as a publisher's id (its publisher, or a stranger).
    pub fn signer(&self) -> PublisherId {
        PublisherId(self.signer)
    }

    /// Whether its publisher signed it (else a node of the stripe's group did).
    pub fn by_publisher(&self) -> bool {
        self.signer == self.record.publisher.0
    }

    /// Its encoding, as signed.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Decodes bytes from anyone: bounded, never panics, and checks the signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, PlacementRecordError> {
        let (record, signer) = parse(bytes)?;
        let (signed, sig) = bytes.split_at(bytes.len() - 64);
        let key =
            VerifyingKey::from_bytes(&signer).map_err(|_| PlacementRecordError::BadSignature)?;
        let mut msg = SIGNING_CONTEXT.to_vec();
        msg.extend_from_slice(signed);
        let sig: [u8; 64] = sig
            .try_into()
            .map_err(|_| PlacementRecordError::BadSignature)?;
        key.verify_strict(&msg, &Signature::from_bytes(&sig))
            .map_err(|_| PlacementRecordError::BadSignature)?;
        Ok(Self {
            record,
            signer,
            bytes: bytes.to_vec(),
        })
    }

    /// The cheap part of [`decode`](Self::decode): the record as encoded, its signature
    /// unchecked. For filtering before the signature is checked, and for reading back
    /// what was checked before it was stored.
    pub fn peek(bytes: &[u8]) -> Result<PlacementRecord, PlacementRecordError> {
        Ok(parse(bytes)?.0)
    }

    /// Whether this record may say where the stripe `stripe` of `pieces` pieces in
    /// `publisher`'s versions is: signed by that publisher, naming that stripe, with one
    /// entry per piece.
    pub fn check(
        &self,
        publisher: &PublisherId,
        stripe: &StripeId,
        pieces: usize,
    ) -> Result<(), PlacementRecordError> {
        if self.signer != publisher.0 {
            return Err(PlacementRecordError::NotPublisher);
        }
        self.fits(publisher, stripe, pieces)
    }

    /// [`check`](Self::check) but for the signer: a record of `publisher`'s stripe, of
    /// its shape, signed by the publisher or by a node of the group. For a record that
    /// was checked, signer and all, on its way in (a node's own store, a DHT lookup's
    /// chain from the publisher's record).
    pub fn fits(
        &self,
        publisher: &PublisherId,
        stripe: &StripeId,
        pieces: usize,
    ) -> Result<(), PlacementRecordError> {
        if self.record.publisher != *publisher {
            return Err(PlacementRecordError::NotPublisher);
        }
        if self.record.stripe != *stripe {
            return Err(PlacementRecordError::Mismatch("another stripe"));
        }
        if self.record.holders.len() != pieces {
            return Err(PlacementRecordError::Mismatch("another number of pieces"));
        }
        Ok(())
    }
}

/// Decodes a record and its signer, checking nothing but the encoding.
fn parse(bytes: &[u8]) -> Result<(PlacementRecord, [u8; 32]), PlacementRecordError> {
    let bad = |e: proofs::DecodeError| PlacementRecordError::Malformed(e.to_string());
    if bytes.len() > MAX_PLACEMENT_LEN {
        return Err(PlacementRecordError::Malformed(format!(
            "{} bytes, at most {MAX_PLACEMENT_LEN}",
            bytes.len()
        )));
    }
    let mut r = Reader::new(bytes);
    r.version("placement record", FORMAT).map_err(bad)?;
    let publisher = PublisherId(r.array("publisher").map_err(bad)?);
    let stripe = StripeId(r.array("stripe").map_err(bad)?);
    let version = VersionId(r.array("version").map_err(bad)?);
    let file = r.u32("file").map_err(bad)?;
    let index = r.u32("stripe index").map_err(bad)?;
    let seq = r.u64("seq").map_err(bad)?;
    let n = r.count(MAX_SHARDS as usize, 1, "holders").map_err(bad)?;
    let mut holders = Vec::with_capacity(n);
    for _ in 0..n {
        match r.u8("holder tag").map_err(bad)? {
            0 => holders.push(None),
            1 => {
                let node = NodeId(r.array("holder").map_err(bad)?);
                let a = r.count(MAX_HOLDER_ADDRS, 7, "addresses").map_err(bad)?;
                let mut addrs = Vec::with_capacity(a);
                for _ in 0..a {
                    let ip = match r.u8("address family").map_err(bad)? {
                        4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("ipv4").map_err(bad)?)),
                        6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("ipv6").map_err(bad)?)),
                        f => {
                            return Err(PlacementRecordError::Malformed(format!(
                                "address family {f}"
                            )));
                        }
                    };
                    addrs.push(SocketAddr::new(ip, r.u16("port").map_err(bad)?));
                }
                holders.push(Some(Holder { node, addrs }));
            }
            t => {
                return Err(PlacementRecordError::Malformed(format!("holder tag {t}")));
            }
        }
    }
    let signer = r.array::<32>("signer").map_err(bad)?;
    let _sig = r.array::<64>("signature").map_err(bad)?;
    r.finish().map_err(bad)?;
    Ok((
        PlacementRecord {
            publisher,
            stripe,
            version,
            file,
            index,
            seq,
            holders,
        },
        signer,
    ))
}

pub mod update;

#[cfg(test)]
mod tests;
