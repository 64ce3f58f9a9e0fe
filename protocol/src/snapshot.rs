//! The snapshot manifest: everything a dock needs to resume a captured
//! vessel, except the chunk contents it names.
//!
//! A snapshot is a manifest plus chunks. Chunks are fixed-size slices of
//! linear memory (and of module binaries), each named by its BLAKE3 hash; an
//! all-zero memory chunk is implicit and never stored. The manifest is
//! encoded as versioned CBOR and is itself named by the BLAKE3 hash of its
//! encoding. See `docs/snapshot-format.md`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::limits::{
    MAX_FRAMES, MAX_GLOBALS, MAX_LOCALS_PER_FRAME, MAX_MEMORY_BYTES, MAX_MODULE_BYTES,
    MAX_TOTAL_FRAME_VALUES,
};
use crate::wasi::WasiState;

/// The manifest format this build writes. A reader refuses other versions
/// with an error that names both.
pub const MANIFEST_VERSION: u32 = 1;

/// Size of a memory or module chunk. One wasm page: memory grows in pages,
/// so chunk boundaries never move when it grows. Measured against 4 and
/// 16 KiB in docs/benchmarks.md.
pub const CHUNK_SIZE_BYTES: u32 = 64 * 1024;

/// A BLAKE3 hash: names chunks, modules and manifests.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Hash> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Hash(out))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", &self.to_hex()[..16])
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Hash {
    /// The BLAKE3 hash of `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }
}

// A hash travels as a CBOR byte string of exactly 32 bytes.
impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Hash;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a 32-byte BLAKE3 hash")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Hash, E> {
                let arr: [u8; 32] = v
                    .try_into()
                    .map_err(|_| E::invalid_length(v.len(), &self))?;
                Ok(Hash(arr))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A typed wasm value, as it travels. Floats travel as their bits, so NaN
/// payloads survive exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    I32(i32),
    I64(i64),
    F32(u32),
    F64(u64),
    /// A `funcref`: `None` is null, `Some(i)` is function index `i`.
    FuncRef(Option<u32>),
    /// An `externref`; only null can be captured.
    ExternRefNull,
}

/// One captured wasm frame: a function stopped at one of its migration
/// points, with every local (parameters first) in declaration order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Frame {
    /// Function index in the instrumented module.
    pub func: u32,
    /// Migration point index within that function.
    pub point: u32,
    pub locals: Vec<Value>,
}

/// A byte image (memory or module) cut into chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkedImage {
    pub size_bytes: u64,
    /// One entry per `CHUNK_SIZE_BYTES` slice (the last may be short);
    /// `None` is an all-zero chunk, which is never stored.
    pub chunks: Vec<Option<Hash>>,
}

impl ChunkedImage {
    /// How many chunks an image of `size_bytes` has.
    pub fn chunk_count(size_bytes: u64) -> u64 {
        size_bytes.div_ceil(CHUNK_SIZE_BYTES as u64)
    }
}

/// Which module the frames belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModuleRef {
    /// BLAKE3 of the module as deployed.
    pub original_hash: Hash,
    /// The original module's bytes, chunked.
    pub original: ChunkedImage,
    /// The rewriter that instrumented it; point indices mean something only
    /// for its output.
    pub rewriter_version: String,
    /// Whether the rewriter added its countdown global (for deterministic
    /// "capture at the N-th point" runs); part of what the output depends on.
    pub countdown: bool,
    /// BLAKE3 of the instrumented module. A dock must reproduce exactly this
    /// module (the rewriter is deterministic) or refuse the snapshot.
    pub instrumented_hash: Hash,
}

/// Which export was running when the vessel was captured; a resume calls
/// the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Entry {
    /// The module's start function, which the rewriter turned into an export.
    Start,
    /// `_start`, the WASI command's main entry.
    Main,
}

/// The limits the vessel ran under; the resuming dock applies them again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VesselLimits {
    pub max_memory_bytes: u64,
    pub max_call_depth: u64,
}

/// A captured vessel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub module: ModuleRef,
    /// Linear memory 0.
    pub memory: ChunkedImage,
    /// Every global of the original module, in index order (imported ones
    /// first), as the instrumented module exports them.
    pub globals: Vec<Value>,
    /// Which passive data segments were dropped (bit k: the k-th passive
    /// segment), re-dropped on resume because wasmi cannot drop them from
    /// outside.
    pub data_dropped: u64,
    /// The export that was running.
    pub entry: Entry,
    /// The captured call stack, outermost first.
    pub frames: Vec<Frame>,
    pub wasi: WasiState,
    pub limits: VesselLimits,
    /// Migration points passed since the vessel first started (for
    /// `--checkpoint-at-point` and for logs).
    pub points_passed: u64,
}

/// Why a manifest is refused before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest version {found} is not supported (this build reads version {supported})")]
    Version { found: u32, supported: u32 },
    #[error("{what} is {found}, over the limit of {limit}")]
    Limit {
        what: &'static str,
        found: u64,
        limit: u64,
    },
    #[error("{what} has {found} chunks but its size of {size_bytes} bytes needs {expected}")]
    ChunkCount {
        what: &'static str,
        found: u64,
        expected: u64,
        size_bytes: u64,
    },
    #[error("memory size {size_bytes} is not a whole number of 64 KiB pages")]
    MemoryNotPages { size_bytes: u64 },
    #[error("no frames: a captured vessel always has at least its entry frame")]
    NoFrames,
}

