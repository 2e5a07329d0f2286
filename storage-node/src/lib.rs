//! The Cairn storage engine, and (in later layers) the storage node built on it.
//!
//! - [`erasure`]: files to stripes to `k + m` Reed-Solomon pieces, and back from any `k`.
//! - [`manifest`]: the signed, content-addressed description of a dataset version.
//! - [`store`]: a node's piece store (files) and metadata (rocksdb), crash-safe.
//! - [`engine`]: encode a directory into a manifest and pieces; rebuild files from pieces.
//! - [`audit`]: signed audit records, the ledger of reputation and contribution, and
//!   the choice of what to challenge each round.
//! - [`repair`]: when a stripe needs repair, who takes it (claims) and where pieces go.
//! - [`ids`]: identifier newtypes, dataset names and safe relative paths.
//! - [`location`]: placement records, the signed and versioned holders of a stripe.
//! - [`local`]: several stores in one process, placement and audits without a network.
//! - [`net`]: storage nodes on a real network (libp2p control plane, iroh data plane),
//!   and the client that pushes and pulls datasets through them.

pub mod audit;
pub mod engine;
pub mod erasure;
pub mod ids;
pub mod local;
pub mod location;
pub mod manifest;
pub mod net;
pub mod repair;
pub mod store;

pub use engine::{EncodeOptions, EngineError, Offer, PieceSlot, StripeAssembler};
pub use erasure::{ErasureError, ErasureParams};
pub use ids::{DatasetName, IdError, NodeId, PieceId, PublisherId, RelPath, StripeId, VersionId};
pub use manifest::{FileEntry, Manifest, ManifestError, PieceRef, PublisherKey, Stripe};
pub use store::{OpenReport, PieceStore, Put, StoreError, StoreOptions};

#[cfg(test)]
mod tests;
