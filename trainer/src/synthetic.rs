//! Generated training data with a known structure, for tests and benchmarks: what a model
//! must learn is known, so an accuracy threshold means something.

/// IDX files (the MNIST layout) of `n` 8x8 greyscale images in 4 classes, and their
/// labels: class `c` is a bright 3x3 square in quadrant `c`, placed at random within it,
/// on dim noise. No single pixel gives the class away; a CNN that finds the square is near
/// 1.0 accurate, and chance is 0.25. The same `seed` gives the same bytes.
///
/// Returns `(images, labels)`: the contents of `*-images-idx3-ubyte` and
/// `*-labels-idx1-ubyte`.
pub fn square_images(n: u32, seed: u64) -> (Vec<u8>, Vec<u8>) {
    let mut x = seed | 1;
    let mut rnd = move |m: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % m
    };
    let mut img = vec![0, 0, 8, 3];
    for d in [n, 8, 8] {
        img.extend_from_slice(&d.to_be_bytes());
    }
    let mut lbl = vec![0, 0, 8, 1];
    lbl.extend_from_slice(&n.to_be_bytes());
    for _ in 0..n {
        let c = rnd(4) as usize;
        let mut px = [0u8; 64];
        for p in &mut px {
            *p = rnd(80) as u8;
        }
        let (r0, c0) = ((c / 2) * 4 + rnd(2) as usize, (c % 2) * 4 + rnd(2) as usize);
        for r in r0..r0 + 3 {
            for cc in c0..c0 + 3 {
                px[r * 8 + cc] = 200 + rnd(56) as u8;
            }
        }
        img.extend_from_slice(&px);
        lbl.push(c as u8);
    }
    (img, lbl)
}
