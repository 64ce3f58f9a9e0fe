//! The slow path of a function entry: restoring the frame when rewinding,
//! and the entry point of a recursive function.

use wasm_encoder::{BlockType as EncBlockType, InstructionSink};

use super::emit::type_slot;
use crate::abi::{self, slot};
use crate::FrameValType;

/// The slow path of a function entry (state != RUNNING): restore the frame
/// when rewinding; in a recursive function also the entry point (index 0):
/// unwind on request, or finish a rewind that targets it.
pub(super) struct EntryCode<'a> {
    pub(super) state: u32,
    pub(super) func: u32,
    pub(super) import_base: u32,
    pub(super) resume: u32,
    pub(super) saved: &'a [(u32, FrameValType)],
    pub(super) entry_point: bool,
}

impl EntryCode<'_> {
    /// `unwind_depth`: branch depth of `$unwind` where this code starts.
    pub(super) fn slow_path(&self, s: &mut InstructionSink<'_>, unwind_depth: u32) {
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
pub(super) fn countdown_code(s: &mut InstructionSink<'_>, countdown: u32, state: u32) {
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
