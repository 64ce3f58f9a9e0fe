//! The source side of one migration, as a state machine: inputs (a local
//! step finished, the destination answered, a request failed, a timer
//! fired) go in, outputs (do this step, send that request, resume the
//! vessel, report, finish) come out. It does no I/O and reads no clock;
//! the node's driver (`mesh::migrate`) and the simulation
//! (`migration::sim`) perform its outputs and feed back what happened.
//!
//! The sequence (docs/protocol.md, "A migration"): pre-copy rounds while
//! the vessel runs (copy memory, offer it, send what the destination
//! lacks), then the final round with the vessel paused (pack, offer, send,
//! prepare), then the commit point (the `Left` record, durable), then the
//! commit, sent until the destination confirms. Before the commit point
//! any failure resumes the vessel here; after it, nothing does.

use std::time::Duration;

use protocol::membership::Nonce;
use protocol::migrate::OfferKind;
use protocol::refusal::{Refusal, RefusalCode};

use super::bugs::{active, Bug};
use super::error::{ErrorKind, MigrationError, Step};

/// Pre-copy rounds at most.
pub const MAX_WARM_ROUNDS: u32 = 4;

/// A pre-copy round that changed at most this many chunks ends the
/// pre-copy early: the final round's delta is small enough.
pub const WARM_CONVERGED_CHUNKS: usize = 16;

/// How often a committed source sends its commit again until the
/// destination confirms.
pub const COMMIT_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Tries of a nonce request whose destination did not answer, before the
/// vessel is paused (a restarted peer leaves a dead connection behind for
/// up to the QUIC idle timeout).
pub const NONCE_RETRIES: u32 = 8;

/// The wait before asking again for a nonce.
pub const NONCE_RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// Offers sent again, each with a fresh nonce, when the connection failed
/// under one before the vessel is paused.
pub const OFFER_RETRIES: u32 = 4;

/// The wait before offering again after a lost offer.
pub const OFFER_RETRY_INTERVAL: Duration = Duration::from_millis(300);

/// How a migration is run.
#[derive(Debug, Clone, Copy)]
pub struct SourcePlan {
    /// Pre-copy rounds (at most [`MAX_WARM_ROUNDS`]); 0 is stop-and-copy.
    pub warm_rounds: u32,
}

/// What happened (the driver's answer to the last output that asked for
/// something).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A pre-copy copy was taken and diffed: this many chunks changed.
    Copied {
        changed_chunks: usize,
    },
    /// The vessel did not reach a point to copy its memory at in time (it
    /// waits in a host call): go to the final round.
    CopyTimedOut,
    Nonce(Nonce),
    /// The destination took the offer; `next_nonce` is for the next one.
    Lacking {
        next_nonce: Nonce,
    },
    /// Every chunk the destination lacked was sent and stored.
    ChunksSent,
    Paused,
    Packed,
    Prepared,
    /// The `Left` record is durable: the commit point is passed.
    LeftDurable,
    Committed,
    /// The step asked for last failed.
    Failed(ErrorKind),
    /// The timer asked for with [`Output::RetryAfter`] fired.
    RetryDue,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Take a copy of the running vessel's memory and diff it (round `round`).
    CopyMemory {
        round: u32,
    },
    AskNonce,
    /// Offer the current image (a warm round's, or the final one) under `nonce`.
    Offer {
        kind: OfferKind,
        nonce: Nonce,
    },
    /// Send the chunks the destination lacks.
    SendLacking {
        kind: OfferKind,
    },
    /// Pause the vessel at its next migration point.
    Pause,
    /// Pack the paused vessel into its final image.
    Pack,
    Prepare,
    /// Write the `Left` record durably (the commit point).
    WriteLeft,
    SendCommit,
    /// Feed [`Input::RetryDue`] after this long.
    RetryAfter(Duration),
    /// Before the commit point: run the vessel on here from the final
    /// capture (no step lost or repeated).
    ResumeFromCapture,
    /// Before the commit point, the paused instance lost: run the vessel on
    /// here from its last durable image.
    RestartFromRecord,
    /// Tell the destination the move is off (best effort, after resuming).
    SendAbort,
    /// Record that the destination confirmed (`Left { acked: true }`).
    MarkAcked,
    /// Pre-copy round `rounds` is done (for the report).
    RoundDone {
        rounds: u32,
    },
    /// The phase changed (for the report).
    Phase(Phase),
    /// The migration is over.
    Finished(Result<(), MigrationError>),
}

