//! Emission: the instrumented body, item by item (the guard, the chain to
//! the item that holds a rewind target, the unwind check after a call).

use std::collections::HashMap;

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{BlockType as EncBlockType, InstructionSink};
use wasmparser::{BlockType, Operator, ValType};

use super::entry::countdown_code;
use super::tree::{is_replayable, is_unrollable, Item, Node, Struct};
use super::{emit_data_drop_aware, Globals, Remap, TypeInterner};
use crate::abi::{self};
use crate::module::{CallKind, ModuleInfo};
use crate::FrameValType;

/// Locals of the function being instrumented. Temporaries are recycled
/// through a free list once their value is dead; a value that must survive a
/// migration lives in its own local until the item using it is done.
pub(super) struct Locals {
    pub(super) types: Vec<ValType>,
    pub(super) free: HashMap<ValType, Vec<u32>>,
}

impl Locals {
    pub(super) fn alloc(&mut self, ty: ValType) -> Result<u32, String> {
        if ty.is_reference_type() {
            return Err(format!("a {ty} value lives across a migration point"));
        }
        if let Some(i) = self.free.get_mut(&ty).and_then(Vec::pop) {
            return Ok(i);
        }
        self.types.push(ty);
        Ok(self.types.len() as u32 - 1)
    }

    pub(super) fn release(&mut self, index: u32) {
        let ty = self.types[index as usize];
        self.free.entry(ty).or_default().push(index);
    }
}

/// A check that shares its `global.get state; if` with the guard of the
/// first item after it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Merge {
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
pub(super) struct ChainTarget {
    /// First and last point inside the item.
    pub(super) points: (u32, u32),
    /// The item's `$to_k` block, as an index in `Emitter::ctl`.
    pub(super) ctl: usize,
    /// What `$to_k` yields: nothing if the item's inputs (and the values
    /// below them) go through locals, else its inputs, dummies on rewind.
    pub(super) entry: Vec<ValType>,
    pub(super) via_locals: bool,
    /// For an `if`: the local of its condition and the points of its `then`
    /// arm. The dispatch sets it before branching.
    pub(super) cond: Option<(u32, Option<(u32, u32)>)>,
}

/// For an `if` item: the points of its `then` arm (`None` if it has none).
pub(super) fn if_then_points(item: &Item<'_>) -> Option<Option<(u32, u32)>> {
    match &item.node {
        Node::Struct(s) if matches!(s.op, Operator::If { .. }) => Some(s.then_points),
        _ => None,
    }
}

pub(super) fn item_points(item: &Item<'_>) -> (u32, u32) {
    match &item.node {
        Node::Call { point, .. } => (*point, *point),
        Node::Struct(s) => s.points.expect("items contain points"),
        Node::Op(_) => unreachable!("plain ops are not items"),
    }
}

/// One entry of the emitted control stack: `true` for a frame that exists in
/// the input (branches may target it), `false` for one the transform added.
pub(super) type Ctl = bool;

pub(super) struct Emitter<'m, 'i> {
    pub(super) info: &'m ModuleInfo<'i>,
    pub(super) globals: &'m Globals,
    pub(super) types: &'m mut TypeInterner,
    pub(super) remap: &'m mut Remap,
    pub(super) countdown: bool,
    pub(super) code: Vec<u8>,
    pub(super) ctl: Vec<Ctl>,
    pub(super) locals: Locals,
    pub(super) resume: u32,
    /// The function's entry is point 0 (it is recursive).
    pub(super) entry_point: bool,
    /// Where the entry slow path goes when merged: byte offset in `code`, and
    /// the branch depth of `$unwind` there.
    pub(super) entry_slot: Option<(usize, u32)>,
}

pub(super) const UNWIND_CTL: usize = 1;

