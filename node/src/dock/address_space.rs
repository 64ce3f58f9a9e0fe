//! A vessel's memory must fit the host's address space (issue 17).
//!
//! A wasm32 memory may ask for up to 4 GiB, and the dock's memory limit
//! (`--max-memory`, the node's `vessel_max_memory_bytes`) may be set as
//! high. On a 64-bit host that is a sliver of the address space. On a
//! 32-bit host (armhf: 32-bit Raspberry Pi OS) it is more than a process can
//! address at all: a linear memory is one contiguous anonymous mapping
//! (`vendor/wasmi_core/src/memory/mapped.rs`), and reserving or growing it
//! past what is free would fail as an allocation error deep in the engine.
//! So the limit a vessel runs under is the configured one or this host's
//! bound, whichever is lower ([`DockConfig::memory_limit`]), and a vessel
//! that already needs more (its declared minimums at deploy, its
//! snapshot's memory at resume or in a migration offer) is refused there,
//! with [`Limit::AddressSpace`] naming why.

use super::limits::Limit;
use super::DockConfig;

/// Most linear memory, all of a vessel's memories together, that a host
/// with 32-bit pointers gives one vessel. Such a process has 3 GiB of user
/// address space at most (2 GiB under some kernels' split), shared with
/// the node's code, heap, thread stacks and the other vessels' memories;
/// and growing a mapping that must move (`mremap`) needs the old and the
/// new size free at once. 1 GiB can still grow by moving, and is all the
/// RAM of the boards that run 32-bit Pi OS.
pub const MAX_MEMORY_BYTES_32_BIT: u64 = 1 << 30;

/// The bound on one vessel's memory for a host whose pointers are
/// `pointer_bits` wide; `None` when there is none below what wasm32 can
/// ask (64-bit: even [`super::limits::MAX_MEMORIES`] full 4 GiB memories
/// are 64 GiB of a 128 TiB address space).
pub const fn address_space_bound(pointer_bits: u32) -> Option<u64> {
    if pointer_bits <= 32 {
        Some(MAX_MEMORY_BYTES_32_BIT)
    } else {
        None
    }
}

/// This host's bound ([`address_space_bound`] of its pointer width).
pub const HOST_ADDRESS_SPACE_BOUND: Option<u64> = address_space_bound(usize::BITS);

/// The memory limit vessels run under, and which limit it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryLimit {
    pub bytes: u64,
    /// [`Limit::MemoryBytes`] (the configured one) or
    /// [`Limit::AddressSpace`] (this host's bound, lower).
    pub limit: Limit,
}

impl MemoryLimit {
    /// The limit in bytes as a host size (a bound below the configured
    /// limit always fits; a configured one came from a `usize`).
    pub fn bytes_usize(&self) -> usize {
        usize::try_from(self.bytes).unwrap_or(usize::MAX)
    }
}

impl DockConfig {
    /// The memory limit vessels run under: the configured one, unless the
    /// host's address space ([`DockConfig::address_space_bytes`]) holds
    /// less.
    pub fn memory_limit(&self) -> MemoryLimit {
        let configured = self.max_memory_bytes as u64;
        match self.address_space_bytes {
            Some(bound) if bound < configured => MemoryLimit {
                bytes: bound,
                limit: Limit::AddressSpace,
            },
            _ => MemoryLimit {
                bytes: configured,
                limit: Limit::MemoryBytes,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::dock::limits::{check_declared, VesselLimiter};
    use crate::dock::DockError;
    use wasmi::ResourceLimiter;

    const GIB: u64 = 1 << 30;

    /// A dock as a 32-bit host has it, configured for `configured` bytes.
    fn dock_32_bit(configured: u64) -> DockConfig {
        DockConfig {
            max_memory_bytes: configured as usize,
            address_space_bytes: address_space_bound(32),
            ..DockConfig::default()
        }
    }

    /// A module with one memory of `pages` 64 KiB pages, minimum.
    fn module_with_memory(pages: u32) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        // Memory section: one memory, no maximum, `pages` as a LEB128.
        let mut leb = Vec::new();
        let mut n = pages;
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                leb.push(byte);
                break;
            }
            leb.push(byte | 0x80);
        }
        m.extend([5, (2 + leb.len()) as u8, 1, 0]);
        m.extend(leb);
        m
    }

    #[test]
    fn the_bound_exists_for_32_bit_pointers_only() {
        assert_eq!(address_space_bound(32), Some(MAX_MEMORY_BYTES_32_BIT));
        assert_eq!(address_space_bound(16), Some(MAX_MEMORY_BYTES_32_BIT));
        assert_eq!(address_space_bound(64), None);
        assert_eq!(
            HOST_ADDRESS_SPACE_BOUND,
            address_space_bound(usize::BITS),
            "the host's bound is its pointer width's"
        );
    }

