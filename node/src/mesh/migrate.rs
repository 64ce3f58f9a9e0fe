//! The source side of a migration: the driver that performs what the
//! migration layer's source machine decides, with the vessel's runner, the
//! chunk store and the link to the destination.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::control::{MigrationFailure, MigrationPhase, MigrationReport, PeerIdBytes};
use protocol::membership::Nonce;
use protocol::migrate::{
    Decision, DecisionBody, FinalPush, MigrationRequest, MigrationResponse, OfferKind,
    PEER_PROTOCOL_VERSION,
};
use protocol::refusal::Refusal;
use protocol::snapshot::{Hash, Manifest};
use protocol::vessel::{VesselId, VesselImage};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::faults::fault_point;
use super::link::RequestError;
use super::pack::{pack, Outgoing, Packed};
use super::transfer::{
    all_chunks, ask_nonce, error_kind, final_delta, finish_storing, offer_once, send_chunks,
    MemoryDelta, OfferSpec,
};
use super::vessels::{Migrator, MAX_COPY_WAITS, MAX_DEPARTED_IMAGES_BEFORE_EVICT, WARM_COPY_WAIT};
use crate::migration::error::{MigrationError, Step};
use crate::migration::record::{check_may_migrate, offer_epoch};
use crate::migration::source::{Input, Output, Phase, Source, SourcePlan};
use crate::migration::ErrorKind;
use crate::sync::lock;
use crate::vessel::image::MemoryTracker;
use crate::vessel::runner::{self, Command as RunnerCmd};
use crate::vessel::Record;

// ---------------------------------------------------------------------------
// The source side.

/// The note of a move a user asked for.
pub(super) fn by_hand(mesh: &Migrator) -> String {
    format!("migrated here by hand from {}", mesh.me)
}

/// Starts moving a vessel that runs here to `to`, in a task. `why` travels
/// with it: the destination's `ps` shows it as how the vessel got there.
pub fn start_migration(
    mesh: &Migrator,
    id: VesselId,
    to: PeerId,
    why: &str,
) -> Result<(), Refusal> {
    {
        let mut h = lock(&mesh.host);
        let l = h.vessels.get_mut(&id);
        let record = l.as_ref().map(|l| &l.record);
        let running = l
            .as_ref()
            .is_some_and(|l| l.ended().is_none() && l.runner.is_some());
        let migrating = l.as_ref().is_some_and(|l| l.migrating);
        check_may_migrate(record, id, running, migrating)?;
        let l = l.expect("checked: the vessel is here");
        l.migrating = true;
    }
    lock(&mesh.migrations).insert(
        id,
        MigrationReport {
            vessel: id,
            from: mesh.me.to_string(),
            to: to.to_string(),
            phase: MigrationPhase::Warming,
            rounds: 0,
            bytes_sent: 0,
            chunks_sent: 0,
            chunks_skipped: 0,
            final_chunks_sent: 0,
            downtime_us: None,
            total_ms: 0,
            error: None,
            step_chunks: 0,
            step_chunks_sent: 0,
        },
    );
    let mesh = mesh.clone();
    let why = why.to_string();
    tokio::spawn(async move {
        let started = Instant::now();
        let result = migrate(&mesh, id, to, &why).await;
        let total_ms = started.elapsed().as_millis() as u64;
        match result {
            Ok(()) => {
                mesh.set_report(id, |r| {
                    r.phase = MigrationPhase::Done;
                    r.total_ms = total_ms;
                });
                info!(vessel = %id, %to, total_ms, "migration done");
                lock(&mesh.reported).remove(&id);
            }
            Err(e) => {
                warn!(vessel = %id, %to, "migration aborted: {e}");
                if let Some(known) = e.reported_epoch() {
                    let mut reported = lock(&mesh.reported);
                    let kept = reported.entry(id).or_default();
                    *kept = (*kept).max(known);
                }
                mesh.set_report(id, |r| {
                    r.phase = MigrationPhase::Aborted;
                    r.error = Some(MigrationFailure::from(&e));
                    r.total_ms = total_ms;
                });
            }
        }
        let done = mesh
            .report(id)
            .is_some_and(|r| r.phase == MigrationPhase::Done);
        crate::ops::note_migration(&mesh.host, id, &why, mesh.report(id), done);
        if let Some(l) = lock(&mesh.host).vessels.get_mut(&id) {
            l.migrating = false;
        }
    });
    Ok(())
}

