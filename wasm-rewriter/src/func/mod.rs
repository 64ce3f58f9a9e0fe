//! Instrumenting one function.
//!
//! A may-unwind function is first turned into a tree (structures with their
//! bodies) with dead code dropped and the operand-stack types recorded before
//! every node, by running wasmparser's validator over the body. Then it is
//! emitted with these pieces (`docs/rewriter.md` has the full picture):
//!
//! ```text
//! block $unwind
//!   if state != RUNNING {  ;; entry: one check on the normal path
//!     if state == REWINDING { resume = load_point(f); locals = load_*() }
//!     (recursive function: entry point 0, like a loop header)
//!   }
//!   block $body            ;; the original function body
//!     ... items ...
//!   end
//!   return
//! end
//! save_*(locals); save_point(f, resume); return zeros
//! ```
//!
//! Inside a body, an *item* is a node that contains a migration point: a call
//! that may unwind, or a structure containing one (every loop is one: its
//! header is a point). The code between items (a *run*) is skipped while
//! rewinding. Only the first item of a body is guarded:
//!
//! ```text
//! if (state != REWINDING) (param F)
//!   run; local.set the item's inputs and the values below them
//! else
//!   drop F; if resume ∉ item's points { br to the later item holding it }
//!   (an `if` item: condition = target ∈ then-arm)
//! end
//! local.get below.., inputs..   ;; restored or stale locals when rewinding
//! item                          ;; structure, or call + unwind check
//! ```
//!
//! A later item needs no guard: on the normal path the state cannot be
//! REWINDING after an item (a rewind ends inside the item that holds its
//! target), and while rewinding the first item's guard branches straight to
//! the item holding the target, through a block that ends right before it
//! (see [`ChainTarget`]). So a body costs one state check however many items
//! it has. Code after the last item runs only once the rewind has finished.
//! A first item whose inputs may be dummies and whose run is side-effect free
//! skips the guard (see [`is_replayable`]).

use std::collections::HashMap;
use std::convert::Infallible;

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType as EncBlockType, Encode, InstructionSink};
use wasmparser::{FunctionBody, Operator, ValType};

use crate::abi::{self, slot};
use crate::module::{ModuleInfo, Sig};
use crate::{
    FrameLayout, FrameValType, RewriteError, MAX_LOCALS_PER_FUNCTION, MAX_POINTS_PER_FUNCTION,
};

mod emit;
mod entry;
mod tree;

use emit::{frame_val_type, push_zero, type_slot, Emitter, Locals, Merge};
use entry::{countdown_code, EntryCode};
use tree::{build_tree, number_points, Item};

/// Function-index renumbering: every defined function moves up by the number
/// of added imports; imports keep their indices.
pub(crate) struct Remap {
    pub num_imported_funcs: u32,
    pub shift: u32,
}

impl Reencode for Remap {
    type Error = Infallible;

    fn function_index(
        &mut self,
        func: u32,
    ) -> Result<u32, wasm_encoder::reencode::Error<Infallible>> {
        Ok(if func < self.num_imported_funcs {
            func
        } else {
            func + self.shift
        })
    }
}

/// Function types the transform needs for its blocks and imports. Existing
/// types are reused; new ones are appended after the input's types, so no
/// type index moves.
pub(crate) struct TypeInterner {
    index_of: HashMap<Sig, u32>,
    next_index: u32,
    pub added: Vec<Sig>,
}

impl TypeInterner {
    pub fn new(types: &[Sig]) -> Self {
        let mut index_of = HashMap::new();
        for (i, sig) in types.iter().enumerate() {
            index_of.entry(sig.clone()).or_insert(i as u32);
        }
        Self {
            index_of,
            next_index: types.len() as u32,
            added: Vec::new(),
        }
    }

    pub fn intern(&mut self, sig: Sig) -> u32 {
        if let Some(&i) = self.index_of.get(&sig) {
            return i;
        }
        let i = self.next_index;
        self.next_index += 1;
        self.index_of.insert(sig.clone(), i);
        self.added.push(sig);
        i
    }

    fn block_type(&mut self, params: &[ValType], results: &[ValType]) -> EncBlockType {
        match (params, results) {
            ([], []) => EncBlockType::Empty,
            ([], [t]) => EncBlockType::Result(enc_val_type(*t)),
            _ => EncBlockType::FunctionType(self.intern(Sig {
                params: params.to_vec(),
                results: results.to_vec(),
            })),
        }
    }
}

pub(crate) fn enc_val_type(t: ValType) -> wasm_encoder::ValType {
    RoundtripReencoder
        .val_type(t)
        .expect("supported value types always re-encode")
}

/// Module-wide facts the emitter needs.
pub(crate) struct Globals {
    pub state: u32,
    pub countdown: Option<u32>,
    pub data_dropped: Option<u32>,
}