impl Manifest {
    /// Structural checks that need no module: version, sizes and counts
    /// against limits, chunk lists against sizes. Type checks against the
    /// module's function signatures happen in the dock.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Version {
                found: self.version,
                supported: MANIFEST_VERSION,
            });
        }
        let limit = |what, found: u64, limit: u64| {
            if found > limit {
                Err(ManifestError::Limit { what, found, limit })
            } else {
                Ok(())
            }
        };
        limit(
            "memory size in bytes",
            self.memory.size_bytes,
            MAX_MEMORY_BYTES,
        )?;
        limit(
            "module size in bytes",
            self.module.original.size_bytes,
            MAX_MODULE_BYTES,
        )?;
        limit("global count", self.globals.len() as u64, MAX_GLOBALS)?;
        limit("frame count", self.frames.len() as u64, MAX_FRAMES)?;
        let mut total = 0u64;
        for f in &self.frames {
            limit(
                "locals in one frame",
                f.locals.len() as u64,
                MAX_LOCALS_PER_FRAME,
            )?;
            total += f.locals.len() as u64;
        }
        limit("values in all frames", total, MAX_TOTAL_FRAME_VALUES)?;
        if !self.memory.size_bytes.is_multiple_of(65536) {
            return Err(ManifestError::MemoryNotPages {
                size_bytes: self.memory.size_bytes,
            });
        }
        for (what, img) in [("memory", &self.memory), ("module", &self.module.original)] {
            let expected = ChunkedImage::chunk_count(img.size_bytes);
            if img.chunks.len() as u64 != expected {
                return Err(ManifestError::ChunkCount {
                    what,
                    found: img.chunks.len() as u64,
                    expected,
                    size_bytes: img.size_bytes,
                });
            }
        }
        if self.frames.is_empty() {
            return Err(ManifestError::NoFrames);
        }
        Ok(())
    }

    /// The manifest's name: BLAKE3 of its CBOR encoding.
    pub fn encode_and_hash(&self) -> (Vec<u8>, Hash) {
        let bytes = crate::cbor::encode(self);
        let hash = Hash::of(&bytes);
        (bytes, hash)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::wasi::{ClockState, StdioPositions};

    pub(crate) fn sample() -> Manifest {
        let h = Hash::of(b"x");
        Manifest {
            version: MANIFEST_VERSION,
            module: ModuleRef {
                original_hash: h,
                original: ChunkedImage {
                    size_bytes: 70_000,
                    chunks: vec![Some(h), Some(h)],
                },
                rewriter_version: "test".into(),
                countdown: false,
                instrumented_hash: h,
            },
            memory: ChunkedImage {
                size_bytes: 131_072,
                chunks: vec![None, Some(h)],
            },
            globals: vec![
                Value::I32(-1),
                Value::F64(f64::NAN.to_bits() | 1),
                Value::FuncRef(None),
            ],
            data_dropped: 0b101,
            entry: Entry::Main,
            frames: vec![Frame {
                func: 3,
                point: 1,
                locals: vec![Value::I64(7), Value::F32(0x7fc0_0001)],
            }],
            wasi: WasiState {
                args: vec![b"a".to_vec()],
                env: vec![],
                preopens: vec![],
                fds: Default::default(),
                clocks: ClockState { monotonic_ns: 5 },
                stdio: StdioPositions::default(),
                pending_poll_deadlines_ns: None,
            },
            limits: VesselLimits {
                max_memory_bytes: 1 << 20,
                max_call_depth: 1000,
            },
            points_passed: 9,
        }
    }

    #[test]
    fn manifest_round_trips_and_keeps_nan_payloads() {
        let m = sample();
        m.check().unwrap();
        let (bytes, h) = m.encode_and_hash();
        let back: Manifest = crate::cbor::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encode_and_hash().1, h, "encoding is deterministic");
    }

    #[test]
    fn check_refuses_wrong_version_chunk_counts_and_sizes() {
        let mut m = sample();
        m.version = 99;
        assert_eq!(
            m.check(),
            Err(ManifestError::Version {
                found: 99,
                supported: MANIFEST_VERSION
            })
        );
        let mut m = sample();
        m.memory.chunks.pop();
        assert!(matches!(
            m.check(),
            Err(ManifestError::ChunkCount { what: "memory", .. })
        ));
        let mut m = sample();
        m.memory.size_bytes = 100;
        assert!(matches!(
            m.check(),
            Err(ManifestError::MemoryNotPages { .. })
        ));
        let mut m = sample();
        m.memory.size_bytes = MAX_MEMORY_BYTES + 65536;
        assert!(matches!(
            m.check(),
            Err(ManifestError::Limit {
                what: "memory size in bytes",
                ..
            })
        ));
        let mut m = sample();
        m.frames.clear();
        assert_eq!(m.check(), Err(ManifestError::NoFrames));
    }

    #[test]
    fn hash_hex_round_trips_and_rejects_junk() {
        let h = Hash::of(b"abc");
        assert_eq!(Hash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(Hash::from_hex("zz"), None);
        assert_eq!(Hash::from_hex(&"g".repeat(64)), None);
        assert_eq!(Hash::from_hex(&"é".repeat(32)), None);
    }
}