/// Moves vessel `id` to `to`, as the migration layer's source machine
/// decides: pre-copy rounds while it runs, then the final round while it
/// is paused, then the commit. This loop only performs the machine's
/// outputs and feeds back what happened; any failure before the commit
/// point resumes the vessel here, because the machine says so.
pub(super) async fn migrate(
    mesh: &Migrator,
    id: VesselId,
    to: PeerId,
    why: &str,
) -> Result<(), MigrationError> {
    let mut run = Run::new(mesh, id, to, why)
        .map_err(|e| MigrationError::new(Step::Start, ErrorKind::Local(e)))?;
    // A leased vessel moves only under a certificate that hands the new
    // epoch to the destination (issue 15): won before the first round,
    // off the pause.
    run.handoff =
        super::lease::keep::win_handoff(&mesh.lease_driver(), &mesh.host, id, run.spec.epoch, to)
            .await
            .map_err(|r| MigrationError::new(Step::Start, ErrorKind::Refused(r)))?
            .map(Box::new);
    if run.handoff.is_some() {
        // The voters promised this epoch to this destination: a later
        // attempt (this one failing, to another node) offers above it.
        let mut reported = lock(&mesh.reported);
        let kept = reported.entry(id).or_default();
        *kept = (*kept).max(run.spec.epoch);
    }
    let plan = SourcePlan {
        warm_rounds: mesh.policy.warm_rounds,
    };
    let (mut machine, mut outputs) = Source::start(plan);
    loop {
        let mut input = None;
        for output in outputs {
            if let Output::Finished(result) = output {
                if result.is_ok() {
                    run.finished().await;
                }
                return result;
            }
            if let Some(next) = run.perform(output).await {
                input = Some(next);
            }
        }
        // The machine waits only for a step it asked for; a batch with none
        // would be a bug in it, reported rather than hung on.
        let Some(input) = input else {
            let stuck = ErrorKind::Local("the source machine asked for nothing".into());
            return Err(MigrationError::new(Step::Start, stuck));
        };
        outputs = machine.handle(input);
    }
}

/// One migration's driver: what it keeps between the machine's steps.
struct Run<'a> {
    mesh: &'a Migrator,
    /// The same link, giving up at the first transport error: used while
    /// the vessel is paused, where a dead destination would otherwise keep
    /// it stopped through every retry's dial timeout. Giving up there is
    /// safe: before the commit point the vessel runs on here.
    paused_link: Migrator,
    spec: OfferSpec,
    why: &'a str,
    vessel: Outgoing,
    tracker: Arc<Mutex<MemoryTracker>>,
    /// Every chunk sent during this migration.
    sent: HashSet<Hash>,
    /// The image the next offer carries (a warm round's, then the final one).
    offer_image: Vec<u8>,
    /// What the destination lacks of the last offer.
    lacking: Vec<Hash>,
    /// The destination prepared the final image in its answer to the offer.
    prepared_in_offer: bool,
    /// The memory chunks of the last pre-copy round, by index (the final
    /// round's changed chunks are patched against them).
    warm_chunks: Vec<Option<Hash>>,
    paused: Option<runner::Paused>,
    packed: Option<Packed>,
    marks: PauseMarks,
    /// The certificate handing the offered epoch to the destination, for
    /// a leased vessel (sent with the final offer).
    handoff: Option<Box<protocol::lease::Certificate>>,
}

/// When each step of the pause ended, from the pause (for the debug line
/// that bench_migration.py reads).
#[derive(Default)]
struct PauseMarks {
    paused_at: Option<Instant>,
    packed: Duration,
    offered: Duration,
    sent: Duration,
    prepared: Duration,
    recorded: Duration,
    acked_at: Option<Instant>,
}

impl PauseMarks {
    fn since_pause(&self) -> Duration {
        self.paused_at.map_or(Duration::ZERO, |t| t.elapsed())
    }
}

