//! Which wasm features the transform accepts, and naming the ones it refuses.

use wasmparser::{Operator, WasmFeatures};

/// What clang emits with `-mbulk-memory -mmultivalue -mreference-types
/// -msign-ext -mnontrapping-fptoint`, plus mutable globals. Input is
/// validated with exactly this set after the explicit feature scan, so
/// anything the scan does not name is still refused (as `Invalid`).
pub(crate) fn input_features() -> WasmFeatures {
    // `MVP` is floats plus wasmparser's `GC_TYPES` flag, which despite its
    // name is what allows `funcref`/`externref` at all (the GC proposal's
    // own types need `GC`, which stays off).
    WasmFeatures::MVP
        | WasmFeatures::MUTABLE_GLOBAL
        | WasmFeatures::SATURATING_FLOAT_TO_INT
        | WasmFeatures::SIGN_EXTENSION
        | WasmFeatures::MULTI_VALUE
        | WasmFeatures::BULK_MEMORY
        | WasmFeatures::REFERENCE_TYPES
}

/// The output additionally needs nothing new: the transform only uses
/// multi-value block types and the instructions above.
pub(crate) fn output_features() -> WasmFeatures {
    input_features()
}

/// The proposal an operator comes from, as wasmparser's operator table names
/// it (`mvp`, `simd`, `threads`, ...).
pub(crate) fn proposal_of(op: &Operator<'_>) -> &'static str {
    macro_rules! define_match_operator {
        ($( @$proposal:ident $op:ident $({ $($arg:ident: $argty:ty),* })? => $visit:ident ($($ann:tt)*))*) => {
            match op {
                $(
                    Operator::$op $( { $($arg: _),* } )? => stringify!($proposal),
                )*
                _ => "unknown",
            }
        };
    }
    wasmparser::for_each_operator!(define_match_operator)
}

/// `Err(feature)` if the operator is refused. Table mutation is refused
/// because table contents are not captured: tables are rebuilt from their
/// element segments on resume, which is only right if they never change.
pub(crate) fn check_operator(op: &Operator<'_>) -> Result<(), &'static str> {
    match op {
        Operator::TableSet { .. }
        | Operator::TableGrow { .. }
        | Operator::TableFill { .. }
        | Operator::TableCopy { .. }
        | Operator::TableInit { .. }
        | Operator::ElemDrop { .. } => return Err("table mutation"),
        _ => {}
    }
    match proposal_of(op) {
        "mvp"
        | "sign_extension"
        | "saturating_float_to_int"
        | "bulk_memory"
        | "reference_types" => Ok(()),
        "simd" | "relaxed_simd" => Err("simd"),
        "threads" | "shared_everything_threads" => Err("threads"),
        "exceptions" | "legacy_exceptions" => Err("exception-handling"),
        "tail_call" => Err("tail-call"),
        "gc" => Err("gc"),
        "function_references" => Err("function-references"),
        "memory_control" => Err("memory-control"),
        "stack_switching" => Err("stack-switching"),
        "wide_arithmetic" => Err("wide-arithmetic"),
        _ => Err("unknown proposal"),
    }
}
