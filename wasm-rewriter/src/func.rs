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
use wasmparser::{
    BlockType, FuncToValidate, FuncValidator, FunctionBody, Operator, ValType, ValidatorResources,
};

use crate::abi::{self, slot};
use crate::module::{CallKind, ModuleInfo, Sig};
use crate::{
    FrameLayout, FrameValType, RewriteError, MAX_LOCALS_PER_FUNCTION, MAX_POINTS_PER_FUNCTION,
};

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

// ---------------------------------------------------------------------------
// The tree.

struct Item<'a> {
    /// Types of the current control frame's operand stack before this node
    /// (block parameters included, values of enclosing frames excluded).
    stack: Vec<ValType>,
    node: Node<'a>,
}

enum Node<'a> {
    /// Any instruction that is not a structure or a migration-point call.
    Op(Operator<'a>),
    /// A call that may unwind; `point` is its migration point.
    Call {
        op: Operator<'a>,
        kind: CallKind,
        point: u32,
    },
    Struct(Box<Struct<'a>>),
}

struct Struct<'a> {
    op: Operator<'a>,
    blockty: BlockType,
    body: Vec<Item<'a>>,
    else_body: Option<Vec<Item<'a>>>,
    /// First and last migration point inside (a loop's header is the first).
    points: Option<(u32, u32)>,
    /// For an `if`: the points of its `then` arm. While rewinding, the arm to
    /// take is the one holding the target, so the condition need not be kept.
    then_points: Option<(u32, u32)>,
}

impl Item<'_> {
    fn has_point(&self) -> bool {
        match &self.node {
            Node::Op(_) => false,
            Node::Call { .. } => true,
            Node::Struct(s) => s.points.is_some(),
        }
    }
}

struct Open<'a> {
    op: Option<Operator<'a>>,
    blockty: BlockType,
    stack: Vec<ValType>,
    body: Vec<Item<'a>>,
    else_body: Option<Vec<Item<'a>>>,
    /// Set after an unconditional branch: the rest of this body is dead.
    dead: bool,
    /// Structures opened inside the dead code being skipped.
    dead_depth: u32,
}

impl<'a> Open<'a> {
    fn current(&mut self) -> &mut Vec<Item<'a>> {
        match &mut self.else_body {
            Some(e) => e,
            None => &mut self.body,
        }
    }
}

fn frame_stack(fv: &FuncValidator<ValidatorResources>) -> Option<Vec<ValType>> {
    let base = fv.get_control_frame(0)?.height;
    let height = fv.operand_stack_height() as usize;
    (0..height.checked_sub(base)?)
        .rev()
        .map(|depth| fv.get_operand_type(depth).flatten())
        .collect()
}

/// Parses the body into a tree, dropping unreachable code and recording the
/// operand stack before each node.
fn build_tree<'a>(
    info: &ModuleInfo<'_>,
    body: &FunctionBody<'a>,
    seed: &FuncToValidate<ValidatorResources>,
) -> Result<(Vec<Item<'a>>, u32), String> {
    let mut max_height = 0u32;
    let mut fv = FuncToValidate {
        resources: seed.resources.clone(),
        index: seed.index,
        ty: seed.ty,
        features: seed.features,
    }
    .into_validator(Default::default());
    let mut locals = body.get_binary_reader();
    fv.read_locals(&mut locals).map_err(|e| e.to_string())?;

    let mut open = vec![Open {
        op: None,
        blockty: BlockType::Empty,
        stack: Vec::new(),
        body: Vec::new(),
        else_body: None,
        dead: false,
        dead_depth: 0,
    }];
    let mut reader = body.get_operators_reader().map_err(|e| e.to_string())?;
    while !reader.eof() {
        let offset = reader.original_position();
        let op = reader.read().map_err(|e| e.to_string())?;
        let top = open.last_mut().expect("function frame is open");
        if top.dead {
            match op {
                Operator::Block { .. } | Operator::Loop { .. } | Operator::If { .. } => {
                    top.dead_depth += 1;
                    continue;
                }
                Operator::End | Operator::Else if top.dead_depth > 0 => {
                    if matches!(op, Operator::End) {
                        top.dead_depth -= 1;
                    }
                    continue;
                }
                Operator::End | Operator::Else => top.dead = false,
                _ => continue,
            }
        }
        let stack = match op {
            Operator::End | Operator::Else => Vec::new(),
            _ => frame_stack(&fv).ok_or("operand stack of unknown type in reachable code")?,
        };
        fv.op(offset, &op).map_err(|e| e.to_string())?;
        max_height = max_height.max(fv.operand_stack_height());
        match op {
            Operator::Block { blockty } | Operator::Loop { blockty } | Operator::If { blockty } => {
                open.push(Open {
                    op: Some(op),
                    blockty,
                    stack,
                    body: Vec::new(),
                    else_body: None,
                    dead: false,
                    dead_depth: 0,
                });
            }
            Operator::Else => top.else_body = Some(Vec::new()),
            Operator::End => {
                let done = open.pop().expect("frame to close");
                let Some(op) = done.op else {
                    return Ok((done.body, max_height));
                };
                let item = Item {
                    stack: done.stack,
                    node: Node::Struct(Box::new(Struct {
                        op,
                        blockty: done.blockty,
                        body: done.body,
                        else_body: done.else_body,
                        points: None,
                        then_points: None,
                    })),
                };
                open.last_mut()
                    .expect("enclosing frame")
                    .current()
                    .push(item);
            }
            Operator::Br { .. }
            | Operator::BrTable { .. }
            | Operator::Return
            | Operator::Unreachable => {
                top.current().push(Item {
                    stack,
                    node: Node::Op(op),
                });
                top.dead = true;
            }
            Operator::Call { .. } | Operator::CallIndirect { .. } => {
                let kind = info.classify_call(&op);
                let node = if kind == CallKind::Plain {
                    Node::Op(op)
                } else {
                    Node::Call { op, kind, point: 0 }
                };
                top.current().push(Item { stack, node });
            }
            _ => top.current().push(Item {
                stack,
                node: Node::Op(op),
            }),
        }
    }
    Err("function body ended without `end`".into())
}

