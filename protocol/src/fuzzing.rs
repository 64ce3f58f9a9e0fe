//! Oracles shared by the cargo-fuzz targets (`fuzz/`) and the seeded smoke
//! tests that run in `cargo test`.

use crate::snapshot::Manifest;

/// Decoding arbitrary bytes as a manifest must never panic; whatever decodes
/// and passes `check` must re-encode to bytes that decode to the same value.
/// Returns whether `data` decoded (the smoke test counts them).
pub fn manifest_oracle(data: &[u8]) -> bool {
    let Ok(m) = crate::cbor::decode::<Manifest>(data) else {
        return false;
    };
    let _ = m.check();
    let (bytes, _) = m.encode_and_hash();
    let again: Manifest = crate::cbor::decode(&bytes).expect("a re-encoded manifest decodes");
    assert_eq!(again, m, "manifest round trip changed the value");
    true
}

/// Writes a smoke test's unmutated samples as seed inputs of fuzz target
/// `target`, into `$MESHNODE_FUZZ_SEED_DIR/target/` when that is set (it is
/// not in a normal run). Without seeds, libFuzzer's short CI run never built
/// a manifest that decodes (1.8 million inputs tried), so fuzz/seeds/ holds
/// these, made with `MESHNODE_FUZZ_SEED_DIR=$PWD/fuzz/seeds cargo test -p
/// meshnode-protocol seeded_mutations`, and scripts/fuzz-smoke.sh reads them.
#[cfg(test)]
pub(crate) fn write_seeds(target: &str, samples: &[Vec<u8>]) {
    let Some(dir) = std::env::var_os("MESHNODE_FUZZ_SEED_DIR") else {
        return;
    };
    let dir = std::path::Path::new(&dir).join(target);
    std::fs::create_dir_all(&dir).expect("the seed directory can be made");
    for (i, s) in samples.iter().enumerate() {
        std::fs::write(dir.join(format!("sample-{i}")), s).expect("a seed can be written");
    }
}

/// A seeded smoke run's check that it got past the decoders' error path: at
/// least `min_per_mille` of every 1000 of its `total` mutated inputs decoded
/// (or, for the snapshot oracle, passed validation and ran). Each run's floor
/// is about half of what it measured when the floor was set (the test names
/// both), so that a mutator or a sample that only produces garbage fails,
/// while a format change that moves the share a little does not.
#[track_caller]
pub fn assert_decoded_share(run: &str, decoded: usize, total: usize, min_per_mille: usize) {
    assert!(total > 0, "{run}: no mutated inputs were tried");
    assert!(
        decoded * 1000 >= total * min_per_mille,
        "{run}: only {decoded} of {total} mutated inputs decoded ({} per mille), below the floor of \
         {min_per_mille} per mille: the run mostly exercised the error path",
        decoded * 1000 / total
    );
}

/// A small deterministic PRNG (splitmix64) for seeded smoke tests, so that a
/// failure names a seed that replays it.
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Mutates `input` in one of a few ways: flip bits, truncate, splice random
/// bytes, duplicate a range.
pub fn mutate(rng: &mut SplitMix64, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    match rng.below(4) {
        0 => {
            for _ in 0..=rng.below(8) {
                if !v.is_empty() {
                    let i = rng.below(v.len() as u64) as usize;
                    v[i] ^= 1 << rng.below(8);
                }
            }
        }
        1 => v.truncate(rng.below(v.len() as u64 + 1) as usize),
        2 => {
            let at = rng.below(v.len() as u64 + 1) as usize;
            let junk: Vec<u8> = (0..rng.below(16)).map(|_| rng.next_u64() as u8).collect();
            v.splice(at..at, junk);
        }
        _ => {
            if !v.is_empty() {
                let a = rng.below(v.len() as u64) as usize;
                let b = (a + rng.below(64) as usize).min(v.len());
                let dup = v[a..b].to_vec();
                v.splice(b..b, dup);
            }
        }
    }
    v
}

/// The fuzz oracles' common check: if `data` decodes as a `T`, the value
/// re-encodes and decodes to itself.
pub fn round_trip<T>(data: &[u8]) -> Option<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let v: T = crate::cbor::decode(data).ok()?;
    let again: T =
        crate::cbor::decode(&crate::cbor::encode(&v)).expect("a re-encoded message decodes");
    assert_eq!(again, v, "round trip changed the value");
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Measured (seed 0x5eed_0001): 742 of 20,000 decode, 37 per mille.
    /// Most mutations break a CBOR header or length; the floor is half that.
    const MANIFEST_MIN_DECODED_PER_MILLE: usize = 18;

    /// Seeded smoke run of the manifest fuzz target: 20,000 mutations of a
    /// valid manifest, a share of which must still decode. A failure prints
    /// the seed and case to replay.
    #[test]
    fn manifest_decoder_survives_seeded_mutations() {
        let (valid, _) = crate::snapshot::tests::sample().encode_and_hash();
        assert!(manifest_oracle(&valid), "the unmutated manifest decodes");
        write_seeds("manifest_decode", std::slice::from_ref(&valid));
        let seed = 0x5eed_0001;
        let mut rng = SplitMix64(seed);
        let cases = 20_000;
        let mut decoded = 0;
        for case in 0..cases {
            let input = mutate(&mut rng, &valid);
            let result = std::panic::catch_unwind(|| manifest_oracle(&input));
            match result {
                Ok(true) => decoded += 1,
                Ok(false) => {}
                Err(_) => panic!("seed {seed:#x} case {case} panicked on {input:02x?}"),
            }
        }
        eprintln!("manifest: {decoded} of {cases} mutated inputs decoded");
        assert_decoded_share("manifest", decoded, cases, MANIFEST_MIN_DECODED_PER_MILLE);
    }
}