/// A migration's phase, as `meshnode migrate` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Warming,
    Final,
    Committed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Copying { round: u32 },
    Nonce { round: Option<u32>, tries: u32 },
    Offering { round: Option<u32>, tries: u32 },
    Sending { round: Option<u32> },
    Pausing,
    Packing,
    Preparing,
    Recording,
    Committing,
    Finished,
}

/// The source's state machine for one migration.
#[derive(Debug)]
pub struct Source {
    plan: SourcePlan,
    stage: Stage,
    /// The destination's nonce for our next offer.
    nonce: Option<Nonce>,
    /// Chunks the last warm round changed.
    changed: usize,
    /// The source ran the vessel again after the commit point (only ever
    /// under [`Bug::ResumeSourceAfterCommit`]).
    resumed_after_commit: bool,
}

impl Source {
    /// A new migration of a running vessel: returns the machine and its
    /// first outputs.
    pub fn start(plan: SourcePlan) -> (Source, Vec<Output>) {
        let mut s = Source {
            plan: SourcePlan {
                warm_rounds: plan.warm_rounds.min(MAX_WARM_ROUNDS),
            },
            stage: Stage::Finished,
            nonce: None,
            changed: usize::MAX,
            resumed_after_commit: false,
        };
        let mut out = vec![Output::Phase(Phase::Warming)];
        s.next_round(0, &mut out);
        (s, out)
    }

    /// A commit decided before a restart (`Left`, not acknowledged): send
    /// it until the destination confirms.
    pub fn finish_commit() -> (Source, Vec<Output>) {
        let s = Source {
            plan: SourcePlan { warm_rounds: 0 },
            stage: Stage::Committing,
            nonce: None,
            changed: 0,
            resumed_after_commit: false,
        };
        (s, vec![Output::Phase(Phase::Committed), Output::SendCommit])
    }

    pub fn is_finished(&self) -> bool {
        self.stage == Stage::Finished
    }

    /// Whether the vessel is paused here (between the pause and either the
    /// resume or the commit point).
    pub fn is_paused(&self) -> bool {
        matches!(
            self.stage,
            Stage::Packing | Stage::Preparing | Stage::Recording
        ) || matches!(
            self.stage,
            Stage::Nonce { round: None, .. }
                | Stage::Offering { round: None, .. }
                | Stage::Sending { round: None }
        )
    }

    /// Feeds one input; returns what to do.
    pub fn handle(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        match input {
            Input::Failed(kind) => self.failed(kind, &mut out),
            Input::RetryDue => self.retry(&mut out),
            ok => self.advance(ok, &mut out),
        }
        out
    }