impl<'a> Run<'a> {
    fn new(mesh: &'a Migrator, id: VesselId, to: PeerId, why: &'a str) -> Result<Run<'a>, String> {
        let (owned_epoch, vessel) = outgoing(mesh, id)?;
        let reported = lock(&mesh.reported).get(&id).copied();
        let epoch = offer_epoch(owned_epoch, reported)
            .ok_or_else(|| format!("vessel {id} is at the last epoch there is"))?;
        Ok(Run {
            mesh,
            paused_link: mesh.failing_fast(),
            spec: OfferSpec {
                to,
                kind: OfferKind::Warm,
                id,
                epoch,
            },
            why,
            vessel,
            tracker: Arc::new(Mutex::new(MemoryTracker::default())),
            sent: HashSet::new(),
            offer_image: Vec::new(),
            lacking: Vec::new(),
            prepared_in_offer: false,
            warm_chunks: Vec::new(),
            paused: None,
            packed: None,
            marks: PauseMarks::default(),
            handoff: None,
        })
    }

    /// Performs one output; returns the input it produced, if it is a step
    /// the machine waits for.
    async fn perform(&mut self, output: Output) -> Option<Input> {
        let done = |r: Result<Input, ErrorKind>| Some(r.unwrap_or_else(Input::Failed));
        let id = self.spec.id;
        match output {
            Output::CopyMemory { .. } => done(self.copy_memory().await),
            Output::AskNonce => done(
                ask_nonce(self.link(), self.spec.to)
                    .await
                    .map(Input::Nonce)
                    .map_err(error_kind),
            ),
            Output::Offer { kind, nonce } => done(self.offer(kind, nonce).await),
            Output::SendLacking { kind } => done(self.send_lacking(kind).await),
            Output::Pause => done(self.pause().await),
            Output::Pack => done(self.pack().await),
            Output::Prepare => done(self.prepare().await),
            Output::WriteLeft => done(self.write_left()),
            Output::SendCommit => done(self.send_commit().await),
            Output::RetryAfter(wait) => {
                tokio::time::sleep(wait).await;
                Some(Input::RetryDue)
            }
            Output::ResumeFromCapture => {
                self.resume_from_capture().await;
                None
            }
            Output::RestartFromRecord => {
                if let Err(e) = restart_from_record(self.mesh, id) {
                    warn!(vessel = %id, "cannot run it again from its record: {e}");
                }
                None
            }
            Output::SendAbort => {
                self.send_abort();
                None
            }
            Output::MarkAcked => {
                mark_acked(self.mesh, id, self.spec.epoch);
                None
            }
            Output::RoundDone { rounds } => {
                self.mesh.set_report(id, |r| r.rounds = rounds);
                None
            }
            Output::Phase(phase) => {
                self.mesh.set_report(id, |r| r.phase = report_phase(phase));
                None
            }
            Output::Finished(_) => None,
        }
    }

    /// The link for the next request: fail fast while the vessel is paused.
    fn link(&self) -> &Migrator {
        match self.paused.is_some() || self.packed.is_some() {
            true => &self.paused_link,
            false => self.mesh,
        }
    }

    fn send_cmd(&self, cmd: RunnerCmd) -> Result<(), ErrorKind> {
        let h = lock(&self.mesh.host);
        let l = h.vessels.get(&self.spec.id).ok_or(ErrorKind::VesselEnded)?;
        let runner = l.runner.as_ref().ok_or(ErrorKind::VesselEnded)?;
        runner.send(cmd).map_err(ErrorKind::Local)
    }

    /// A pre-copy round's copy of the running vessel's memory, diffed with
    /// the last one (changed chunks hashed and stored).
    async fn copy_memory(&mut self) -> Result<Input, ErrorKind> {
        let (tx, mut rx) = oneshot::channel();
        self.send_cmd(RunnerCmd::CopyMemory(tx))?;
        // A running vessel answers at the end of its slice, a waiting one
        // from inside its wait: pre-copy always runs, unless no copy comes
        // within all the waits (one slice that runs for seconds, or a wait
        // that cannot hear commands), when the machine goes to the pause.
        let mut waits = 0;
        let memory = loop {
            match tokio::time::timeout(WARM_COPY_WAIT, &mut rx).await {
                Ok(m) => break m.map_err(|_| ErrorKind::VesselEnded)?,
                Err(_) if waits + 1 < MAX_COPY_WAITS => waits += 1,
                Err(_) => {
                    warn!(vessel = %self.spec.id, "no memory copy within {} ms: moving it without pre-copy", (WARM_COPY_WAIT * MAX_COPY_WAITS).as_millis());
                    return Ok(Input::CopyTimedOut);
                }
            }
        };
        let (t, s) = (self.tracker.clone(), lock(&self.mesh.host).store.clone());
        let changed = tokio::task::spawn_blocking(move || lock(&t).update_copy(&s, &memory))
            .await
            .map_err(|e| ErrorKind::Local(e.to_string()))?
            .map_err(|e| ErrorKind::Local(e.to_string()))?;
        let mem_image = lock(&self.tracker).image.clone();
        self.offer_image =
            protocol::cbor::encode(&vec![mem_image, self.vessel.module_image.clone()]);
        Ok(Input::Copied {
            changed_chunks: changed,
        })
    }

    async fn offer(&mut self, kind: OfferKind, nonce: Nonce) -> Result<Input, ErrorKind> {
        let spec = OfferSpec { kind, ..self.spec };
        let image = self.offer_image.clone();
        // The no-deduplication baseline sends everything after the offer.
        let push = match (kind, self.mesh.policy.dedup) {
            (OfferKind::Final, true) => Some(self.final_push().await?),
            _ => None,
        };
        let pushed: Vec<(Hash, u64)> = push
            .iter()
            .flat_map(|p| {
                let whole = p.chunks.iter().map(|c| (c.hash, c.bytes.0.len() as u64));
                let patched = p.patches.iter().map(|c| {
                    let bytes: usize = c.runs.iter().map(|r| r.bytes.0.len()).sum();
                    (c.hash, bytes as u64)
                });
                whole.chain(patched)
            })
            .collect();
        let lease = match kind {
            OfferKind::Final => self.handoff.clone(),
            OfferKind::Warm => None,
        };
        let answer = offer_once(self.link(), spec, image, nonce, push, lease)
            .await
            .map_err(error_kind)?;
        self.count_pushed(&pushed);
        // Prepared means nothing was lacking; an answer that says both is
        // taken as not prepared (the `Prepare` then asks again).
        self.prepared_in_offer = answer.prepared && answer.lacking.is_empty();
        self.lacking = match self.mesh.policy.dedup {
            true => answer.lacking,
            false => self.everything_unsent(kind)?,
        };
        self.sent.extend(self.lacking.iter().copied());
        if kind == OfferKind::Final {
            self.marks.offered = self.marks.since_pause();
            self.report_skipped()?;
        }
        Ok(Input::Lacking {
            next_nonce: answer.next_nonce,
        })
    }

    /// The final offer's delta, pushed with it so that the pause needs no
    /// round trip to learn what the destination lacks: the memory chunks
    /// that changed since the last pre-copy round (new to the
    /// destination; small changes as patches), then the volumes' and log's
    /// chunks this migration has not sent (the destination may have some
    /// from an earlier visit; it ignores those). With the ask to prepare
    /// at once when nothing is left lacking: then the `Prepare` round trip
    /// goes too.
    async fn final_push(&self) -> Result<FinalPush, ErrorKind> {
        let packed = self.packed.as_ref().ok_or(ErrorKind::VesselEnded)?;
        let delta = MemoryDelta {
            before: self.warm_chunks.clone(),
            after: lock(&self.tracker).image.chunks.clone(),
        };
        let module: HashSet<Hash> = self
            .vessel
            .module_image
            .chunks
            .iter()
            .flatten()
            .copied()
            .collect();
        let more: Vec<Hash> = packed
            .image
            .own_chunks()
            .into_iter()
            .filter(|h| !module.contains(h))
            .collect();
        let (chunks, patches) =
            final_delta(self.mesh, delta, more, &self.sent, &packed.fresh).await?;
        Ok(FinalPush {
            chunks,
            prepare: true,
            patches,
        })
    }

    /// Pushed chunks count as sent (the report's bytes and chunks too).
    fn count_pushed(&mut self, pushed: &[(Hash, u64)]) {
        self.sent.extend(pushed.iter().map(|(h, _)| *h));
        let bytes: u64 = pushed.iter().map(|(_, b)| b).sum();
        let n = pushed.len() as u64;
        self.mesh.set_report(self.spec.id, |r| {
            r.bytes_sent += bytes;
            r.chunks_sent += n;
            r.final_chunks_sent += n;
        });
    }

    /// The no-deduplication baseline: every chunk the offered images name
    /// that this migration has not sent yet.
    fn everything_unsent(&self, kind: OfferKind) -> Result<Vec<Hash>, ErrorKind> {
        let module = &self.vessel.module_image;
        if kind == OfferKind::Warm {
            let memory = lock(&self.tracker).image.clone();
            return Ok(all_chunks(&[&memory, module], &[], &self.sent));
        }
        let image = &self.packed.as_ref().ok_or(ErrorKind::VesselEnded)?.image;
        let manifest = final_manifest(image)?;
        Ok(all_chunks(
            &[&manifest.memory, module],
            &image.own_chunks(),
            &self.sent,
        ))
    }

    /// Skipped: chunks of the final image that the destination had before
    /// this migration began (earlier visits, other vessels, the module).
    fn report_skipped(&self) -> Result<(), ErrorKind> {
        let image = &self.packed.as_ref().ok_or(ErrorKind::VesselEnded)?.image;
        let manifest = final_manifest(image)?;
        let mut needed: HashSet<Hash> = image.own_chunks().into_iter().collect();
        needed.extend(manifest.memory.chunks.iter().flatten().copied());
        let skipped = needed.iter().filter(|h| !self.sent.contains(h)).count() as u64;
        self.mesh
            .set_report(self.spec.id, |r| r.chunks_skipped = skipped);
        Ok(())
    }

    async fn send_lacking(&mut self, kind: OfferKind) -> Result<Input, ErrorKind> {
        let lacking = std::mem::take(&mut self.lacking);
        let spec = OfferSpec { kind, ..self.spec };
        let fresh = self.packed.as_ref().map(|p| p.fresh.clone());
        send_chunks(self.link(), spec, lacking, fresh.as_ref()).await?;
        if kind == OfferKind::Final {
            self.marks.sent = self.marks.since_pause();
        }
        Ok(Input::ChunksSent)
    }

    async fn pause(&mut self) -> Result<Input, ErrorKind> {
        let (tx, rx) = oneshot::channel();
        self.send_cmd(RunnerCmd::Pause(tx))?;
        let paused = rx
            .await
            .map_err(|_| ErrorKind::VesselEnded)?
            .map_err(ErrorKind::Local)?;
        self.marks.paused_at = Some(paused.at);
        self.paused = Some(paused);
        Ok(Input::Paused)
    }

    async fn pack(&mut self) -> Result<Input, ErrorKind> {
        let paused = self.paused.take().ok_or(ErrorKind::VesselEnded)?;
        self.warm_chunks = lock(&self.tracker).image.chunks.clone();
        let header = (self.spec.epoch, self.why);
        let packed = pack(self.mesh, self.spec.id, header, &self.vessel, &self.tracker, paused)
            .await
            .inspect_err(|e| {
                warn!(vessel = %self.spec.id, "cannot pack the paused vessel ({e:?}); it continues from its last image here");
            })?;
        // Pair assertion with the destination's check of the same hash.
        debug_assert_eq!(Hash::of(&packed.bytes), packed.hash);
        self.offer_image = packed.bytes.clone();
        self.packed = Some(packed);
        self.marks.packed = self.marks.since_pause();
        Ok(Input::Packed)
    }

    async fn prepare(&mut self) -> Result<Input, ErrorKind> {
        let image = self.packed.as_ref().ok_or(ErrorKind::VesselEnded)?.hash;
        if self.prepared_in_offer {
            // The destination prepared this very image in its answer to
            // the final offer (which names it), as a `Prepare` would have.
            self.marks.prepared = self.marks.since_pause();
            return Ok(Input::Prepared);
        }
        let request = MigrationRequest::Prepare {
            vessel: self.spec.id,
            epoch: self.spec.epoch,
            image,
        };
        let to = self.spec.to;
        match self
            .link()
            .link
            .migration(to, request)
            .await
            .map_err(error_kind)?
        {
            MigrationResponse::Prepared => {
                self.marks.prepared = self.marks.since_pause();
                Ok(Input::Prepared)
            }
            other => Err(error_kind(RequestError::unexpected(to, &other))),
        }
    }

    /// The commit point: the `Left` record, durable. From here the vessel
    /// belongs to the destination.
    fn write_left(&mut self) -> Result<Input, ErrorKind> {
        fault_point("before-commit");
        let (id, to) = (self.spec.id, self.spec.to);
        let packed = self.packed.as_ref().ok_or(ErrorKind::VesselEnded)?;
        let record = Record::Left {
            epoch: self.spec.epoch,
            image: packed.hash,
            to: to.to_bytes(),
            acked: false,
        };
        let mut h = lock(&self.mesh.host);
        h.write_record(id, &record)
            .map_err(|e| ErrorKind::Local(format!("cannot write the commit record: {e}")))?;
        // Its clients' bytes go to the destination from now on.
        if let Some(hub) = h.hubs.remove(&id) {
            hub.stop();
        }
        if let Some(l) = h.vessels.get_mut(&id) {
            l.record = record;
            l.runner = None;
            l.run_ms_before = packed.image.run_ms;
            l.migrations = packed.image.migrations;
        }
        h.remember_departed(id, packed.hash);
        // Its traffic now enters towards the new host, which keeps its own book.
        h.traffic.forget(id);
        drop(h);
        fault_point("after-commit-record");
        self.marks.recorded = self.marks.since_pause();
        Ok(Input::LeftDurable)
    }

    /// The commit, on the patient link: the vessel is the destination's now,
    /// and nothing is gained by giving up early.
    async fn send_commit(&mut self) -> Result<Input, ErrorKind> {
        let (id, to) = (self.spec.id, self.spec.to);
        let commit = MigrationRequest::Commit(self.decision(true)?);
        let answer = self.mesh.link.migration(to, commit).await;
        self.marks.acked_at = Some(Instant::now());
        match answer {
            Ok(MigrationResponse::Committed) => Ok(Input::Committed),
            Ok(other) => Err(error_kind(RequestError::unexpected(to, &other))),
            Err(e) => {
                warn!(vessel = %id, %to, "commit not confirmed yet ({e})");
                Err(error_kind(e))
            }
        }
    }

    fn decision(&self, commit: bool) -> Result<Decision, ErrorKind> {
        let packed = self.packed.as_ref().ok_or(ErrorKind::VesselEnded)?;
        Ok(signed_decision(self.mesh, self.spec, packed.hash, commit))
    }

    /// Before the commit point: the vessel runs on here from the capture
    /// taken for the move (its chunks stored first), so no step of the
    /// program is lost or repeated.
    async fn resume_from_capture(&mut self) {
        let id = self.spec.id;
        let Some(packed) = self.packed.as_mut() else {
            if let Err(e) = restart_from_record(self.mesh, id) {
                warn!(vessel = %id, "cannot run it again from its record: {e}");
            }
            return;
        };
        let store = lock(&self.mesh.host).store.clone();
        if let Some(stored) = packed.stored.take() {
            finish_storing(&store, stored, &packed.fresh).await;
        }
        if let Err(e) = resume_here(self.mesh, id, packed.image.clone()) {
            warn!(vessel = %id, "cannot resume it here: {e}");
        }
    }

    /// Tells the destination the move is off: best effort, after the
    /// vessel runs here again (a destination never runs a prepared vessel
    /// without the commit, which will not come now).
    fn send_abort(&self) {
        let Ok(decision) = self.decision(false) else {
            return;
        };
        let (m, to) = (self.mesh.clone(), self.spec.to);
        tokio::spawn(async move {
            let abort = MigrationRequest::Abort(decision);
            let _ = tokio::time::timeout(Duration::from_secs(2), m.link.migration(to, abort)).await;
        });
    }

    /// After the destination confirmed: the downtime is reported, and the
    /// spent instance is freed and this move's chunks made durable, off
    /// the pause.
    async fn finished(mut self) {
        let id = self.spec.id;
        let marks = &self.marks;
        let downtime = match (marks.paused_at, marks.acked_at) {
            (Some(p), Some(a)) => a.saturating_duration_since(p),
            _ => Duration::ZERO,
        };
        let Some(mut packed) = self.packed.take() else {
            return;
        };
        let store = lock(&self.mesh.host).store.clone();
        if let Some(stored) = packed.stored.take() {
            finish_storing(&store, stored, &packed.fresh).await;
        }
        let memory_bytes = packed.paused.vessel.memory().len() as u64;
        tokio::task::spawn_blocking(move || {
            drop(packed);
            if let Err(e) = store.sync_written() {
                warn!(vessel = %id, "cannot sync the store: {e}");
            }
        });
        tracing::debug!(
            vessel = %id,
            memory_bytes = memory_bytes,
            packed_us = marks.packed.as_micros() as u64,
            offered_us = marks.offered.as_micros() as u64,
            sent_us = marks.sent.as_micros() as u64,
            prepared_us = marks.prepared.as_micros() as u64,
            recorded_us = marks.recorded.as_micros() as u64,
            committed_us = downtime.as_micros() as u64,
            "pause phases (from the pause)"
        );
        self.mesh
            .set_report(id, |r| r.downtime_us = Some(downtime.as_micros() as u64));
    }
}

