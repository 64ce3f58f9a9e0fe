//! What one vessel's module may make the node allocate: its memories
//! together, its tables' elements together, and how many of each it has.
//!
//! Two checks share these limits:
//! - [`check_declared`] reads a module's sections before anything is
//!   rewritten, compiled or allocated, and refuses one whose declared
//!   minimums are already over a limit, naming it.
//! - [`VesselLimiter`] is the store's `wasmi::ResourceLimiter`: it keeps
//!   the running totals, so that growing one memory counts what the others
//!   already hold (`--max-memory` covers all memories together), and a
//!   growth over a limit fails inside the program (`memory.grow` and
//!   `table.grow` return -1) instead of costing host memory.

use std::path::Path;

use wasmi::errors::{LimiterError, MemoryError, TableError};
use wasmi::ResourceLimiter;

use super::address_space::MemoryLimit;
use super::DockError;

/// Most table elements one vessel may hold, over all its tables. Each
/// element costs the host 8 bytes however few are used (a 60-byte module
/// declaring 200 million took 790 MB), so this caps tables at 8 MiB of
/// node memory. C and Rust programs use one table of function pointers, a
/// few thousand entries even for large programs.
pub const MAX_TABLE_ELEMENTS: usize = 1 << 20;

/// Most tables one vessel may have. Compilers emit one; reference-types
/// code a few more. Each table costs the host a bookkeeping entry even
/// when empty.
pub const MAX_TABLES: usize = 16;

/// Most linear memories one vessel may have (multi-memory). Compilers emit
/// one. The memory limit covers all of them together, so this bounds only
/// the bookkeeping, not the bytes.
pub const MAX_MEMORIES: usize = 16;

/// wasmi's default page size, for declared minimums in pages.
const WASM_PAGE_BYTES: u64 = 65_536;

/// Which limit a module or a vessel is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// All memories together, in bytes (`--max-memory`, the node's
    /// `vessel_max_memory_bytes`).
    MemoryBytes,
    /// All memories together, in bytes, over what this 32-bit host's
    /// address space holds for one vessel (`address_space.rs`): lower than
    /// the configured limit there.
    AddressSpace,
    /// All tables' elements together ([`MAX_TABLE_ELEMENTS`]).
    TableElements,
    /// How many tables ([`MAX_TABLES`]).
    Tables,
    /// How many memories ([`MAX_MEMORIES`]).
    Memories,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::MemoryBytes => "bytes of memory, all memories together (--max-memory)",
            Limit::AddressSpace => {
                "bytes of memory, all memories together, more than a 32-bit host's address space holds for a vessel (MAX_MEMORY_BYTES_32_BIT)"
            }
            Limit::TableElements => "table elements, all tables together (MAX_TABLE_ELEMENTS)",
            Limit::Tables => "tables (MAX_TABLES)",
            Limit::Memories => "memories (MAX_MEMORIES)",
        })
    }
}

/// A request over a limit: what was asked for, and the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverLimit {
    pub limit: Limit,
    pub requested: u64,
    pub allowed: u64,
}

impl std::fmt::Display for OverLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}, over the limit of {}",
            self.requested, self.limit, self.allowed
        )
    }
}

/// Checks `needed` against `allowed`.
fn within(limit: Limit, needed: u64, allowed: u64) -> Result<(), OverLimit> {
    if needed > allowed {
        return Err(OverLimit {
            limit,
            requested: needed,
            allowed,
        });
    }
    Ok(())
}

/// What a module declares: counts and the sums of the minimums.
#[derive(Debug, Default)]
struct Declared {
    tables: u64,
    table_elements: u64,
    memories: u64,
    memory_bytes: u64,
}