    fn advance(&mut self, input: Input, out: &mut Vec<Output>) {
        match (self.stage, input) {
            (Stage::Copying { round }, Input::Copied { changed_chunks }) => {
                self.changed = changed_chunks;
                self.offer(Some(round), 0, out);
            }
            (Stage::Copying { .. }, Input::CopyTimedOut) => self.final_round(out),
            (Stage::Nonce { round, tries }, Input::Nonce(n)) => {
                self.nonce = Some(n);
                self.offer(round, tries, out);
            }
            (Stage::Offering { round, .. }, Input::Lacking { next_nonce }) => {
                self.nonce = Some(next_nonce);
                self.stage = Stage::Sending { round };
                out.push(Output::SendLacking {
                    kind: kind_of(round),
                });
            }
            (Stage::Sending { round: Some(round) }, Input::ChunksSent) => {
                self.round_done(round, out)
            }
            (Stage::Sending { round: None }, Input::ChunksSent) => {
                self.stage = Stage::Preparing;
                out.push(Output::Prepare);
            }
            (Stage::Pausing, Input::Paused) => {
                self.stage = Stage::Packing;
                out.push(Output::Pack);
            }
            (Stage::Packing, Input::Packed) => self.offer(None, 0, out),
            (Stage::Preparing, Input::Prepared) => {
                self.stage = Stage::Recording;
                out.push(Output::WriteLeft);
            }
            (Stage::Recording, Input::LeftDurable) => {
                self.stage = Stage::Committing;
                out.extend([Output::Phase(Phase::Committed), Output::SendCommit]);
            }
            (Stage::Committing, Input::Committed) => {
                self.stage = Stage::Finished;
                out.extend([Output::MarkAcked, Output::Finished(Ok(()))]);
            }
            // An answer to a request this machine no longer waits for (a
            // duplicate, or one that lost a race with a timeout).
            _ => {}
        }
    }

    fn next_round(&mut self, round: u32, out: &mut Vec<Output>) {
        if round >= self.plan.warm_rounds {
            return self.final_round(out);
        }
        self.stage = Stage::Copying { round };
        out.push(Output::CopyMemory { round });
    }

    fn round_done(&mut self, round: u32, out: &mut Vec<Output>) {
        out.push(Output::RoundDone { rounds: round + 1 });
        if round > 0 && self.changed <= WARM_CONVERGED_CHUNKS {
            return self.final_round(out);
        }
        self.next_round(round + 1, out);
    }

    fn final_round(&mut self, out: &mut Vec<Output>) {
        self.stage = Stage::Pausing;
        out.extend([Output::Phase(Phase::Final), Output::Pause]);
    }

    /// Offers with the nonce in hand, or asks for one first.
    fn offer(&mut self, round: Option<u32>, tries: u32, out: &mut Vec<Output>) {
        match self.nonce.take() {
            Some(nonce) => {
                self.stage = Stage::Offering { round, tries };
                out.push(Output::Offer {
                    kind: kind_of(round),
                    nonce,
                });
            }
            None => {
                self.stage = Stage::Nonce { round, tries };
                out.push(Output::AskNonce);
            }
        }
    }

    fn retry(&mut self, out: &mut Vec<Output>) {
        match self.stage {
            Stage::Nonce { round, tries } => {
                self.stage = Stage::Nonce { round, tries };
                out.push(Output::AskNonce);
            }
            Stage::Offering { round, tries } => self.offer(round, tries, out),
            Stage::Committing => out.push(Output::SendCommit),
            _ => {}
        }
    }

    /// The step in progress failed: decide by the stage, whose branches are
    /// the protocol's failure table (docs/protocol.md).
    fn failed(&mut self, kind: ErrorKind, out: &mut Vec<Output>) {
        match self.stage {
            Stage::Committing => self.commit_failed(kind, out),
            Stage::Nonce {
                round: Some(_),
                tries,
            } if retryable(&kind) && tries < NONCE_RETRIES => {
                self.stage = Stage::Nonce {
                    round: self.round(),
                    tries: tries + 1,
                };
                out.push(Output::RetryAfter(NONCE_RETRY_INTERVAL));
            }
            Stage::Offering { round, tries } if self.offer_again(&kind, round, tries) => {
                // The offer may or may not have arrived; a new nonce makes
                // a new offer, which replaces the old one at the destination.
                self.nonce = None;
                self.stage = Stage::Offering {
                    round,
                    tries: tries + 1,
                };
                out.push(Output::RetryAfter(OFFER_RETRY_INTERVAL));
            }
            Stage::Packing => {
                // Its paused instance went with the failed packing: it runs
                // on from its last durable image, as after a crash.
                self.stage = Stage::Finished;
                out.extend([Output::RestartFromRecord, self.finish(kind)]);
            }
            _ if self.is_paused() => {
                // Before the commit point: the vessel runs on here first,
                // then the destination hears of the abort (it never runs a
                // prepared vessel without the commit, which will not come).
                let err = self.finish(kind);
                self.stage = Stage::Finished;
                out.extend([Output::ResumeFromCapture, Output::SendAbort, err]);
            }
            _ => {
                // Not paused (pre-copy, or the pause never came): the vessel
                // never stopped running here.
                let err = self.finish(kind);
                self.stage = Stage::Finished;
                out.push(err);
            }
        }
    }

