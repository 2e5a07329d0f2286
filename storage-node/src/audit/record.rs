//! Audit records: who proved what, signed by the auditor, in a fixed 182-byte encoding.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use proofs::codec::{Reader, Writer};

use crate::ids::{NodeId, PieceId};

/// Encoded length of a [`SignedRecord`].
pub const RECORD_LEN: usize = 1 + 32 + 32 + 32 + 4 + 8 + 8 + 1 + 64;
const RECORD_VERSION: u8 = 1;
const SIGNING_CONTEXT: &[u8] = b"cairn audit record v1\0";

/// How an audit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    /// The proof verified (or the bytes fetched hashed to the piece).
    Pass,
    /// The holder said it does not have the piece.
    Missing,
    /// The holder found its own copy corrupt (and drops it).
    Corrupt,
    /// The holder answered with a proof that does not verify.
    BadProof,
    /// The holder served bytes that do not hash to the piece.
    WrongBytes,
    /// The holder did not answer within the deadline, or could not be reached.
    Timeout,
}

impl Outcome {
    fn code(self) -> u8 {
        match self {
            Self::Pass => 0,
            Self::Missing => 1,
            Self::Corrupt => 2,
            Self::BadProof => 3,
            Self::WrongBytes => 4,
            Self::Timeout => 5,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            0 => Self::Pass,
            1 => Self::Missing,
            2 => Self::Corrupt,
            3 => Self::BadProof,
            4 => Self::WrongBytes,
            5 => Self::Timeout,
            _ => return None,
        })
    }

    /// Whether the audit passed.
    pub fn passed(self) -> bool {
        self == Self::Pass
    }

    /// Whether the holder answered with data that is not what it committed to: a forged
    /// proof or wrong bytes. An honest node never does: it checks its own copy before it
    /// answers and reports corruption instead.
    pub fn forged(self) -> bool {
        matches!(self, Self::BadProof | Self::WrongBytes)
    }

    /// A short name for tables and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Pass => "pass",
            Self::Missing => "missing",
            Self::Corrupt => "corrupt",
            Self::BadProof => "bad proof",
            Self::WrongBytes => "wrong bytes",
            Self::Timeout => "timeout",
        }
    }
}

/// One audit result, as its auditor states it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AuditRecord {
    /// Who challenged.
    pub auditor: NodeId,
    /// Who was challenged.
    pub holder: NodeId,
    /// The piece.
    pub piece: PieceId,
    /// The piece's length (for contribution accounting).
    pub len: u32,
    /// The auditor's round number.
    pub round: u64,
    /// When, seconds since the epoch.
    pub time_unix: u64,
    /// The result.
    pub outcome: Outcome,
}

/// Why a record was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a record.
    #[error("malformed audit record: {0}")]
    Malformed(String),
    /// The signature is not the auditor's.
    #[error("audit record signature does not verify against its auditor's key")]
    BadSignature,
    /// A node audited itself.
    #[error("audit record about its own auditor")]
    SelfAudit,
}

impl AuditRecord {
    fn body(&self) -> Writer {
        let mut w = Writer::with_capacity(RECORD_LEN);
        w.u8(RECORD_VERSION);
        w.raw(&self.auditor.0);
        w.raw(&self.holder.0);
        w.raw(&self.piece.0);
        w.u32(self.len);
        w.u64(self.round);
        w.u64(self.time_unix);
        w.u8(self.outcome.code());
        w
    }

    fn signing_message(&self) -> Vec<u8> {
        let mut m = SIGNING_CONTEXT.to_vec();
        m.extend_from_slice(&self.body().into_bytes());
        m
    }

    /// Signs the record with the auditor's key. `key` must be the auditor's: a record
    /// signed by any other key fails [`SignedRecord::verify`].
    pub fn sign(self, key: &SigningKey) -> SignedRecord {
        let sig = key.sign(&self.signing_message());
        SignedRecord {
            record: self,
            sig: sig.to_bytes(),
        }
    }
}

/// A record with its auditor's signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignedRecord {
    /// The record.
    pub record: AuditRecord,
    /// ed25519 signature by `record.auditor`.
    pub sig: [u8; 64],
}