/// What a migration of `id` needs, read once at its start: the vessel's
/// epoch and module, its volumes' guest paths, its log and directory.
fn outgoing(mesh: &Migrator, id: VesselId) -> Result<(u64, Outgoing), String> {
    let mut h = lock(&mesh.host);
    let l = h.vessels.get(&id).ok_or("vessel gone")?;
    if l.runner.is_none() {
        return Err("the vessel is not running".into());
    }
    let epoch = l.record.epoch();
    let image_hash = l.record.image();
    let guests: Vec<String> = l
        .deployment
        .body
        .volumes
        .iter()
        .map(|v| v.guest.clone())
        .collect();
    let log = l.log.clone();
    let bytes = h
        .store
        .get_image_doc(&image_hash)
        .map_err(|e| e.to_string())?;
    let img: VesselImage = protocol::cbor::decode(&bytes).map_err(|e| e.to_string())?;
    let module_bytes =
        crate::store::get_image(&h.store, &img.module, protocol::limits::MAX_MODULE_BYTES)
            .map_err(|e| e.to_string())?;
    let module = h.module(module_bytes, &img.deployment.body.name)?;
    let vessel_dir = h.vessel_dir(id);
    let vessel = Outgoing {
        module,
        module_image: img.module,
        guests,
        log,
        vessel_dir,
    };
    Ok((epoch, vessel))
}