    /// A kept nonce may have expired (a long round): a refusal of that kind
    /// is retried once with a fresh one. A lost offer before the pause is
    /// retried a few times.
    fn offer_again(&self, kind: &ErrorKind, round: Option<u32>, tries: u32) -> bool {
        let nonce_refused = matches!(
            kind,
            ErrorKind::Refused(Refusal {
                code: RefusalCode::NonceExpired | RefusalCode::Replayed,
                ..
            })
        );
        match kind {
            _ if nonce_refused => tries == 0,
            ErrorKind::Unreachable(_) => round.is_some() && tries < OFFER_RETRIES,
            _ => false,
        }
    }

    /// After the commit point nothing resumes the vessel here: the commit is
    /// sent until the destination confirms. A destination that records a
    /// later epoch has run the vessel and moved it on, which confirms it.
    fn commit_failed(&mut self, kind: ErrorKind, out: &mut Vec<Output>) {
        if matches!(&kind, ErrorKind::Refused(r) if r.code == RefusalCode::StaleEpoch) {
            self.stage = Stage::Finished;
            out.extend([Output::MarkAcked, Output::Finished(Ok(()))]);
            return;
        }
        if active(Bug::ResumeSourceAfterCommit) && !self.resumed_after_commit {
            self.resumed_after_commit = true;
            out.push(Output::ResumeFromCapture);
        }
        out.push(Output::RetryAfter(COMMIT_RETRY_INTERVAL));
    }

    fn round(&self) -> Option<u32> {
        match self.stage {
            Stage::Nonce { round, .. }
            | Stage::Offering { round, .. }
            | Stage::Sending { round } => round,
            Stage::Copying { round } => Some(round),
            _ => None,
        }
    }

    fn step(&self) -> Step {
        let warm = self.round().is_some();
        match self.stage {
            Stage::Copying { .. } => Step::CopyMemory,
            Stage::Nonce { .. } => Step::Nonce,
            Stage::Offering { .. } if warm => Step::WarmOffer,
            Stage::Offering { .. } => Step::FinalOffer,
            Stage::Sending { .. } if warm => Step::WarmChunks,
            Stage::Sending { .. } => Step::FinalChunks,
            Stage::Pausing => Step::Pause,
            Stage::Packing => Step::Pack,
            Stage::Preparing => Step::Prepare,
            Stage::Recording | Stage::Committing | Stage::Finished => Step::CommitRecord,
        }
    }

    fn finish(&self, kind: ErrorKind) -> Output {
        Output::Finished(Err(MigrationError::new(self.step(), kind)))
    }
}

fn kind_of(round: Option<u32>) -> OfferKind {
    match round {
        Some(_) => OfferKind::Warm,
        None => OfferKind::Final,
    }
}