/// Refuses a module whose declared tables or memories are over a limit
/// before it is rewritten, compiled or instantiated. `memory` is the
/// memory limit the vessel will run under ([`super::DockConfig::memory_limit`]).
/// A module that does not parse passes: the compiler names what is wrong
/// with it.
pub fn check_declared(path: &Path, bytes: &[u8], memory: MemoryLimit) -> Result<(), DockError> {
    let Ok(d) = declared(bytes) else {
        return Ok(());
    };
    let checks = [
        (Limit::Tables, d.tables, MAX_TABLES as u64),
        (Limit::Memories, d.memories, MAX_MEMORIES as u64),
        (
            Limit::TableElements,
            d.table_elements,
            MAX_TABLE_ELEMENTS as u64,
        ),
        (memory.limit, d.memory_bytes, memory.bytes),
    ];
    for (limit, needed, allowed) in checks {
        within(limit, needed, allowed).map_err(|over| DockError::OverLimit {
            path: path.into(),
            over,
        })?;
    }
    Ok(())
}

/// Reads the import, table and memory sections (only those: the code is
/// not looked at).
fn declared(bytes: &[u8]) -> Result<Declared, wasmparser::BinaryReaderError> {
    use wasmparser::{Parser, Payload, TypeRef};
    let mut d = Declared::default();
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ImportSection(imports) => {
                for import in imports.into_imports() {
                    match import?.ty {
                        TypeRef::Table(t) => d.add_table(t.initial),
                        TypeRef::Memory(m) => d.add_memory(&m),
                        _ => {}
                    }
                }
            }
            Payload::TableSection(tables) => {
                for table in tables {
                    d.add_table(table?.ty.initial);
                }
            }
            Payload::MemorySection(memories) => {
                for memory in memories {
                    d.add_memory(&memory?);
                }
            }
            // The sections that matter come before the code.
            Payload::CodeSectionStart { .. } => break,
            _ => {}
        }
    }
    Ok(d)
}

impl Declared {
    fn add_table(&mut self, initial_elements: u64) {
        self.tables += 1;
        self.table_elements = self.table_elements.saturating_add(initial_elements);
    }

    fn add_memory(&mut self, m: &wasmparser::MemoryType) {
        let page_bytes = m.page_size_log2.map_or(WASM_PAGE_BYTES, |log2| 1 << log2);
        self.memories += 1;
        self.memory_bytes = self
            .memory_bytes
            .saturating_add(m.initial.saturating_mul(page_bytes));
    }
}

/// The store's resource limiter: running totals over all of a vessel's
/// memories and tables.
#[derive(Debug)]
pub struct VesselLimiter {
    max_memory_bytes: usize,
    /// Which limit `max_memory_bytes` is, for the refusal.
    memory_limit: Limit,
    memory_bytes: usize,
    table_elements: usize,
    /// The growth last allowed, taken back if wasmi then fails it (out of
    /// fuel, or the host is out of memory): wasmi calls `*_grow_failed`
    /// right after the `*_growing` that allowed it.
    pending_memory_bytes: usize,
    pending_table_elements: usize,
    /// The last request refused, for the error that reports it.
    refused: Option<OverLimit>,
    /// The vessel's write tracking, disarmed before its memory grows: the
    /// memory may move, and the pages past its end are new (`dock/dirty`).
    writes: Option<std::sync::Arc<super::dirty::WriteTracker>>,
    /// A growth past the limit traps the vessel instead of failing
    /// (`deploy --max-memory`: the user's own bound, which a `memory.grow`
    /// answered -1 would hide in a program that ignores it).
    trap_over_memory: bool,
}

impl VesselLimiter {
    pub fn new(memory: MemoryLimit) -> Self {
        VesselLimiter {
            max_memory_bytes: memory.bytes_usize(),
            memory_limit: memory.limit,
            memory_bytes: 0,
            table_elements: 0,
            pending_memory_bytes: 0,
            pending_table_elements: 0,
            refused: None,
            writes: None,
            trap_over_memory: false,
        }
    }