    #[test]
    fn a_limit_over_a_32_bit_address_space_is_lowered_to_it() {
        let limit = dock_32_bit(2 * GIB).memory_limit();
        assert_eq!(limit.bytes, MAX_MEMORY_BYTES_32_BIT);
        assert_eq!(limit.limit, Limit::AddressSpace);
        // Within the bound, the configured limit stands.
        let limit = dock_32_bit(512 << 20).memory_limit();
        assert_eq!((limit.bytes, limit.limit), (512 << 20, Limit::MemoryBytes));
        // A 64-bit host keeps a 2 GiB limit as configured.
        let limit = DockConfig {
            max_memory_bytes: (2 * GIB) as usize,
            address_space_bytes: address_space_bound(64),
            ..DockConfig::default()
        }
        .memory_limit();
        assert_eq!((limit.bytes, limit.limit), (2 * GIB, Limit::MemoryBytes));
    }

    /// Deploy: a module whose declared memory fits the configured limit but
    /// not a 32-bit address space is refused, naming the address space.
    #[test]
    fn deploy_is_refused_when_the_declared_memory_does_not_fit_32_bits() {
        let pages_1_5_gib = (3 * GIB / 2 / 65_536) as u32;
        let wasm = module_with_memory(pages_1_5_gib);
        let path = Path::new("big.wasm");
        let err = check_declared(path, &wasm, dock_32_bit(2 * GIB).memory_limit()).unwrap_err();
        let DockError::OverLimit { over, .. } = &err else {
            panic!("not an OverLimit: {err}");
        };
        assert_eq!(over.limit, Limit::AddressSpace);
        assert_eq!(
            (over.requested, over.allowed),
            (3 * GIB / 2, MAX_MEMORY_BYTES_32_BIT)
        );
        let message = err.to_string();
        assert!(
            message.contains("big.wasm") && message.contains("32-bit"),
            "{message}"
        );
        // The same module on a 64-bit host with the same configuration runs.
        let wide = DockConfig {
            address_space_bytes: None,
            ..dock_32_bit(2 * GIB)
        };
        check_declared(path, &wasm, wide.memory_limit()).unwrap();
    }

    /// A manifest whose memory is `size_bytes` (its chunks are not read:
    /// the check comes first).
    fn manifest_with_memory(size_bytes: u64) -> protocol::snapshot::Manifest {
        use protocol::snapshot::{
            ChunkedImage, Entry, Hash, Manifest, ModuleRef, VesselLimits, MANIFEST_VERSION,
        };
        Manifest {
            version: MANIFEST_VERSION,
            module: ModuleRef {
                original_hash: Hash::of(b"m"),
                original: ChunkedImage::default(),
                rewriter_version: "x".into(),
                countdown: false,
                instrumented_hash: Hash::of(b"i"),
            },
            memory: ChunkedImage {
                size_bytes,
                chunks: vec![],
            },
            globals: vec![],
            data_dropped: 0,
            entry: Entry::Main,
            frames: vec![],
            wasi: crate::dock::wasi::WasiCtx::new(Default::default())
                .unwrap()
                .capture_state()
                .unwrap(),
            limits: VesselLimits {
                max_memory_bytes: 2 * GIB,
                max_call_depth: 100,
            },
            points_passed: 0,
        }
    }

    /// Resume and migration offers: a snapshot whose memory a 32-bit host
    /// cannot hold is refused with its own error, before a chunk is read;
    /// a 64-bit host under the same configuration takes it.
    #[test]
    fn a_snapshot_over_a_32_bit_address_space_is_refused_by_name() {
        use crate::dock::snapshot::{check_limits, SnapshotError};
        let m = manifest_with_memory(3 * GIB / 2);
        let err = check_limits(&m, &dock_32_bit(2 * GIB)).unwrap_err();
        assert!(
            matches!(
                err,
                SnapshotError::MemoryOverAddressSpace { size_bytes, limit_bytes }
                    if size_bytes == 3 * GIB / 2 && limit_bytes == MAX_MEMORY_BYTES_32_BIT
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("32-bit"), "{err}");
        let wide = DockConfig {
            address_space_bytes: None,
            ..dock_32_bit(2 * GIB)
        };
        check_limits(&m, &wide).unwrap();
        // Over the configured limit too: the configured limit is named.
        let err = check_limits(&manifest_with_memory(3 * GIB), &wide).unwrap_err();
        assert!(
            matches!(err, SnapshotError::MemoryOverLimit { .. }),
            "{err:?}"
        );
    }

    /// Run time: growing past the bound fails inside the program
    /// (`memory.grow` returns -1), not as a host allocation failure.
    #[test]
    fn growth_past_a_32_bit_address_space_is_refused_by_the_limiter() {
        let mut l = VesselLimiter::new(dock_32_bit(4 * GIB - 1).memory_limit());
        let half = (MAX_MEMORY_BYTES_32_BIT / 2) as usize;
        assert_eq!(l.memory_growing(0, half, None).ok(), Some(true));
        assert_eq!(l.memory_growing(half, 2 * half, None).ok(), Some(true));
        assert_eq!(
            l.memory_growing(2 * half, 2 * half + 65_536, None).ok(),
            Some(false)
        );
        assert_eq!(l.refused().map(|r| r.limit), Some(Limit::AddressSpace));
    }
}