/// The encoded body of one function and, if instrumented, its frame layout.
pub(crate) struct FuncOutput {
    pub body: Vec<u8>,
    pub layout: Option<FrameLayout>,
    /// Estimated wasmi value-stack slots of one frame: (input, output).
    pub frame_slots: (u64, u64),
}

/// Value-stack slots a frame may need beyond its locals and the input's
/// maximum operand-stack height: a guard's condition and the two operands of
/// a range check, doubled as headroom for how wasmi allocates registers (the
/// estimate must not undershoot: `recursion_depth_parity` checks it).
const EXTRA_STACK_SLOTS: u64 = 6;

/// Re-encodes a function that is not instrumented: only function indices
/// change, and `data.drop` also records the drop in the tracking global.
pub(crate) fn plain_function(
    info: &ModuleInfo<'_>,
    body: &FunctionBody<'_>,
    globals: &Globals,
    remap: &mut Remap,
) -> Result<Vec<u8>, RewriteError> {
    let mut f = remap
        .new_function_with_parsed_locals(body)
        .map_err(|e| RewriteError::Encode(e.to_string()))?;
    let mut code = Vec::new();
    let mut reader = body.get_operators_reader().map_err(parse_err)?;
    while !reader.eof() {
        let op = reader.read().map_err(parse_err)?;
        emit_data_drop_aware(&op, info, globals, remap, &mut code)?;
    }
    f.raw(code);
    Ok(f.into_raw_body())
}

fn parse_err(e: wasmparser::BinaryReaderError) -> RewriteError {
    RewriteError::Invalid {
        message: e.to_string(),
        func: None,
    }
}

fn emit_data_drop_aware(
    op: &Operator<'_>,
    info: &ModuleInfo<'_>,
    globals: &Globals,
    remap: &mut Remap,
    sink: &mut Vec<u8>,
) -> Result<(), RewriteError> {
    if let Operator::DataDrop { data_index } = *op {
        let mut s = InstructionSink::new(sink);
        s.data_drop(data_index);
        // The drop happens first, so a trapping drop leaves no trace either.
        if let (Some(g), Some(&bit)) = (globals.data_dropped, info.passive_bit.get(&data_index)) {
            s.global_get(g)
                .i64_const(1i64 << bit)
                .i64_or()
                .global_set(g);
        }
        return Ok(());
    }
    remap
        .instruction(op.clone())
        .map_err(|e| RewriteError::Encode(e.to_string()))?
        .encode(sink);
    Ok(())
}

