//! Why a migration did not happen: a kind that code acts on, the step it
//! failed at, and a detail for people. Modelled on wasmi's
//! `Error { kind: Box<ErrorKind> }`: small to move around, matched by kind,
//! never by its text.

use std::fmt;

use protocol::control::{FailureKind, MigrationFailure};
use protocol::refusal::{Refusal, RefusalCode};

/// The step of a migration at which it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Start,
    CopyMemory,
    Nonce,
    WarmOffer,
    WarmChunks,
    Pause,
    Pack,
    FinalOffer,
    FinalChunks,
    Prepare,
    CommitRecord,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Start => "starting",
            Step::CopyMemory => "copying memory",
            Step::Nonce => "asking for a nonce",
            Step::WarmOffer => "a pre-copy offer",
            Step::WarmChunks => "sending pre-copy chunks",
            Step::Pause => "pausing the vessel",
            Step::Pack => "packing the paused vessel",
            Step::FinalOffer => "the final offer",
            Step::FinalChunks => "sending the final chunks",
            Step::Prepare => "prepare",
            Step::CommitRecord => "writing the commit record",
        })
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The destination (or this node, for a start) refused, with its code.
    Refused(Refusal),
    /// The destination could not be reached (its connection failed).
    Unreachable(String),
    /// The vessel ended before it could move.
    VesselEnded,
    /// This node failed: a disk error, a capture that could not be packed.
    Local(String),
}

/// A migration's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationError {
    kind: Box<ErrorKind>,
    step: Step,
}

impl MigrationError {
    pub fn new(step: Step, kind: ErrorKind) -> MigrationError {
        MigrationError {
            kind: Box::new(kind),
            step,
        }
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    pub fn step(&self) -> Step {
        self.step
    }

    /// The refusal's code, when the failure is a refusal.
    pub fn refusal_code(&self) -> Option<RefusalCode> {
        match &*self.kind {
            ErrorKind::Refused(r) => Some(r.code),
            _ => None,
        }
    }

    /// The epoch a destination reported refusing an offer as stale: the
    /// driver keeps it, and the next attempt offers above it
    /// ([`super::record::offer_epoch`]).
    pub fn reported_epoch(&self) -> Option<u64> {
        match &*self.kind {
            ErrorKind::Refused(r) => super::record::reported_epoch(r),
            _ => None,
        }
    }
}

impl fmt::Display for MigrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.kind {
            ErrorKind::Refused(r) if self.step == Step::Start => write!(f, "{}", r.detail),
            ErrorKind::Refused(r) => write!(f, "{}: refused ({r})", self.step),
            ErrorKind::Unreachable(e) => {
                write!(f, "{}: the destination did not answer ({e})", self.step)
            }
            ErrorKind::VesselEnded => write!(f, "the vessel ended before it could move"),
            ErrorKind::Local(e) => write!(f, "{}: {e}", self.step),
        }
    }
}

impl std::error::Error for MigrationError {}

/// A failure as a migration's report carries it to the user's CLI.
impl From<&MigrationError> for MigrationFailure {
    fn from(e: &MigrationError) -> MigrationFailure {
        let kind = match e.kind() {
            ErrorKind::Refused(r) => FailureKind::Refused(r.code),
            ErrorKind::Unreachable(_) => FailureKind::Unreachable,
            ErrorKind::VesselEnded => FailureKind::VesselEnded,
            ErrorKind::Local(_) => FailureKind::Local,
        };
        MigrationFailure {
            kind,
            detail: e.to_string(),
        }
    }
}