impl Emitter<'_, '_> {
    pub(super) fn s(&mut self) -> InstructionSink<'_> {
        InstructionSink::new(&mut self.code)
    }

    /// Relative depth of the input's branch depth `depth` in the output.
    pub(super) fn map_depth(&self, depth: u32) -> u32 {
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

    pub(super) fn depth_of(&self, ctl_index: usize) -> u32 {
        (self.ctl.len() - 1 - ctl_index) as u32
    }

    pub(super) fn zero(&mut self, ty: ValType) {
        push_zero(&mut self.code, ty);
    }

    pub(super) fn zeros(&mut self, tys: &[ValType]) {
        for &t in tys {
            self.zero(t);
        }
    }

    pub(super) fn block_sig(&self, blockty: BlockType) -> (Vec<ValType>, Vec<ValType>) {
        match blockty {
            BlockType::Empty => (vec![], vec![]),
            BlockType::Type(t) => (vec![], vec![t]),
            BlockType::FuncType(i) => {
                let sig = &self.info.types[i as usize];
                (sig.params.clone(), sig.results.clone())
            }
        }
    }

    pub(super) fn enc_blockty(&mut self, blockty: BlockType) -> EncBlockType {
        self.remap
            .block_type(blockty)
            .expect("validated block types re-encode")
    }

    pub(super) fn emit_op(&mut self, op: &Operator<'_>) -> Result<(), String> {
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
    pub(super) fn emit_plain(&mut self, item: &Item<'_>) -> Result<(), String> {
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

    pub(super) fn emit_seq(&mut self, items: &[Item<'_>]) -> Result<(), String> {
        self.emit_seq_merging(items, None)
    }

    /// Emits a body as a chain of its items (see [`ChainTarget`]). With
    /// `merge`, the body starts on an empty stack and its first item is
    /// guarded, and the check of the loop header or function entry before it
    /// is merged into that guard (see [`Self::emit_item`]).
    pub(super) fn emit_seq_merging(
        &mut self,
        items: &[Item<'_>],
        merge: Option<Merge>,
    ) -> Result<(), String> {
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
    pub(super) fn item_sig(&self, item: &Item<'_>) -> (Vec<ValType>, Vec<ValType>, Vec<bool>) {
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
    pub(super) fn needs_locals(&self, item: &Item<'_>) -> bool {
        let (inputs, _, real) = self.item_sig(item);
        let has_below = item.stack.len() > inputs.len();
        has_below || real.contains(&true) || if_then_points(item).is_some()
    }

    /// Whether a first item needs a guard around its run (else the unguarded
    /// fast path applies): its run has effects, or its inputs must go
    /// through locals.
    pub(super) fn needs_guard(&self, run: &[Item<'_>], item: &Item<'_>) -> bool {
        self.needs_locals(item) || !run.iter().all(is_replayable)
    }

    /// Allocates the locals of an item's inputs and of the values below
    /// them; `cond`, if given, is the local of an `if`'s condition (its last
    /// input).
    pub(super) fn alloc_item_locals(
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
    pub(super) fn store_item_locals(&mut self, input_locals: &[u32], below_locals: &[u32]) {
        for &l in input_locals.iter().rev().chain(below_locals.iter().rev()) {
            self.s().local_set(l);
        }
    }

    /// Loads them back, then emits the item and frees its locals.
    pub(super) fn emit_item_from_locals(
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
    pub(super) fn emit_item(
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
    pub(super) fn emit_item_itself(
        &mut self,
        item: &Item<'_>,
        input_locals: &[u32],
    ) -> Result<(), String> {
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
    pub(super) fn emit_chained_item(
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
    pub(super) fn rewind_arm(
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
    pub(super) fn set_if_condition(&mut self, cond: u32, then_points: Option<(u32, u32)>) {
        match then_points {
            Some(range) => self.resume_in_range(range),
            None => {
                self.s().i32_const(0);
            }
        }
        self.s().local_set(cond);
    }

    /// Pushes `resume ∈ first..=last` as an i32.
    pub(super) fn resume_in_range(&mut self, (first, last): (u32, u32)) {
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
    pub(super) fn emit_unguarded_item(
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
    pub(super) fn dispatch_unless_target(&mut self, item: &Item<'_>, chain: &[ChainTarget]) {
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
    pub(super) fn unwind_check(&mut self, point: u32) {
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

    pub(super) fn emit_struct(
        &mut self,
        s: &Struct<'_>,
        input_locals: &[Option<u32>],
    ) -> Result<(), String> {
        let bt = self.enc_blockty(s.blockty);
        match s.op {
            Operator::Loop { .. } if is_unrollable(s) => {
                self.emit_unrolled_loop(s, input_locals)?
            }
            Operator::Loop { .. } if !s.header => {
                // Every iteration passes a callee's entry point (see
                // `loop_needs_header`): the loop is a plain structure.
                self.s().loop_(bt);
                self.ctl.push(true);
                self.emit_seq(&s.body)?;
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
    pub(super) fn emit_unrolled_loop(
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
    pub(super) fn loop_header(&mut self, point: u32) {
        let state = self.globals.state;
        self.countdown_check();
        self.s().global_get(state).if_(EncBlockType::Empty);
        self.ctl.push(false);
        self.header_slow_path(point);
        self.s().end();
        self.ctl.pop();
    }

    pub(super) fn countdown_check(&mut self) {
        if self.countdown {
            let cd = self.globals.countdown.expect("countdown global exists");
            let state = self.globals.state;
            countdown_code(&mut self.s(), cd, state);
        }
    }

    /// A header point's slow path (state != RUNNING): unwind on request, or
    /// finish a rewind that targets this header.
    pub(super) fn header_slow_path(&mut self, point: u32) {
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

pub(super) fn frame_val_type(t: ValType) -> Option<FrameValType> {
    match t {
        ValType::I32 => Some(FrameValType::I32),
        ValType::I64 => Some(FrameValType::I64),
        ValType::F32 => Some(FrameValType::F32),
        ValType::F64 => Some(FrameValType::F64),
        _ => None,
    }
}

pub(super) fn type_slot(t: FrameValType) -> u32 {
    match t {
        FrameValType::I32 => 0,
        FrameValType::I64 => 1,
        FrameValType::F32 => 2,
        FrameValType::F64 => 3,
    }
}

/// Pushes the zero (or null) value of `ty`: the dummy used for results of
/// an unwinding function and for inputs that are ignored while rewinding.
pub(super) fn push_zero(code: &mut Vec<u8>, ty: ValType) {
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