/// Instruments one may-unwind function.
pub(crate) fn instrument_function(
    info: &ModuleInfo<'_>,
    defined_index: usize,
    globals: &Globals,
    types: &mut TypeInterner,
    remap: &mut Remap,
    countdown: bool,
) -> Result<FuncOutput, RewriteError> {
    let func_index = info.num_imported_funcs + defined_index as u32;
    let new_index = func_index + abi::IMPORT_COUNT;
    let func = info.func_ref(func_index);
    let unsupported = |detail: String| RewriteError::Unsupported {
        feature: "reference-typed values live across a migration point",
        func: Some(info.func_ref(func_index)),
        detail: Some(detail),
    };
    let internal = |e: String| RewriteError::Invalid {
        message: e,
        func: Some(info.func_ref(func_index)),
    };
    let body = &info.bodies[defined_index];
    let sig = info.func_sig(func_index).clone();

    let (mut tree, max_stack_height) =
        build_tree(info, body, &info.validators[defined_index]).map_err(internal)?;
    // A recursive function's entry is point 0, so that a recursion without
    // loops still reaches points.
    let entry_point = info.recursive[defined_index];
    let mut points = u32::from(entry_point);
    number_points(&mut tree, &mut points);
    if points > MAX_POINTS_PER_FUNCTION {
        return Err(RewriteError::Limit {
            limit: "MAX_POINTS_PER_FUNCTION",
            max: MAX_POINTS_PER_FUNCTION.into(),
            actual: points.into(),
            func: Some(func),
        });
    }

    let mut local_types = sig.params.clone();
    let mut declared = Vec::new();
    for group in body.get_locals_reader().map_err(parse_err)? {
        let (count, ty) = group.map_err(parse_err)?;
        declared.push((count, ty));
        if local_types.len() as u64 + u64::from(count) > u64::from(MAX_LOCALS_PER_FUNCTION) {
            return Err(RewriteError::Limit {
                limit: "MAX_LOCALS_PER_FUNCTION",
                max: MAX_LOCALS_PER_FUNCTION.into(),
                actual: local_types.len() as u64 + u64::from(count),
                func: Some(func),
            });
        }
        local_types.extend(std::iter::repeat_n(ty, count as usize));
    }
    if let Some(t) = local_types.iter().find(|t| t.is_reference_type()) {
        return Err(unsupported(format!("local of type {t}")));
    }
    let first_added = local_types.len() as u32;
    let slots_before = u64::from(first_added) + u64::from(max_stack_height);
    let resume = first_added;
    local_types.push(ValType::I32);

    let mut em = Emitter {
        info,
        globals,
        types,
        remap,
        countdown,
        code: Vec::new(),
        ctl: vec![false, false],
        locals: Locals {
            types: local_types,
            free: HashMap::new(),
        },
        resume,
        entry_point,
        entry_slot: None,
    };

    // (block $unwind: emitted with the entry code below) block $body ... end;
    // return; end
    let body_bt = em.types.block_type(&[], &sig.results);
    em.s().block(body_bt);
    em.ctl.push(true);
    let first = tree.iter().position(Item::has_point);
    let merge_entry = first.is_some_and(|i| em.needs_guard(&tree[..i], &tree[i]));
    em.emit_seq_merging(&tree, merge_entry.then_some(Merge::Entry))
        .map_err(|e| {
            if e.contains("lives across a migration point") {
                unsupported(e)
            } else {
                internal(e)
            }
        })?;
    em.s().end().return_().end();

    let Emitter {
        code: mut body_code,
        locals,
        entry_slot,
        ..
    } = em;
    let local_types = locals.types;
    if local_types.len() as u64 > u64::from(MAX_LOCALS_PER_FUNCTION) {
        return Err(RewriteError::Limit {
            limit: "MAX_LOCALS_PER_FUNCTION",
            max: MAX_LOCALS_PER_FUNCTION.into(),
            actual: local_types.len() as u64,
            func: Some(func),
        });
    }

    let saved: Vec<(u32, FrameValType)> = local_types
        .iter()
        .enumerate()
        .filter(|&(i, _)| i as u32 != resume)
        .map(|(i, &t)| {
            frame_val_type(t)
                .map(|ft| (i as u32, ft))
                .ok_or_else(|| unsupported(format!("local of type {t}")))
        })
        .collect::<Result<_, _>>()?;
    let import_base = info.num_imported_funcs;

    let mut code = Vec::new();
    let mut s = InstructionSink::new(&mut code);
    // Entry, inside `block $unwind`: one state check on the normal path,
    // either here or merged into the first guard of the body (then its slow
    // path is inserted where the emitter left a slot).
    let entry = EntryCode {
        state: globals.state,
        func: new_index,
        import_base,
        resume,
        saved: &saved,
        entry_point,
    };
    s.block(EncBlockType::Empty);
    match entry_slot {
        Some((offset, unwind_depth)) => {
            let mut slow = Vec::new();
            entry.slow_path(&mut InstructionSink::new(&mut slow), unwind_depth);
            body_code.splice(offset..offset, slow);
        }
        None => {
            if entry_point {
                if let Some(cd) = globals.countdown {
                    countdown_code(&mut s, cd, globals.state);
                }
            }
            s.global_get(globals.state).if_(EncBlockType::Empty);
            // Inside `block $unwind` and this `if`: `$unwind` is at depth 1.
            entry.slow_path(&mut s, 1);
            s.end();
        }
    }
    code.extend_from_slice(&body_code);
    // The shared unwind exit: save the frame, return dummies.
    let mut s = InstructionSink::new(&mut code);
    for &(i, t) in &saved {
        s.local_get(i)
            .call(import_base + slot::SAVE_I32 + type_slot(t));
    }
    s.i32_const(new_index as i32)
        .local_get(resume)
        .call(import_base + slot::SAVE_POINT);
    for &t in &sig.results {
        push_zero(&mut code, t);
    }
    InstructionSink::new(&mut code).end();

    // Locals: the input's declarations unchanged, then the added ones.
    let mut groups: Vec<(u32, wasm_encoder::ValType)> = declared
        .iter()
        .map(|&(n, t)| (n, enc_val_type(t)))
        .collect();
    let mut added: Vec<(u32, wasm_encoder::ValType)> = Vec::new();
    for &t in &local_types[first_added as usize..] {
        let t = enc_val_type(t);
        match added.last_mut() {
            Some((n, last)) if *last == t => *n += 1,
            _ => added.push((1, t)),
        }
    }
    groups.extend(added);
    let mut f = wasm_encoder::Function::new(groups);
    f.raw(code);

    let slots_after = local_types.len() as u64 + u64::from(max_stack_height) + EXTRA_STACK_SLOTS;
    Ok(FuncOutput {
        frame_slots: (slots_before.max(1), slots_after),
        body: f.into_raw_body(),
        layout: Some(FrameLayout {
            func_index: new_index,
            original_func_index: func_index,
            points,
            locals: saved.iter().map(|&(_, t)| t).collect(),
        }),
    })
}