fn final_manifest(image: &VesselImage) -> Result<Manifest, ErrorKind> {
    protocol::cbor::decode(&image.manifest).map_err(|e| ErrorKind::Local(e.to_string()))
}

/// The source's signed decision about the move `spec` describes.
fn signed_decision(mesh: &Migrator, spec: OfferSpec, image: Hash, commit: bool) -> Decision {
    Decision::sign(
        &mesh.signing,
        DecisionBody {
            version: PEER_PROTOCOL_VERSION,
            vessel: spec.id,
            epoch: spec.epoch,
            image,
            source: PeerIdBytes(mesh.me.to_bytes()),
            destination: PeerIdBytes(spec.to.to_bytes()),
            commit,
        },
    )
}

fn report_phase(phase: Phase) -> MigrationPhase {
    match phase {
        Phase::Warming => MigrationPhase::Warming,
        Phase::Final => MigrationPhase::Final,
        Phase::Committed => MigrationPhase::Committed,
    }
}

/// Sends the commit until the destination confirms, then records that
/// (a commit decided before a restart). Returns when the confirmation
/// arrived.
pub async fn send_commit(mesh: &Migrator, id: VesselId, to: PeerId, decision: Decision) -> Instant {
    let acked_at = drive_commit(mesh, id, to, &decision).await;
    mark_acked(mesh, id, decision.body.epoch);
    acked_at
}

