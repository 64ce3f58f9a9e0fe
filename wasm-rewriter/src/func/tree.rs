//! The tree of a function body: its structures with their bodies, dead
//! code dropped, the operand-stack types before every node, the migration
//! points numbered; and which items may skip their guard or be unrolled.

use wasmparser::{
    BlockType, FuncToValidate, FuncValidator, FunctionBody, Operator, ValType, ValidatorResources,
};

use crate::module::{CallKind, ModuleInfo};

pub(super) struct Item<'a> {
    /// Types of the current control frame's operand stack before this node
    /// (block parameters included, values of enclosing frames excluded).
    pub(super) stack: Vec<ValType>,
    pub(super) node: Node<'a>,
}

pub(super) enum Node<'a> {
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

pub(super) struct Struct<'a> {
    pub(super) op: Operator<'a>,
    pub(super) blockty: BlockType,
    pub(super) body: Vec<Item<'a>>,
    pub(super) else_body: Option<Vec<Item<'a>>>,
    /// First and last migration point inside (a loop's header is the first).
    pub(super) points: Option<(u32, u32)>,
    /// For an `if`: the points of its `then` arm. While rewinding, the arm to
    /// take is the one holding the target, so the condition need not be kept.
    pub(super) then_points: Option<(u32, u32)>,
    /// For a loop: its header is a migration point (see [`loop_needs_header`]).
    pub(super) header: bool,
}

impl Item<'_> {
    pub(super) fn has_point(&self) -> bool {
        match &self.node {
            Node::Op(_) => false,
            Node::Call { .. } => true,
            Node::Struct(s) => s.points.is_some(),
        }
    }
}

pub(super) struct Open<'a> {
    pub(super) op: Option<Operator<'a>>,
    pub(super) blockty: BlockType,
    pub(super) stack: Vec<ValType>,
    pub(super) body: Vec<Item<'a>>,
    pub(super) else_body: Option<Vec<Item<'a>>>,
    /// Set after an unconditional branch: the rest of this body is dead.
    pub(super) dead: bool,
    /// Structures opened inside the dead code being skipped.
    pub(super) dead_depth: u32,
}

impl<'a> Open<'a> {
    pub(super) fn current(&mut self) -> &mut Vec<Item<'a>> {
        match &mut self.else_body {
            Some(e) => e,
            None => &mut self.body,
        }
    }
}

pub(super) fn frame_stack(fv: &FuncValidator<ValidatorResources>) -> Option<Vec<ValType>> {
    let base = fv.get_control_frame(0)?.height;
    let height = fv.operand_stack_height() as usize;
    (0..height.checked_sub(base)?)
        .rev()
        .map(|depth| fv.get_operand_type(depth).flatten())
        .collect()
}

/// Parses the body into a tree, dropping unreachable code and recording the
/// operand stack before each node.
pub(super) fn build_tree<'a>(
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
                let header = matches!(op, Operator::Loop { .. })
                    && (has_params(info, done.blockty) || loop_needs_header(info, &done.body));
                let item = Item {
                    stack: done.stack,
                    node: Node::Struct(Box::new(Struct {
                        op,
                        blockty: done.blockty,
                        body: done.body,
                        else_body: done.else_body,
                        points: None,
                        then_points: None,
                        header,
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

fn has_params(info: &ModuleInfo<'_>, blockty: BlockType) -> bool {
    match blockty {
        BlockType::FuncType(i) => !info.types[i as usize].params.is_empty(),
        _ => false,
    }
}

/// Whether a loop needs a header point: unless every iteration calls a
/// function whose entry is a point ([`ModuleInfo::checks_at_entry`]), which
/// then serves an unwind request in the loop's stead, so a loop can never
/// spin without passing a point. Checked structurally: a top-level call of
/// the body with no branch back to the loop before it. Code after a
/// top-level item runs only after that item (blocks before it have closed,
/// and the only backward edge is to the header), so every path from the
/// header to a back edge passes that call.
pub(super) fn loop_needs_header(info: &ModuleInfo<'_>, body: &[Item<'_>]) -> bool {
    for item in body {
        if branches_to(item, 0) {
            return true;
        }
        if let Node::Call {
            op: Operator::Call { function_index },
            kind: CallKind::Direct,
            ..
        } = item.node
        {
            if info.checks_at_entry(function_index) {
                return false;
            }
        }
    }
    true
}

/// Whether `item` holds a branch to the frame `depth` levels out of it.
fn branches_to(item: &Item<'_>, depth: u32) -> bool {
    match &item.node {
        Node::Op(Operator::Br { relative_depth } | Operator::BrIf { relative_depth }) => {
            *relative_depth == depth
        }
        Node::Op(Operator::BrTable { targets }) => {
            targets.default() == depth || targets.targets().any(|t| t.ok() == Some(depth))
        }
        Node::Op(_) | Node::Call { .. } => false,
        Node::Struct(s) => s
            .body
            .iter()
            .chain(s.else_body.iter().flatten())
            .any(|i| branches_to(i, depth + 1)),
    }
}

/// Numbers migration points in document order (a loop's header before its
/// body) and records each structure's point range.
pub(super) fn number_points(items: &mut [Item<'_>], next: &mut u32) {
    for item in items {
        match &mut item.node {
            Node::Op(_) => {}
            Node::Call { point, .. } => {
                *point = *next;
                *next += 1;
            }
            Node::Struct(s) => {
                let first = *next;
                if s.header {
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

/// Largest loop body (in instructions, nested ones included) that
/// [`Emitter::emit_unrolled_loop`] emits twice. The header check weighs most
/// in the smallest loops; the bound keeps the code-size cost of the copy
/// small.
pub(super) const UNROLL_MAX_BODY_OPS: usize = 24;

pub(super) fn is_unrollable(s: &Struct<'_>) -> bool {
    pub(super) fn size(items: &[Item<'_>]) -> usize {
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
    s.header
        && matches!(s.points, Some((first, last)) if first == last)
        && size(&s.body) <= UNROLL_MAX_BODY_OPS
}

/// Whether a run may be executed again while rewinding instead of being
/// guarded. Such a run precedes an item whose inputs are all ignored on
/// rewind (a wasm callee restores its own locals; a block's parameters are
/// consumed by guarded code), so its values do not matter; replaying it is
/// harmless if it writes nothing and cannot trap: reads of locals and
/// globals, constants and non-trapping arithmetic. Memory loads are excluded:
/// their address may be computed from a global (the shadow-stack pointer)
/// that differs on replay, so a replayed load could trap.
pub(super) fn is_replayable(item: &Item<'_>) -> bool {
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