    /// Lowers the memory limit to `max_memory_bytes` (never raises it),
    /// and makes a growth past it a trap ([`VesselLimiter::trapped_over`]).
    pub fn trap_over_memory(&mut self, max_memory_bytes: usize) {
        if max_memory_bytes <= self.max_memory_bytes {
            // The user's bound is the one that binds: name it.
            self.max_memory_bytes = max_memory_bytes;
            self.memory_limit = Limit::MemoryBytes;
        }
        self.trap_over_memory = true;
    }

    /// The growth that trapped the vessel, in trap mode.
    pub fn trapped_over(&self) -> Option<OverLimit> {
        self.refused
            .filter(|o| self.trap_over_memory && o.limit == self.memory_limit)
    }

    /// Disarms `writes` before every memory growth it allows.
    pub fn with_write_tracker(
        mut self,
        writes: std::sync::Arc<super::dirty::WriteTracker>,
    ) -> Self {
        self.writes = Some(writes);
        self
    }

    /// The last request this limiter refused (an instantiation that failed
    /// with "resource limiter denied allocation" names it from here).
    pub fn refused(&self) -> Option<OverLimit> {
        self.refused
    }

    /// The limit that made `e` fail, when it is this limiter's refusal of
    /// a memory or table an instantiation had to create.
    pub fn refused_by(&self, e: &wasmi::Error) -> Option<OverLimit> {
        use wasmi::errors::ErrorKind;
        match e.kind() {
            ErrorKind::Memory(MemoryError::ResourceLimiterDeniedAllocation)
            | ErrorKind::Table(TableError::ResourceLimiterDeniedAllocation) => self.refused,
            _ => None,
        }
    }

    /// Bytes of memory the vessel holds, all memories together.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    fn refuse(&mut self, limit: Limit, requested: usize, allowed: usize) -> bool {
        self.refused = Some(OverLimit {
            limit,
            requested: requested as u64,
            allowed: allowed as u64,
        });
        false
    }
}

impl ResourceLimiter for VesselLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        let delta = desired.saturating_sub(current);
        let total = self.memory_bytes.saturating_add(delta);
        if total > self.max_memory_bytes {
            let refused = self.refuse(self.memory_limit, total, self.max_memory_bytes);
            if self.trap_over_memory {
                return Err(LimiterError::ResourceLimiterDeniedAllocation);
            }
            return Ok(refused);
        }
        self.memory_bytes = total;
        self.pending_memory_bytes = delta;
        if let Some(w) = &self.writes {
            w.disarm();
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        let delta = desired.saturating_sub(current);
        let total = self.table_elements.saturating_add(delta);
        if total > MAX_TABLE_ELEMENTS {
            return Ok(self.refuse(Limit::TableElements, total, MAX_TABLE_ELEMENTS));
        }
        self.table_elements = total;
        self.pending_table_elements = delta;
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: &MemoryError) -> Result<(), LimiterError> {
        self.memory_bytes -= std::mem::take(&mut self.pending_memory_bytes);
        Ok(())
    }

    fn table_grow_failed(&mut self, _error: &TableError) -> Result<(), LimiterError> {
        self.table_elements -= std::mem::take(&mut self.pending_table_elements);
        Ok(())
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memory growth counts what the other memories hold, and a failed
    /// growth is taken back.
    #[test]
    fn memory_limit_covers_all_memories_and_failures_are_taken_back() {
        let mut l = VesselLimiter::new(MemoryLimit {
            bytes: 4 * 65_536,
            limit: Limit::MemoryBytes,
        });
        assert_eq!(l.memory_growing(0, 2 * 65_536, None).ok(), Some(true));
        assert_eq!(l.memory_growing(0, 2 * 65_536, None).ok(), Some(true));
        assert_eq!(l.memory_growing(0, 65_536, None).ok(), Some(false));
        assert_eq!(l.refused().map(|r| r.limit), Some(Limit::MemoryBytes));
        l.memory_grow_failed(&MemoryError::OutOfSystemMemory)
            .unwrap();
        assert_eq!(l.memory_bytes(), 2 * 65_536);
        assert_eq!(l.memory_growing(65_536, 3 * 65_536, None).ok(), Some(true));
    }
}
