//! Decodes arbitrary bytes as a proof and verifies whatever decodes. Must never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| proofs::fuzz_proof_decoder(data));
