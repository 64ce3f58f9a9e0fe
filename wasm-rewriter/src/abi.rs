//! Names and numbers of the host ABI. `docs/rewriter.md` describes the
//! protocol; this module is the single source of the strings and values.

/// Exported mutable i32 global holding the unwind/rewind state.
pub const STATE_EXPORT: &str = "__meshnode_state";
/// `state`: normal execution.
pub const STATE_RUNNING: i32 = 0;
/// `state`: frames are being saved on the way out (set by the vessel, or by a
/// blocking import that wants the vessel to unwind).
pub const STATE_UNWINDING: i32 = 1;
/// `state`: frames are being restored on the way in (set only by the host).
pub const STATE_REWINDING: i32 = 2;
/// `state`: the host asks the vessel to unwind at its next loop-header point
/// (set only by the host, and only while the state is [`STATE_RUNNING`]).
pub const STATE_UNWIND_REQUESTED: i32 = 3;

/// Exported mutable i32 global, present only with
/// [`crate::RewriteConfig::countdown`]: see there.
pub const COUNTDOWN_EXPORT: &str = "__meshnode_countdown";
/// Exported mutable i64 global, present when the module has passive data
/// segments: bit k is set once the k-th passive data segment (in data-section
/// order, counting only passive ones) has been dropped with `data.drop`.
pub const DATA_DROPPED_EXPORT: &str = "__meshnode_data_dropped";
/// Exported function `() -> ()`, present with [`DATA_DROPPED_EXPORT`]: drops
/// every passive segment whose bit is set. The host calls it on resume after
/// restoring the globals, because wasmi cannot drop segments from outside.
pub const REDROP_EXPORT: &str = "__meshnode_redrop_data";
/// Exported function: the input's `start` function, removed from the start
/// section. The host calls it once, right after the first instantiation, and
/// never on resume.
pub const START_EXPORT: &str = "__meshnode_start";
/// Export of memory 0, when the module has a memory.
pub const MEMORY_EXPORT: &str = "__meshnode_memory";
/// Prefix of the export of every global of the input: `__meshnode_global_N`
/// exports global N (input index, imported globals counted first).
pub const GLOBAL_EXPORT_PREFIX: &str = "__meshnode_global_";
/// Every export or import name starting with this is reserved.
pub const RESERVED_PREFIX: &str = "__meshnode_";

/// Module name of the imports the instrumented module adds.
pub const IMPORT_MODULE: &str = "meshnode";
/// The imports the instrumented module adds, in this order, after all of the
/// input's imports. Every defined function's index is shifted by
/// [`IMPORT_COUNT`]. Signatures are in `docs/rewriter.md`.
pub const IMPORT_NAMES: [&str; 10] = [
    "save_i32",
    "save_i64",
    "save_f32",
    "save_f64",
    "save_point",
    "load_i32",
    "load_i64",
    "load_f32",
    "load_f64",
    "load_point",
];
/// Number of added imports.
pub const IMPORT_COUNT: u32 = IMPORT_NAMES.len() as u32;

/// The index in the input module of function `index` of the instrumented
/// module, whose input had `input_imported_funcs` imported and
/// `input_defined_funcs` defined functions. `None` for a function the
/// rewriter added: one of the [`IMPORT_NAMES`] imports, or the
/// [`REDROP_EXPORT`] helper (appended after the defined functions).
///
/// Used to name the function a trap happened in by its input index.
pub fn input_func_index(
    index: u32,
    input_imported_funcs: u32,
    input_defined_funcs: u32,
) -> Option<u32> {
    if index < input_imported_funcs {
        return Some(index);
    }
    let input = index.checked_sub(IMPORT_COUNT)?;
    (input >= input_imported_funcs && input - input_imported_funcs < input_defined_funcs)
        .then_some(input)
}

/// Position of each import in [`IMPORT_NAMES`].
pub(crate) mod slot {
    pub const SAVE_I32: u32 = 0;
    pub const SAVE_POINT: u32 = 4;
    pub const LOAD_I32: u32 = 5;
    pub const LOAD_POINT: u32 = 9;
}
