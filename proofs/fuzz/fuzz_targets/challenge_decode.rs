//! Decodes arbitrary bytes as a challenge; what decodes must re-encode to the same bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(c) = proofs::Challenge::decode(data) {
        assert_eq!(c.encode(), data);
        let _ = c.indices(u64::from(data.len() as u32) + 1);
    }
});