/// Whether a failed request is worth asking again: the peer did not
/// answer (a refusal is an answer).
fn retryable(kind: &ErrorKind) -> bool {
    matches!(kind, ErrorKind::Unreachable(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(b: u8) -> Nonce {
        Nonce([b; 32])
    }

    /// Runs the happy path and returns every output, in order.
    fn happy(rounds: u32, changed: &[usize]) -> Vec<Output> {
        let (mut s, mut all) = Source::start(SourcePlan {
            warm_rounds: rounds,
        });
        let mut changed = changed.iter();
        let mut pending = all.clone();
        while let Some(o) = pending.first().cloned() {
            pending.remove(0);
            let input = match o {
                Output::CopyMemory { .. } => Input::Copied {
                    changed_chunks: *changed.next().unwrap(),
                },
                Output::AskNonce => Input::Nonce(n(1)),
                Output::Offer { .. } => Input::Lacking { next_nonce: n(2) },
                Output::SendLacking { .. } => Input::ChunksSent,
                Output::Pause => Input::Paused,
                Output::Pack => Input::Packed,
                Output::Prepare => Input::Prepared,
                Output::WriteLeft => Input::LeftDurable,
                Output::SendCommit => Input::Committed,
                _ => continue,
            };
            let next = s.handle(input);
            all.extend(next.clone());
            pending.extend(next);
        }
        assert!(s.is_finished());
        all
    }

    #[test]
    fn pre_copy_stops_when_a_round_changes_little() {
        let out = happy(4, &[1000, 500, 3]);
        let rounds: Vec<_> = out
            .iter()
            .filter(|o| matches!(o, Output::RoundDone { .. }))
            .collect();
        assert_eq!(rounds.len(), 3);
        assert_eq!(
            out.iter().filter(|o| **o == Output::AskNonce).count(),
            1,
            "later offers reuse the nonce an answer brought"
        );
        assert_eq!(out.last(), Some(&Output::Finished(Ok(()))));
    }

    #[test]
    fn stop_and_copy_has_no_rounds() {
        let out = happy(0, &[]);
        assert!(!out.iter().any(|o| matches!(o, Output::CopyMemory { .. })));
    }

    #[test]
    fn a_failure_in_the_pause_resumes_here_then_aborts() {
        let (mut s, _) = Source::start(SourcePlan { warm_rounds: 0 });
        s.handle(Input::Paused);
        s.handle(Input::Packed);
        s.handle(Input::Nonce(n(1)));
        let out = s.handle(Input::Failed(ErrorKind::Unreachable("gone".into())));
        assert_eq!(out[0], Output::ResumeFromCapture);
        assert_eq!(out[1], Output::SendAbort);
        assert!(matches!(&out[2], Output::Finished(Err(e)) if e.step() == Step::FinalOffer));
    }

    #[test]
    fn after_the_commit_point_the_commit_is_retried_never_resumed() {
        let (mut s, _) = Source::finish_commit();
        for _ in 0..5 {
            let out = s.handle(Input::Failed(ErrorKind::Unreachable("gone".into())));
            assert_eq!(out, vec![Output::RetryAfter(COMMIT_RETRY_INTERVAL)]);
            assert_eq!(s.handle(Input::RetryDue), vec![Output::SendCommit]);
        }
        assert_eq!(
            s.handle(Input::Committed),
            vec![Output::MarkAcked, Output::Finished(Ok(()))]
        );
    }

    #[test]
    fn an_expired_kept_nonce_is_replaced_once() {
        let (mut s, _) = Source::start(SourcePlan { warm_rounds: 1 });
        s.handle(Input::Copied { changed_chunks: 10 });
        assert_eq!(
            s.handle(Input::Nonce(n(1))),
            vec![Output::Offer {
                kind: OfferKind::Warm,
                nonce: n(1)
            }]
        );
        let refused = ErrorKind::Refused(Refusal::new(RefusalCode::NonceExpired, "old"));
        assert_eq!(
            s.handle(Input::Failed(refused.clone())),
            vec![Output::RetryAfter(OFFER_RETRY_INTERVAL)]
        );
        assert_eq!(s.handle(Input::RetryDue), vec![Output::AskNonce]);
        s.handle(Input::Nonce(n(3)));
        let out = s.handle(Input::Failed(refused));
        assert!(
            matches!(&out[0], Output::Finished(Err(e)) if e.refusal_code() == Some(RefusalCode::NonceExpired))
        );
    }
}