/// The destination confirmed the move at `epoch`: the `Left` record says
/// so, and chunks no kept image names are evicted (bounded by the LRU of
/// departed vessels).
pub(super) fn mark_acked(mesh: &Migrator, id: VesselId, epoch: u64) {
    let mut h = lock(&mesh.host);
    if h.departed.len() >= MAX_DEPARTED_IMAGES_BEFORE_EVICT {
        // Never while a migration is arriving or a checkpoint is being
        // written: their chunks are not in a kept image yet.
        let busy = h
            .vessels
            .iter()
            .any(|(v, l)| *v != id && l.migrating || l.checkpoints.in_flight);
        if !busy && lock(&mesh.incoming).is_empty() {
            let n = h.evict();
            if n > 0 {
                info!("evicted {n} chunks that no kept image names");
            }
        }
    }
    let Some(l) = h.vessels.get_mut(&id) else {
        return;
    };
    if let Record::Left {
        epoch: e,
        image,
        to,
        ..
    } = l.record.clone()
    {
        if e == epoch {
            let record = Record::Left {
                epoch,
                image,
                to,
                acked: true,
            };
            l.record = record.clone();
            let _ = h.write_record(id, &record);
        }
    }
}

/// An aborted migration: the vessel runs on here, from the image of the
/// capture taken for it (its memory chunks are in the store already; no
/// step of the program is lost or repeated).
pub(super) fn resume_here(mesh: &Migrator, id: VesselId, image: VesselImage) -> Result<(), String> {
    let mut h = lock(&mesh.host);
    let l = h.vessels.get(&id).ok_or("vessel gone")?;
    let record = l.record.clone();
    let reason = l.reason.clone();
    // The image's manifest must be in the local store to resume from it.
    h.store
        .put_manifest_bytes(&image.manifest)
        .map_err(|e| e.to_string())?;
    let mut image = image;
    // Still the old epoch: nothing was committed.
    image.epoch = record.epoch();
    image.migrations = image.migrations.saturating_sub(1);
    h.vessels.remove(&id);
    h.start_from_image(image, record, reason, None)
        .map_err(|e| e.to_string())?;
    info!(vessel = %id, "migration aborted: the vessel runs on here");
    Ok(())
}

