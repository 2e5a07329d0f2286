//! Training on samples streamed from the network (burn).
//!
//! - [`format`]: CSV and IDX, located by a scan or a header, parsed a sample at a time.
//! - [`order`]: the epoch's sample order per rank: block shuffle, windowed mixing,
//!   resumable from any position.

pub mod disk_cache;
pub mod format;
pub mod loader;
pub mod model;
pub mod order;
pub mod samples;
pub mod source;
pub mod synthetic;
#[cfg(test)]
mod tests;
pub mod train;
