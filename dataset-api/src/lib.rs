//! The HTTP API every node serves (axum): list, info, push, and pull with Range.
//!
//! Empty until the networked node exists: it serves the manifests and pieces that
//! `storage-node` stores. **Architecture invariant:** only this crate knows HTTP and JSON.