/// Runs a vessel again from the image its record names (as a restart of
/// the node would), when the instance it ran in is gone.
pub(super) fn restart_from_record(mesh: &Migrator, id: VesselId) -> Result<(), String> {
    let mut h = lock(&mesh.host);
    let l = h.vessels.get(&id).ok_or("vessel gone")?;
    let (record, reason) = (l.record.clone(), l.reason.clone());
    let bytes = h
        .store
        .get_image_doc(&record.image())
        .map_err(|e| e.to_string())?;
    let image: VesselImage = protocol::cbor::decode(&bytes).map_err(|e| e.to_string())?;
    h.vessels.remove(&id);
    h.start_from_image(image, record, reason, None)
        .map_err(|e| e.to_string())
}

/// Drives the migration layer's source machine past the commit point: the
/// commit is sent until the destination confirms (or tells that the vessel
/// ran under it and moved on: a stale-epoch refusal), and nothing resumes
/// the vessel here meanwhile. Returns when the confirmation came.
async fn drive_commit(mesh: &Migrator, id: VesselId, to: PeerId, decision: &Decision) -> Instant {
    let (mut machine, mut outputs) = Source::finish_commit();
    let mut acked_at = Instant::now();
    loop {
        let mut input = None;
        for output in outputs {
            match output {
                Output::SendCommit => {
                    let commit = MigrationRequest::Commit(decision.clone());
                    let answer = match mesh.link.migration(to, commit).await {
                        Ok(MigrationResponse::Committed) => Input::Committed,
                        Ok(other) => Input::Failed(ErrorKind::Local(format!("answered {other:?}"))),
                        Err(e) => Input::Failed(error_kind(e)),
                    };
                    if let Input::Failed(why) = &answer {
                        warn!(vessel = %id, %to, "commit not confirmed yet ({why:?})");
                    }
                    acked_at = Instant::now();
                    input = Some(answer);
                }
                Output::RetryAfter(wait) => {
                    tokio::time::sleep(wait).await;
                    input = Some(Input::RetryDue);
                }
                Output::Finished(_) => return acked_at,
                _ => {}
            }
        }
        let Some(input) = input else {
            return acked_at;
        };
        outputs = machine.handle(input);
    }
}