/// Numbers migration points in document order (a loop's header before its
/// body) and records each structure's point range.
fn number_points(items: &mut [Item<'_>], next: &mut u32) {
    for item in items {
        match &mut item.node {
            Node::Op(_) => {}
            Node::Call { point, .. } => {
                *point = *next;
                *next += 1;
            }
            Node::Struct(s) => {
                let first = *next;
                if matches!(s.op, Operator::Loop { .. }) {
                    *next += 1;
                }
                let body_first = *next;
                number_points(&mut s.body, next);
                if *next > body_first {
                    s.then_points = Some((body_first, *next - 1));
                }
                if let Some(e) = &mut s.else_body {
                    number_points(e, next);
                }
                if *next > first {
                    s.points = Some((first, *next - 1));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Emission.

/// Locals of the function being instrumented. Temporaries are recycled
/// through a free list once their value is dead; a value that must survive a
/// migration lives in its own local until the item using it is done.
struct Locals {
    types: Vec<ValType>,
    free: HashMap<ValType, Vec<u32>>,
}

impl Locals {
    fn alloc(&mut self, ty: ValType) -> Result<u32, String> {
        if ty.is_reference_type() {
            return Err(format!("a {ty} value lives across a migration point"));
        }
        if let Some(i) = self.free.get_mut(&ty).and_then(Vec::pop) {
            return Ok(i);
        }
        self.types.push(ty);
        Ok(self.types.len() as u32 - 1)
    }

    fn release(&mut self, index: u32) {
        let ty = self.types[index as usize];
        self.free.entry(ty).or_default().push(index);
    }
}

/// A check that shares its `global.get state; if` with the guard of the
/// first item after it.
#[derive(Debug, Clone, Copy)]
enum Merge {
    /// The loop-header point with this index.
    Header(u32),
    /// The function entry (frame restore, and the entry point of a recursive
    /// function).
    Entry,
}

/// A later item of a body, as the body's first item sees it. Only the first
/// item of a body is guarded: on the normal path the state cannot be
/// REWINDING after it (a rewind ends inside the item holding its target), so
/// the runs between later items need no check. While rewinding, the first
/// item's rewind arm branches straight to the item holding the target,
/// through a block `$to_k` that opens before the first item and ends right
/// before item `k`:
///
/// ```text
/// block $to_3 (F -> E3)
///   block $to_2 (F -> E2)
///     guard + item 1  (rewind arm: target in item 2? br $to_2; else br $to_3)
///     run; local.set …      ;; leaves E2
///   end
///   local.get …; item 2
///   run; local.set …        ;; leaves E3
/// end
/// local.get …; item 3
/// ```
struct ChainTarget {
    /// First and last point inside the item.
    points: (u32, u32),
    /// The item's `$to_k` block, as an index in `Emitter::ctl`.
    ctl: usize,
    /// What `$to_k` yields: nothing if the item's inputs (and the values
    /// below them) go through locals, else its inputs, dummies on rewind.
    entry: Vec<ValType>,
    via_locals: bool,
    /// For an `if`: the local of its condition and the points of its `then`
    /// arm. The dispatch sets it before branching.
    cond: Option<(u32, Option<(u32, u32)>)>,
}

/// For an `if` item: the points of its `then` arm (`None` if it has none).
fn if_then_points(item: &Item<'_>) -> Option<Option<(u32, u32)>> {
    match &item.node {
        Node::Struct(s) if matches!(s.op, Operator::If { .. }) => Some(s.then_points),
        _ => None,
    }
}

fn item_points(item: &Item<'_>) -> (u32, u32) {
    match &item.node {
        Node::Call { point, .. } => (*point, *point),
        Node::Struct(s) => s.points.expect("items contain points"),
        Node::Op(_) => unreachable!("plain ops are not items"),
    }
}

/// One entry of the emitted control stack: `true` for a frame that exists in
/// the input (branches may target it), `false` for one the transform added.
type Ctl = bool;

struct Emitter<'m, 'i> {
    info: &'m ModuleInfo<'i>,
    globals: &'m Globals,
    types: &'m mut TypeInterner,
    remap: &'m mut Remap,
    countdown: bool,
    code: Vec<u8>,
    ctl: Vec<Ctl>,
    locals: Locals,
    resume: u32,
    /// The function's entry is point 0 (it is recursive).
    entry_point: bool,
    /// Where the entry slow path goes when merged: byte offset in `code`, and
    /// the branch depth of `$unwind` there.
    entry_slot: Option<(usize, u32)>,
}

const UNWIND_CTL: usize = 1;

impl Emitter<'_, '_> {
    fn s(&mut self) -> InstructionSink<'_> {
        InstructionSink::new(&mut self.code)
    }

    /// Relative depth of the input's branch depth `depth` in the output.
    fn map_depth(&self, depth: u32) -> u32 {
        let mut seen = 0;
        for (i, &orig) in self.ctl.iter().enumerate().rev() {
            if orig {
                if seen == depth {
                    return (self.ctl.len() - 1 - i) as u32;
                }
                seen += 1;
            }
        }
        unreachable!("validated branch depth {depth} has a target")
    }

    fn depth_of(&self, ctl_index: usize) -> u32 {
        (self.ctl.len() - 1 - ctl_index) as u32
    }

    fn zero(&mut self, ty: ValType) {
        push_zero(&mut self.code, ty);
    }

    fn zeros(&mut self, tys: &[ValType]) {
        for &t in tys {
            self.zero(t);
        }
    }

    fn block_sig(&self, blockty: BlockType) -> (Vec<ValType>, Vec<ValType>) {
        match blockty {
            BlockType::Empty => (vec![], vec![]),
            BlockType::Type(t) => (vec![], vec![t]),
            BlockType::FuncType(i) => {
                let sig = &self.info.types[i as usize];
                (sig.params.clone(), sig.results.clone())
            }
        }
    }

    fn enc_blockty(&mut self, blockty: BlockType) -> EncBlockType {
        self.remap
            .block_type(blockty)
            .expect("validated block types re-encode")
    }

    fn emit_op(&mut self, op: &Operator<'_>) -> Result<(), String> {
        match op {
            Operator::Br { relative_depth } => {
                let d = self.map_depth(*relative_depth);
                self.s().br(d);
            }
            Operator::BrIf { relative_depth } => {
                let d = self.map_depth(*relative_depth);
                self.s().br_if(d);
            }
            Operator::BrTable { targets } => {
                let mut mapped = Vec::with_capacity(targets.len() as usize);
                for t in targets.targets() {
                    mapped.push(self.map_depth(t.map_err(|e| e.to_string())?));
                }
                let default = self.map_depth(targets.default());
                self.s().br_table(mapped, default);
            }
            _ => emit_data_drop_aware(op, self.info, self.globals, self.remap, &mut self.code)
                .map_err(|e| e.to_string())?,
        }
        Ok(())
    }

    /// Emits a node that contains no migration point, unchanged except for
    /// branch depths.
    fn emit_plain(&mut self, item: &Item<'_>) -> Result<(), String> {
        match &item.node {
            Node::Op(op) => self.emit_op(op),
            Node::Call { .. } => unreachable!("calls with points are items"),
            Node::Struct(s) => {
                let bt = self.enc_blockty(s.blockty);
                match s.op {
                    Operator::Block { .. } => self.s().block(bt),
                    Operator::Loop { .. } => self.s().loop_(bt),
                    _ => self.s().if_(bt),
                };
                self.ctl.push(true);
                for i in &s.body {
                    self.emit_plain(i)?;
                }
                if let Some(e) = &s.else_body {
                    self.s().else_();
                    for i in e {
                        self.emit_plain(i)?;
                    }
                }
                self.s().end();
                self.ctl.pop();
                Ok(())
            }
        }
    }

    fn emit_seq(&mut self, items: &[Item<'_>]) -> Result<(), String> {
        self.emit_seq_merging(items, None)
    }

    /// Emits a body as a chain of its items (see [`ChainTarget`]). With
    /// `merge`, the body starts on an empty stack and its first item is
    /// guarded, and the check of the loop header or function entry before it
    /// is merged into that guard (see [`Self::emit_item`]).
    fn emit_seq_merging(&mut self, items: &[Item<'_>], merge: Option<Merge>) -> Result<(), String> {
        let positions: Vec<usize> = (0..items.len()).filter(|&i| items[i].has_point()).collect();
        let Some(&first) = positions.first() else {
            debug_assert!(merge.is_none(), "merging needs an item");
            for item in items {
                self.emit_plain(item)?;
            }
            return Ok(());
        };
        // The chain's blocks all start here, on the body's incoming stack:
        // `$to_k` for the last item is the outermost.
        let frame_in = items[0].stack.clone();
        let mut chain = Vec::with_capacity(positions.len() - 1);
        for &pos in positions[1..].iter().rev() {
            let item = &items[pos];
            let via_locals = self.needs_locals(item);
            let entry = if via_locals {
                Vec::new()
            } else {
                self.item_sig(item).0
            };
            let bt = self.types.block_type(&frame_in, &entry);
            self.s().block(bt);
            self.ctl.push(false);
            // The dispatch in the first item's rewind arm sets an `if`'s
            // condition before its own locals exist: it gets one now.
            let cond = match if_then_points(item) {
                Some(then_points) => Some((self.locals.alloc(ValType::I32)?, then_points)),
                None => None,
            };
            chain.push(ChainTarget {
                points: item_points(item),
                ctl: self.ctl.len() - 1,
                entry,
                via_locals,
                cond,
            });
        }
        chain.reverse();
        self.emit_item(&items[..first], &items[first], &chain, merge)?;
        let mut run_start = first + 1;
        for (target, &pos) in chain.iter().zip(&positions[1..]) {
            self.emit_chained_item(&items[run_start..pos], &items[pos], target)?;
            run_start = pos + 1;
        }
        for item in &items[run_start..] {
            self.emit_plain(item)?;
        }
        Ok(())
    }

    /// Inputs and results of an item, and which inputs must be real (kept in
    /// locals) when the item is re-entered on rewind.
    fn item_sig(&self, item: &Item<'_>) -> (Vec<ValType>, Vec<ValType>, Vec<bool>) {
        match &item.node {
            Node::Op(_) => unreachable!("plain ops are not items"),
            Node::Call { op, kind, .. } => {
                let (mut inputs, results) = match *op {
                    Operator::Call { function_index } => {
                        let sig = self.info.func_sig(function_index);
                        (sig.params.clone(), sig.results.clone())
                    }
                    Operator::CallIndirect { type_index, .. } => {
                        let sig = &self.info.types[type_index as usize];
                        let mut params = sig.params.clone();
                        params.push(ValType::I32);
                        (params, sig.results.clone())
                    }
                    _ => unreachable!("only calls are call items"),
                };
                let n = inputs.len();
                let real = match kind {
                    CallKind::Blocking
                    | CallKind::Indirect {
                        all_args_real: true,
                    } => {
                        vec![true; n]
                    }
                    CallKind::Indirect { .. } => {
                        let mut r = vec![false; n];
                        r[n - 1] = true;
                        r
                    }
                    _ => vec![false; n],
                };
                inputs.truncate(n);
                (inputs, results, real)
            }
            Node::Struct(s) => {
                let (mut params, results) = self.block_sig(s.blockty);
                let real = match s.op {
                    Operator::Loop { .. } => vec![true; params.len()],
                    Operator::If { .. } => {
                        // The condition is recomputed from the target point
                        // while rewinding (see `Struct::then_points`).
                        params.push(ValType::I32);
                        vec![false; params.len()]
                    }
                    _ => vec![false; params.len()],
                };
                (params, results, real)
            }
        }
    }

    /// Whether an item's inputs and the values below them must go through
    /// locals: some of them must be real when the item is re-entered on
    /// rewind, or it is an `if`, whose condition is set from the target.
    fn needs_locals(&self, item: &Item<'_>) -> bool {
        let (inputs, _, real) = self.item_sig(item);
        let has_below = item.stack.len() > inputs.len();
        has_below || real.contains(&true) || if_then_points(item).is_some()
    }

    /// Whether a first item needs a guard around its run (else the unguarded
    /// fast path applies): its run has effects, or its inputs must go
    /// through locals.
    fn needs_guard(&self, run: &[Item<'_>], item: &Item<'_>) -> bool {
        self.needs_locals(item) || !run.iter().all(is_replayable)
    }

    /// Allocates the locals of an item's inputs and of the values below
    /// them; `cond`, if given, is the local of an `if`'s condition (its last
    /// input).
    fn alloc_item_locals(
        &mut self,
        item: &Item<'_>,
        cond: Option<u32>,
    ) -> Result<(Vec<u32>, Vec<u32>), String> {
        let (inputs, _, _) = self.item_sig(item);
        let below = &item.stack[..item.stack.len() - inputs.len()];
        let mut input_locals = Vec::with_capacity(inputs.len());
        for (i, &ty) in inputs.iter().enumerate() {
            input_locals.push(match cond.filter(|_| i + 1 == inputs.len()) {
                Some(c) => c,
                None => self.locals.alloc(ty)?,
            });
        }
        let mut below_locals = Vec::with_capacity(below.len());
        for &ty in below {
            below_locals.push(self.locals.alloc(ty)?);
        }
        Ok((input_locals, below_locals))
    }

    /// Stores the values a run leaves (below.., inputs..) in their locals.
    fn store_item_locals(&mut self, input_locals: &[u32], below_locals: &[u32]) {
        for &l in input_locals.iter().rev().chain(below_locals.iter().rev()) {
            self.s().local_set(l);
        }
    }

    /// Loads them back, then emits the item and frees its locals.
    fn emit_item_from_locals(
        &mut self,
        item: &Item<'_>,
        input_locals: Vec<u32>,
        below_locals: Vec<u32>,
    ) -> Result<(), String> {
        for &l in below_locals.iter().chain(&input_locals) {
            self.s().local_get(l);
        }
        self.emit_item_itself(item, &input_locals)?;
        for l in input_locals.into_iter().chain(below_locals) {
            self.locals.release(l);
        }
        Ok(())
    }

    /// Emits the first item of a body and the run before it; `chain` holds
    /// the body's later items. With `merged` (the run starts a loop or
    /// function body with an empty operand stack), the header or entry check
    /// and the guard share one state check:
    ///
    /// ```text
    /// block $after_run
    ///   global.get state; if
    ///     header or entry slow path
    ///     if state == REWINDING { rewind arm; br $after_run }
    ///   end
    ///   run; local.set …
    /// end
    /// ```
    fn emit_item(
        &mut self,
        run: &[Item<'_>],
        item: &Item<'_>,
        chain: &[ChainTarget],
        merged: Option<Merge>,
    ) -> Result<(), String> {
        let frame_in = run.first().map_or(&item.stack, |r| &r.stack).clone();
        let if_arm = if_then_points(item);

        if !self.needs_guard(run, item) {
            debug_assert!(merged.is_none(), "merging needs a guard");
            return self.emit_unguarded_item(run, item, chain);
        }

        // Every input and every value below the inputs goes through a local:
        // the guard yields no values (a block result costs wasmi a copy per
        // value, a local costs nothing), and a frame holds only locals. Real
        // inputs and the values below live until the item is done; the
        // other inputs' locals are stale while rewinding, which is fine
        // (dummies are all the item needs).
        let (input_locals, below_locals) = self.alloc_item_locals(item, None)?;

        let state = self.globals.state;
        if let Some(merge) = merged {
            debug_assert!(frame_in.is_empty(), "merging needs an empty stack");
            self.s().block(EncBlockType::Empty);
            self.ctl.push(false);
            let after_run_ctl = self.ctl.len() - 1;
            if matches!(merge, Merge::Header(_)) || self.entry_point {
                self.countdown_check();
            }
            self.s().global_get(state).if_(EncBlockType::Empty);
            self.ctl.push(false);
            match merge {
                Merge::Header(header) => self.header_slow_path(header),
                // The entry's slow path loads the frame, whose layout is
                // final only once the whole body is emitted: it is inserted
                // here afterwards.
                Merge::Entry => {
                    self.entry_slot = Some((self.code.len(), self.depth_of(UNWIND_CTL)));
                }
            }
            self.s()
                .global_get(state)
                .i32_const(abi::STATE_REWINDING)
                .i32_eq()
                .if_(EncBlockType::Empty);
            self.ctl.push(false);
            self.rewind_arm(item, if_arm, &input_locals, chain);
            let d = self.depth_of(after_run_ctl);
            self.s().br(d).end();
            self.ctl.pop();
            self.s().end();
            self.ctl.pop();
            for r in run {
                self.emit_plain(r)?;
            }
            self.store_item_locals(&input_locals, &below_locals);
            self.s().end();
            self.ctl.pop();
        } else {
            // if (state != REWINDING): the run, then its outputs into locals.
            let bt = self.types.block_type(&frame_in, &[]);
            self.s()
                .global_get(state)
                .i32_const(abi::STATE_REWINDING)
                .i32_ne()
                .if_(bt);
            self.ctl.push(false);
            for r in run {
                self.emit_plain(r)?;
            }
            self.store_item_locals(&input_locals, &below_locals);
            // else: rewinding.
            self.s().else_();
            for _ in &frame_in {
                self.s().drop();
            }
            self.rewind_arm(item, if_arm, &input_locals, chain);
            self.s().end();
            self.ctl.pop();
        }
        self.emit_item_from_locals(item, input_locals, below_locals)
    }

    /// The call (with its unwind check) or structure of an item, its inputs
    /// on the stack; `input_locals` are the locals that hold them, if any.
    fn emit_item_itself(&mut self, item: &Item<'_>, input_locals: &[u32]) -> Result<(), String> {
        match &item.node {
            Node::Call { op, point, .. } => {
                self.emit_op(op)?;
                self.unwind_check(*point);
            }
            Node::Struct(s) => {
                let n = self.block_sig(s.blockty).0.len();
                let kept: Vec<Option<u32>> = if input_locals.is_empty() {
                    vec![None; n]
                } else {
                    input_locals.iter().map(|&l| Some(l)).collect()
                };
                self.emit_struct(s, &kept)?;
            }
            Node::Op(_) => unreachable!("plain ops are not items"),
        }
        Ok(())
    }

    /// An item after the first of its body: no guard. Normally the run
    /// falls through into the item; while rewinding, the first item's
    /// dispatch branches to `$to_k`, which ends right before the item.
    fn emit_chained_item(
        &mut self,
        run: &[Item<'_>],
        item: &Item<'_>,
        target: &ChainTarget,
    ) -> Result<(), String> {
        let (input_locals, below_locals) = if target.via_locals {
            self.alloc_item_locals(item, target.cond.map(|(c, _)| c))?
        } else {
            (Vec::new(), Vec::new())
        };
        for r in run {
            self.emit_plain(r)?;
        }
        self.store_item_locals(&input_locals, &below_locals);
        debug_assert_eq!(self.ctl.len() - 1, target.ctl, "chain blocks nest");
        self.s().end();
        self.ctl.pop();
        self.emit_item_from_locals(item, input_locals, below_locals)
    }

    /// The guard's rewinding side: branch to the later item that holds the
    /// target point, if any; for an `if`, set the condition from the target.
    /// The locals of real inputs and of values below were restored with the
    /// frame.
    fn rewind_arm(
        &mut self,
        item: &Item<'_>,
        if_arm: Option<Option<(u32, u32)>>,
        input_locals: &[u32],
        chain: &[ChainTarget],
    ) {
        self.dispatch_unless_target(item, chain);
        if let Some(then_points) = if_arm {
            // The `if` condition: take the arm that holds the target.
            let cond = *input_locals.last().expect("if has a condition");
            self.set_if_condition(cond, then_points);
        }
    }

    /// `cond = resume ∈ then_points`.
    fn set_if_condition(&mut self, cond: u32, then_points: Option<(u32, u32)>) {
        match then_points {
            Some(range) => self.resume_in_range(range),
            None => {
                self.s().i32_const(0);
            }
        }
        self.s().local_set(cond);
    }

    /// Pushes `resume ∈ first..=last` as an i32.
    fn resume_in_range(&mut self, (first, last): (u32, u32)) {
        let resume = self.resume;
        self.s().local_get(resume);
        if first == last {
            self.s().i32_const(first as i32).i32_eq();
        } else {
            self.s()
                .i32_const(first as i32)
                .i32_sub()
                .i32_const((last - first) as i32)
                .i32_le_u();
        }
    }

    /// The unguarded fast path for a first item whose inputs may be dummies
    /// while rewinding and whose run can be replayed harmlessly (see
    /// [`is_replayable`]): no guard, and a state check only when a later item
    /// of the body may hold the target.
    fn emit_unguarded_item(
        &mut self,
        run: &[Item<'_>],
        item: &Item<'_>,
        chain: &[ChainTarget],
    ) -> Result<(), String> {
        for r in run {
            self.emit_plain(r)?;
        }
        if !chain.is_empty() {
            let state = self.globals.state;
            self.s()
                .global_get(state)
                .i32_const(abi::STATE_REWINDING)
                .i32_eq()
                .if_(EncBlockType::Empty);
            self.ctl.push(false);
            self.dispatch_unless_target(item, chain);
            self.s().end();
            self.ctl.pop();
        }
        self.emit_item_itself(item, &[])
    }

    /// While rewinding: unless the target point is inside `item`, branch to
    /// the later item of the chain that holds it (the last one if no other
    /// does: the target is somewhere in this body), with dummy inputs.
    fn dispatch_unless_target(&mut self, item: &Item<'_>, chain: &[ChainTarget]) {
        if chain.is_empty() {
            return;
        }
        self.resume_in_range(item_points(item));
        self.s().i32_eqz().if_(EncBlockType::Empty);
        self.ctl.push(false);
        for (i, target) in chain.iter().enumerate() {
            let last = i + 1 == chain.len();
            if !last {
                self.resume_in_range(target.points);
                self.s().if_(EncBlockType::Empty);
                self.ctl.push(false);
            }
            if let Some((cond, then_points)) = target.cond {
                self.set_if_condition(cond, then_points);
            }
            self.zeros(&target.entry);
            let d = self.depth_of(target.ctl);
            self.s().br(d);
            if !last {
                self.s().end();
                self.ctl.pop();
            }
        }
        self.s().end();
        self.ctl.pop();
    }

    /// After a call that may unwind: if the callee is unwinding, save this
    /// frame at `point` too.
    fn unwind_check(&mut self, point: u32) {
        let state = self.globals.state;
        let resume = self.resume;
        self.s()
            .global_get(state)
            .i32_const(abi::STATE_UNWINDING)
            .i32_eq()
            .if_(EncBlockType::Empty);
        self.ctl.push(false);
        let d = self.depth_of(UNWIND_CTL);
        self.s()
            .i32_const(point as i32)
            .local_set(resume)
            .br(d)
            .end();
        self.ctl.pop();
    }

    fn emit_struct(&mut self, s: &Struct<'_>, input_locals: &[Option<u32>]) -> Result<(), String> {
        let bt = self.enc_blockty(s.blockty);
        match s.op {
            Operator::Loop { .. } if is_unrollable(s) => {
                self.emit_unrolled_loop(s, input_locals)?
            }
            Operator::Loop { .. } => {
                self.s().loop_(bt);
                self.ctl.push(true);
                let params: Vec<u32> = input_locals
                    .iter()
                    .map(|l| l.expect("loop params are kept in locals"))
                    .collect();
                let (header, _) = s.points.expect("a loop header is a point");
                // Merge the header check into the first item's guard when
                // that guard starts the body on an empty stack.
                let first = s.body.iter().position(Item::has_point);
                let merge = params.is_empty()
                    && first.is_some_and(|i| self.needs_guard(&s.body[..i], &s.body[i]));
                if merge {
                    self.emit_seq_merging(&s.body, Some(Merge::Header(header)))?;
                } else {
                    for &l in params.iter().rev() {
                        self.s().local_set(l);
                    }
                    self.loop_header(header);
                    for &l in &params {
                        self.s().local_get(l);
                    }
                    self.emit_seq(&s.body)?;
                }
            }
            Operator::Block { .. } => {
                self.s().block(bt);
                self.ctl.push(true);
                self.emit_seq(&s.body)?;
            }
            _ => {
                self.s().if_(bt);
                self.ctl.push(true);
                self.emit_seq(&s.body)?;
                if let Some(e) = &s.else_body {
                    self.s().else_();
                    self.emit_seq(e)?;
                }
            }
        }
        self.s().end();
        self.ctl.pop();
        Ok(())
    }

    /// An innermost loop whose only point is its header and whose body is
    /// tiny, with the body emitted twice so that the header check runs every
    /// other iteration:
    ///
    /// ```text
    /// block $exit (P -> R)
    ///   loop $L (P -> R)
    ///     header point
    ///     block $B (P -> P)  body, its `br $L` as `br $B`; br $exit  end
    ///     body
    ///   end
    /// end
    /// ```
    ///
    /// In a tight loop the check (two wasmi dispatches) costs as much as the
    /// body; this halves it. Either copy runs any iteration (the loop state is
    /// in locals and the parameters), so the rewind target is still the
    /// header. The closing `end` of `$exit` is emitted by the caller.
    fn emit_unrolled_loop(
        &mut self,
        s: &Struct<'_>,
        input_locals: &[Option<u32>],
    ) -> Result<(), String> {
        let bt = self.enc_blockty(s.blockty);
        let (params, _) = self.block_sig(s.blockty);
        self.s().block(bt);
        self.ctl.push(false);
        let exit_ctl = self.ctl.len() - 1;
        self.s().loop_(bt);
        // While the first copy is emitted, `$B` stands for the loop.
        self.ctl.push(false);
        let locals: Vec<u32> = input_locals
            .iter()
            .map(|l| l.expect("loop params are kept in locals"))
            .collect();
        for &l in locals.iter().rev() {
            self.s().local_set(l);
        }
        let (header, _) = s.points.expect("a loop header is a point");
        self.loop_header(header);
        for &l in &locals {
            self.s().local_get(l);
        }
        let copy_bt = self.types.block_type(&params, &params);
        self.s().block(copy_bt);
        self.ctl.push(true);
        for item in &s.body {
            self.emit_plain(item)?;
        }
        let d = self.depth_of(exit_ctl);
        self.s().br(d).end();
        self.ctl.pop();
        *self.ctl.last_mut().expect("the loop frame") = true;
        for item in &s.body {
            self.emit_plain(item)?;
        }
        self.s().end();
        self.ctl.pop();
        Ok(())
    }

    /// The loop-header point. Normal path: `global.get state; if` (plus the
    /// countdown when configured). Slow path: unwind on request, or finish a
    /// rewind whose target is this header.
    fn loop_header(&mut self, point: u32) {
        let state = self.globals.state;
        self.countdown_check();
        self.s().global_get(state).if_(EncBlockType::Empty);
        self.ctl.push(false);
        self.header_slow_path(point);
        self.s().end();
        self.ctl.pop();
    }

    fn countdown_check(&mut self) {
        if self.countdown {
            let cd = self.globals.countdown.expect("countdown global exists");
            let state = self.globals.state;
            countdown_code(&mut self.s(), cd, state);
        }
    }

    /// A header point's slow path (state != RUNNING): unwind on request, or
    /// finish a rewind that targets this header.
    fn header_slow_path(&mut self, point: u32) {
        let state = self.globals.state;
        let resume = self.resume;
        self.s()
            .global_get(state)
            .i32_const(abi::STATE_UNWIND_REQUESTED)
            .i32_eq()
            .if_(EncBlockType::Empty);
        self.ctl.push(false);
        let d = self.depth_of(UNWIND_CTL);
        self.s()
            .i32_const(abi::STATE_UNWINDING)
            .global_set(state)
            .i32_const(point as i32)
            .local_set(resume)
            .br(d)
            .end();
        self.ctl.pop();
        self.s()
            .local_get(resume)
            .i32_const(point as i32)
            .i32_eq()
            .if_(EncBlockType::Empty)
            .i32_const(abi::STATE_RUNNING)
            .global_set(state)
            .end();
    }
}

fn frame_val_type(t: ValType) -> Option<FrameValType> {
    match t {
        ValType::I32 => Some(FrameValType::I32),
        ValType::I64 => Some(FrameValType::I64),
        ValType::F32 => Some(FrameValType::F32),
        ValType::F64 => Some(FrameValType::F64),
        _ => None,
    }
}

fn type_slot(t: FrameValType) -> u32 {
    match t {
        FrameValType::I32 => 0,
        FrameValType::I64 => 1,
        FrameValType::F32 => 2,
        FrameValType::F64 => 3,
    }
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

/// Largest loop body (in instructions, nested ones included) that
/// [`Emitter::emit_unrolled_loop`] emits twice. The header check weighs most
/// in the smallest loops; the bound keeps the code-size cost of the copy
/// small.
const UNROLL_MAX_BODY_OPS: usize = 24;

fn is_unrollable(s: &Struct<'_>) -> bool {
    fn size(items: &[Item<'_>]) -> usize {
        items
            .iter()
            .map(|i| match &i.node {
                Node::Op(_) | Node::Call { .. } => 1,
                Node::Struct(s) => 2 + size(&s.body) + s.else_body.as_deref().map_or(0, size),
            })
            .sum()
    }
    // The header must be the loop's only point: no calls that may unwind and
    // no nested loops inside, so both copies are plain code.
    matches!(s.points, Some((first, last)) if first == last) && size(&s.body) <= UNROLL_MAX_BODY_OPS
}

/// The slow path of a function entry (state != RUNNING): restore the frame
/// when rewinding; in a recursive function also the entry point (index 0):
/// unwind on request, or finish a rewind that targets it.
struct EntryCode<'a> {
    state: u32,
    func: u32,
    import_base: u32,
    resume: u32,
    saved: &'a [(u32, FrameValType)],
    entry_point: bool,
}

impl EntryCode<'_> {
    /// `unwind_depth`: branch depth of `$unwind` where this code starts.
    fn slow_path(&self, s: &mut InstructionSink<'_>, unwind_depth: u32) {
        s.global_get(self.state)
            .i32_const(abi::STATE_REWINDING)
            .i32_eq()
            .if_(EncBlockType::Empty)
            .i32_const(self.func as i32)
            .call(self.import_base + slot::LOAD_POINT)
            .local_set(self.resume);
        for &(i, t) in self.saved {
            s.call(self.import_base + slot::LOAD_I32 + type_slot(t))
                .local_set(i);
        }
        s.end();
        if self.entry_point {
            s.global_get(self.state)
                .i32_const(abi::STATE_UNWIND_REQUESTED)
                .i32_eq()
                .if_(EncBlockType::Empty)
                .i32_const(abi::STATE_UNWINDING)
                .global_set(self.state)
                .i32_const(0)
                .local_set(self.resume)
                .br(unwind_depth + 1)
                .end()
                .local_get(self.resume)
                .i32_eqz()
                .if_(EncBlockType::Empty)
                .i32_const(abi::STATE_RUNNING)
                .global_set(self.state)
                .end();
        }
    }
}

/// The countdown (only with `RewriteConfig::countdown`): while running, each
/// point decrements a non-zero countdown, and the one that brings it to zero
/// raises an unwind request, served right away by the state check after it.
fn countdown_code(s: &mut InstructionSink<'_>, countdown: u32, state: u32) {
    s.global_get(countdown)
        .if_(EncBlockType::Empty)
        .global_get(state)
        .i32_eqz()
        .if_(EncBlockType::Empty)
        .global_get(countdown)
        .i32_const(1)
        .i32_sub()
        .global_set(countdown)
        .global_get(countdown)
        .i32_eqz()
        .if_(EncBlockType::Empty)
        .i32_const(abi::STATE_UNWIND_REQUESTED)
        .global_set(state)
        .end()
        .end()
        .end();
}

/// Whether a run may be executed again while rewinding instead of being
/// guarded. Such a run precedes an item whose inputs are all ignored on
/// rewind (a wasm callee restores its own locals; a block's parameters are
/// consumed by guarded code), so its values do not matter; replaying it is
/// harmless if it writes nothing and cannot trap: reads of locals and
/// globals, constants and non-trapping arithmetic. Memory loads are excluded:
/// their address may be computed from a global (the shadow-stack pointer)
/// that differs on replay, so a replayed load could trap.
fn is_replayable(item: &Item<'_>) -> bool {
    use Operator::*;
    let Node::Op(op) = &item.node else {
        return false;
    };
    matches!(
        op,
        LocalGet { .. }
            | GlobalGet { .. }
            | I32Const { .. }
            | I64Const { .. }
            | F32Const { .. }
            | F64Const { .. }
            | RefNull { .. }
            | RefFunc { .. }
            | RefIsNull
            | Nop
            | Drop
            | Select
            | TypedSelect { .. }
            | I32Eqz
            | I32Eq
            | I32Ne
            | I32LtS
            | I32LtU
            | I32GtS
            | I32GtU
            | I32LeS
            | I32LeU
            | I32GeS
            | I32GeU
            | I64Eqz
            | I64Eq
            | I64Ne
            | I64LtS
            | I64LtU
            | I64GtS
            | I64GtU
            | I64LeS
            | I64LeU
            | I64GeS
            | I64GeU
            | F32Eq
            | F32Ne
            | F32Lt
            | F32Gt
            | F32Le
            | F32Ge
            | F64Eq
            | F64Ne
            | F64Lt
            | F64Gt
            | F64Le
            | F64Ge
            | I32Clz
            | I32Ctz
            | I32Popcnt
            | I32Add
            | I32Sub
            | I32Mul
            | I32And
            | I32Or
            | I32Xor
            | I32Shl
            | I32ShrS
            | I32ShrU
            | I32Rotl
            | I32Rotr
            | I64Clz
            | I64Ctz
            | I64Popcnt
            | I64Add
            | I64Sub
            | I64Mul
            | I64And
            | I64Or
            | I64Xor
            | I64Shl
            | I64ShrS
            | I64ShrU
            | I64Rotl
            | I64Rotr
            | F32Abs
            | F32Neg
            | F32Ceil
            | F32Floor
            | F32Trunc
            | F32Nearest
            | F32Sqrt
            | F32Add
            | F32Sub
            | F32Mul
            | F32Div
            | F32Min
            | F32Max
            | F32Copysign
            | F64Abs
            | F64Neg
            | F64Ceil
            | F64Floor
            | F64Trunc
            | F64Nearest
            | F64Sqrt
            | F64Add
            | F64Sub
            | F64Mul
            | F64Div
            | F64Min
            | F64Max
            | F64Copysign
            | I32WrapI64
            | I64ExtendI32S
            | I64ExtendI32U
            | F32ConvertI32S
            | F32ConvertI32U
            | F32ConvertI64S
            | F32ConvertI64U
            | F32DemoteF64
            | F64ConvertI32S
            | F64ConvertI32U
            | F64ConvertI64S
            | F64ConvertI64U
            | F64PromoteF32
            | I32ReinterpretF32
            | I64ReinterpretF64
            | F32ReinterpretI32
            | F64ReinterpretI64
            | I32Extend8S
            | I32Extend16S
            | I64Extend8S
            | I64Extend16S
            | I64Extend32S
            | I32TruncSatF32S
            | I32TruncSatF32U
            | I32TruncSatF64S
            | I32TruncSatF64U
            | I64TruncSatF32S
            | I64TruncSatF32U
            | I64TruncSatF64S
            | I64TruncSatF64U
    )
}

/// Pushes the zero (or null) value of `ty`: the dummy used for results of
/// an unwinding function and for inputs that are ignored while rewinding.
fn push_zero(code: &mut Vec<u8>, ty: ValType) {
    let mut s = InstructionSink::new(code);
    match ty {
        ValType::I32 => s.i32_const(0),
        ValType::I64 => s.i64_const(0),
        ValType::F32 => s.f32_const(0.0.into()),
        ValType::F64 => s.f64_const(0.0.into()),
        ValType::V128 => s.v128_const(0),
        ValType::Ref(rt) => s.ref_null(
            RoundtripReencoder
                .heap_type(rt.heap_type())
                .expect("reference types re-encode"),
        ),
    };
}
