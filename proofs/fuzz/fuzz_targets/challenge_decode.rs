//! Decodes arbitrary bytes as a challenge; what decodes must re-encode to the same bytes
//! and yield a valid index set.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(c) = proofs::Challenge::decode(data) {
        assert_eq!(c.encode(), data);
        let idx = c.indices();
        assert!(idx.windows(2).all(|w| w[0] < w[1]));
        assert!(idx.len() <= usize::from(proofs::MAX_SAMPLES));
    }
});
