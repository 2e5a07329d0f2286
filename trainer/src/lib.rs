//! Training on shards streamed from the network (burn).
//!
//! Empty until the networked node exists: it will read a version's manifest, fetch any `k`
//! pieces per stripe from the fastest holders, decode, parse samples and feed burn batches.