impl SignedRecord {
    /// The fixed-length encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = self.record.body();
        w.raw(&self.sig);
        w.into_bytes()
    }

    /// Decodes a record; it still has to be [`verified`](Self::verify).
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let bad = |e: proofs::DecodeError| RecordError::Malformed(e.to_string());
        if bytes.len() != RECORD_LEN {
            return Err(RecordError::Malformed(format!(
                "{} bytes, expected {RECORD_LEN}",
                bytes.len()
            )));
        }
        let mut r = Reader::new(bytes);
        r.version("audit record", RECORD_VERSION).map_err(bad)?;
        let auditor = NodeId(r.array::<32>("auditor").map_err(bad)?);
        let holder = NodeId(r.array::<32>("holder").map_err(bad)?);
        let piece = PieceId(r.array::<32>("piece").map_err(bad)?);
        let len = r.u32("length").map_err(bad)?;
        let round = r.u64("round").map_err(bad)?;
        let time_unix = r.u64("time").map_err(bad)?;
        let code = r.u8("outcome").map_err(bad)?;
        let outcome = Outcome::from_code(code)
            .ok_or_else(|| RecordError::Malformed(format!("unknown outcome {code}")))?;
        let sig = r.array::<64>("signature").map_err(bad)?;
        r.finish().map_err(bad)?;
        Ok(Self {
            record: AuditRecord {
                auditor,
                holder,
                piece,
                len,
                round,
                time_unix,
                outcome,
            },
            sig,
        })
    }

    /// Checks the signature against the auditor's key, and that the auditor is not the
    /// holder.
    pub fn verify(&self) -> Result<(), RecordError> {
        if self.record.auditor == self.record.holder {
            return Err(RecordError::SelfAudit);
        }
        let key = VerifyingKey::from_bytes(&self.record.auditor.0)
            .map_err(|_| RecordError::BadSignature)?;
        key.verify_strict(
            &self.record.signing_message(),
            &Signature::from_bytes(&self.sig),
        )
        .map_err(|_| RecordError::BadSignature)
    }

    /// A digest identifying the record (for dropping duplicates and as a storage key).
    pub fn digest(&self) -> [u8; 32] {
        *blake3::hash(&self.encode()).as_bytes()
    }

    /// Decodes and verifies, in one step, bytes from a peer.
    pub fn decode_verified(bytes: &[u8]) -> Result<Self, RecordError> {
        let r = Self::decode(bytes)?;
        r.verify()?;
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(b: u8) -> SigningKey {
        SigningKey::from_bytes(&[b; 32])
    }

    fn id(k: &SigningKey) -> NodeId {
        NodeId(k.verifying_key().to_bytes())
    }

    fn record(auditor: &SigningKey, holder: NodeId, outcome: Outcome, t: u64) -> SignedRecord {
        AuditRecord {
            auditor: id(auditor),
            holder,
            piece: PieceId([9; 32]),
            len: 1000,
            round: t,
            time_unix: t,
            outcome,
        }
        .sign(auditor)
    }

    #[test]
    fn records_sign_verify_and_roundtrip() {
        let a = key(1);
        let r = record(&a, id(&key(2)), Outcome::Pass, 100);
        let bytes = r.encode();
        assert_eq!(bytes.len(), RECORD_LEN);
        let back = SignedRecord::decode_verified(&bytes).expect("verifies");
        assert_eq!(back, r);
    }

    #[test]
    fn a_third_node_cannot_forge_a_record() {
        let (a, h, mallory) = (key(1), key(2), key(3));
        // Mallory signs a failure in A's name: the signature is not A's.
        let forged = AuditRecord {
            auditor: id(&a),
            holder: id(&h),
            piece: PieceId([9; 32]),
            len: 1000,
            round: 1,
            time_unix: 1,
            outcome: Outcome::BadProof,
        }
        .sign(&mallory);
        assert_eq!(forged.verify(), Err(RecordError::BadSignature));
        // Nor can she turn A's pass into a failure: any changed field breaks it.
        let honest = record(&a, id(&h), Outcome::Pass, 5);
        for at in 1..RECORD_LEN {
            let mut b = honest.encode();
            b[at] ^= 0x04;
            assert!(
                SignedRecord::decode_verified(&b).is_err(),
                "byte {at} changed and still verified"
            );
        }
    }

    #[test]
    fn self_audits_do_not_verify() {
        let a = key(1);
        let r = record(&a, id(&a), Outcome::Pass, 1);
        assert_eq!(r.verify(), Err(RecordError::SelfAudit));
    }

    proptest! {
        /// Any bytes decode to a record or are refused, never a panic; what decodes
        /// re-encodes to the same bytes.
        #[test]
        fn record_decoder_takes_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(r) = SignedRecord::decode(&bytes) {
                prop_assert_eq!(r.encode(), bytes);
            }
        }

        #[test]
        fn record_decoder_takes_mutated_records(at in 0usize..RECORD_LEN, to in any::<u8>()) {
            let mut b = record(&key(1), NodeId([2; 32]), Outcome::Pass, 3).encode();
            b[at] = to;
            let _ = SignedRecord::decode_verified(&b);
        }
    }
}
