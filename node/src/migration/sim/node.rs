//! A simulated node: its disk (what is durable and what is not yet), the
//! vessels it runs, and its destination side, which answers requests
//! through the real [`Destination`], [`NonceBook`] and record rules.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use protocol::membership::Nonce;
use protocol::migrate::OfferKind;
use protocol::refusal::Refusal;
use protocol::snapshot::Hash;
use protocol::vessel::VesselId;

use super::source_run::{self, SourceRun};
use super::{Event, NodeId, World};
use crate::migration::bugs::{active, Bug};
use crate::migration::destination::{nothing_prepared, CommitPlan, Destination, Session};
use crate::migration::nonce::NonceBook;
use crate::migration::record::{
    check_may_migrate, may_checkpoint, prepared_matches, recovery_of, AbortRecord, Record, Recovery,
};

/// A request between nodes (signatures are not simulated: the simulated
/// network forges nothing).
#[derive(Debug, Clone)]
pub enum Request {
    Nonce,
    Offer {
        vessel: VesselId,
        epoch: u64,
        kind: OfferKind,
        image: Hash,
        nonce: Nonce,
    },
    Chunks {
        vessel: VesselId,
        epoch: u64,
        chunks: Vec<Hash>,
    },
    Prepare {
        vessel: VesselId,
        epoch: u64,
        image: Hash,
    },
    Commit {
        vessel: VesselId,
        epoch: u64,
        image: Hash,
    },
    Abort {
        vessel: VesselId,
        epoch: u64,
        image: Hash,
    },
}

#[derive(Debug, Clone)]
pub enum Response {
    Nonce(Nonce),
    Lacking {
        chunks: Vec<Hash>,
        next_nonce: Nonce,
    },
    Stored,
    Prepared,
    Committed,
    Aborted,
    Refused(Refusal),
}

#[derive(Debug, Clone)]
pub enum Msg {
    Request { id: u64, body: Request },
    Response { id: u64, body: Response },
}

/// A local step that takes time (and that a crash can cut short).
#[derive(Debug, Clone)]
pub enum LocalStep {
    /// A source's step finished: feed this input to its machine.
    Source {
        vessel: VesselId,
        run: u64,
        input: crate::migration::source::Input,
    },
    /// The source's commit record reaches the disk.
    WriteLeft { vessel: VesselId, run: u64 },
    /// A checkpoint's image reached the disk (taken while the vessel ran
    /// here under `epoch`).
    Checkpoint { vessel: VesselId, epoch: u64 },
    /// A destination's prepare: image and record written (and synced).
    Prepare {
        from: NodeId,
        vessel: VesselId,
        epoch: u64,
        image: Hash,
        request: u64,
    },
}

/// What a disk holds: durable, and written but not synced.
#[derive(Debug, Default, Clone)]
pub struct Disk {
    pub records: BTreeMap<VesselId, Record>,
    pub images: BTreeSet<Hash>,
    pub unsynced_images: BTreeSet<Hash>,
}

pub struct SimNode {
    pub id: NodeId,
    pub up: bool,
    /// Bumped at each crash: a step of an earlier life is void.
    pub incarnation: u64,
    pub disk: Disk,
    /// Vessels running here, with the epoch they run under.
    pub running: BTreeMap<VesselId, u64>,
    pub sources: BTreeMap<VesselId, SourceRun>,
    /// Requests in flight from this node's sources: request → vessel.
    pub pending: HashMap<u64, VesselId>,
    /// The highest epoch a destination reported refusing an offer of a
    /// vessel as stale: the next offer goes above it (in memory only, as
    /// in the node's driver).
    pub reported_epochs: BTreeMap<VesselId, u64>,
    pub dest: Destination<NodeId, ()>,
    pub nonces: NonceBook<NodeId>,
}

impl SimNode {
    pub fn new(id: NodeId) -> SimNode {
        SimNode {
            id,
            up: true,
            incarnation: 0,
            disk: Disk::default(),
            running: BTreeMap::new(),
            sources: BTreeMap::new(),
            pending: HashMap::new(),
            reported_epochs: BTreeMap::new(),
            dest: Destination::default(),
            nonces: NonceBook::default(),
        }
    }

    pub fn deploy(&mut self, vessel: VesselId, image: Hash) {
        self.disk.images.insert(image);
        self.disk
            .records
            .insert(vessel, Record::Owned { epoch: 1, image });
        self.running.insert(vessel, 1);
    }

    pub fn record(&self, vessel: VesselId) -> Option<&Record> {
        self.disk.records.get(&vessel)
    }

    pub fn has_image(&self, image: &Hash) -> bool {
        self.disk.images.contains(image) || self.disk.unsynced_images.contains(image)
    }
}

/// Writes a record durably (as `Host::write_record` does: atomic, fsynced).
pub fn write_record(w: &mut World, node: NodeId, vessel: VesselId, record: Record) {
    w.ghost.record_written(node, vessel, &record, w.now_ms);
    w.note(format!("n{node} {vessel} record {record:?}"));
    w.nodes[node as usize].disk.records.insert(vessel, record);
}

/// Starts a migration of `vessel` from `node` to `to`, if the rules allow.
pub fn ask_migrate(w: &mut World, node: NodeId, vessel: VesselId, to: NodeId, why: &str) {
    w.stats.asked += 1;
    let n = &w.nodes[node as usize];
    if !n.up {
        return;
    }
    let running = n.running.contains_key(&vessel);
    let migrating = n.sources.contains_key(&vessel);
    if let Err(r) = check_may_migrate(n.record(vessel), vessel, running, migrating) {
        w.ghost.refused(&r);
        w.stats.refused += 1;
        return;
    }
    w.note(format!("n{node} {vessel} migrate to n{to} ({why})"));
    source_run::start(w, node, vessel, to);
}

/// A request arrives at `node` from `from`.
pub fn serve(w: &mut World, node: NodeId, from: NodeId, id: u64, body: Request) {
    let answer = match body {
        Request::Nonce => Some(Response::Nonce(issue(w, node, from))),
        Request::Offer {
            vessel,
            epoch,
            kind,
            image,
            nonce,
        } => Some(offer(w, node, from, vessel, epoch, kind, image, nonce)),
        Request::Chunks {
            vessel,
            epoch,
            chunks,
        } => Some(chunks_in(w, node, from, vessel, epoch, chunks)),
        Request::Prepare {
            vessel,
            epoch,
            image,
        } => prepare(w, node, from, (vessel, epoch, image), id),
        Request::Commit {
            vessel,
            epoch,
            image,
        } => Some(commit(w, node, from, vessel, epoch, image)),
        Request::Abort {
            vessel,
            epoch,
            image,
        } => Some(abort(w, node, from, vessel, epoch, image)),
    };
    if let Some(body) = answer {
        respond(w, node, from, id, body);
    }
}

fn respond(w: &mut World, node: NodeId, to: NodeId, id: u64, body: Response) {
    if let Response::Refused(r) = &body {
        w.ghost.refused(r);
        w.stats.refused += 1;
        w.note(format!("n{node} refuses n{to}: {r}"));
    }
    w.send(node, to, Msg::Response { id, body });
}

fn issue(w: &mut World, node: NodeId, from: NodeId) -> Nonce {
    let mut n = [0u8; 32];
    n[..8].copy_from_slice(&w.rng.next_u64().to_le_bytes());
    let now = w.instant();
    w.nodes[node as usize].nonces.issue(from, Nonce(n), now)
}

#[allow(clippy::too_many_arguments)]
fn offer(
    w: &mut World,
    node: NodeId,
    from: NodeId,
    vessel: VesselId,
    epoch: u64,
    kind: OfferKind,
    image: Hash,
    nonce: Nonce,
) -> Response {
    let now = w.instant();
    let n = &mut w.nodes[node as usize];
    if let Err(r) = n.nonces.redeem(&nonce, &from, now) {
        return Response::Refused(r);
    }
    let known = n.disk.records.get(&vessel).cloned();
    if known.as_ref().is_some_and(|r| r.epoch() == epoch) {
        w.stats.equal_epoch_offers += 1;
        w.note(format!(
            "n{node} {vessel} offered at the epoch it records, {epoch}"
        ));
    }
    let n = &mut w.nodes[node as usize];
    if let Err(r) = n
        .dest
        .check_offer(&from, vessel, epoch, known.as_ref(), now)
    {
        return Response::Refused(r);
    }
    // What this node lacks of the image: one to three chunks, or none.
    let lacking: Vec<Hash> = (0..w.rng.below(4)).map(|_| w.fresh_hash()).collect();
    let session = Session {
        from,
        kind,
        epoch,
        image,
        expected: lacking.iter().copied().collect(),
        started: now,
        prepared: false,
        warm_chunks: 0,
        data: (),
    };
    w.nodes[node as usize].dest.accept(vessel, session);
    let next_nonce = issue(w, node, from);
    Response::Lacking {
        chunks: lacking,
        next_nonce,
    }
}

fn chunks_in(
    w: &mut World,
    node: NodeId,
    from: NodeId,
    vessel: VesselId,
    epoch: u64,
    chunks: Vec<Hash>,
) -> Response {
    let n = &mut w.nodes[node as usize];
    let stored = |h: &Hash| n.disk.unsynced_images.contains(h) || n.disk.images.contains(h);
    match n
        .dest
        .check_chunks(&from, vessel, epoch, chunks.iter().copied(), stored)
    {
        Ok(wanted) => {
            // Stored, not synced: prepare syncs them.
            n.disk.unsynced_images.extend(wanted.iter().copied());
            n.dest.stored(vessel, wanted);
            Response::Stored
        }
        Err(r) => Response::Refused(r),
    }
}

/// Checks at once; the writes and syncs take time, and the answer goes
/// out when they are done.
fn prepare(
    w: &mut World,
    node: NodeId,
    from: NodeId,
    (vessel, epoch, image): (VesselId, u64, Hash),
    request: u64,
) -> Option<Response> {
    if let Err(r) = w.nodes[node as usize]
        .dest
        .check_prepare(&from, vessel, epoch, image)
    {
        return Some(Response::Refused(r));
    }
    let delay = 1 + w.rng.below(20);
    let incarnation = w.nodes[node as usize].incarnation;
    let step = LocalStep::Prepare {
        from,
        vessel,
        epoch,
        image,
        request,
    };
    w.at(
        delay,
        Event::Local {
            node,
            incarnation,
            step,
        },
    );
    None
}

fn prepare_done(
    w: &mut World,
    node: NodeId,
    from: NodeId,
    (vessel, epoch, image): (VesselId, u64, Hash),
    request: u64,
) {
    let image = match w.nodes[node as usize]
        .dest
        .check_prepare(&from, vessel, epoch, image)
    {
        Ok(s) => s.image,
        Err(r) => return respond(w, node, from, request, Response::Refused(r)),
    };
    let n = &mut w.nodes[node as usize];
    if active(Bug::SkipSyncBeforePrepared) {
        n.disk.unsynced_images.insert(image);
    } else {
        // The image and every chunk it names, durable before the record.
        n.disk.images.insert(image);
        let synced = std::mem::take(&mut n.disk.unsynced_images);
        n.disk.images.extend(synced);
    }
    let known = w.nodes[node as usize].record(vessel).cloned();
    let prepared = Record::prepared(epoch, image, vec![from], known.as_ref());
    write_record(w, node, vessel, prepared);
    if let Some(s) = w.nodes[node as usize]
        .dest
        .session_mut(vessel, &from, epoch)
    {
        s.prepared = true;
    }
    respond(w, node, from, request, Response::Prepared);
}

fn commit(
    w: &mut World,
    node: NodeId,
    from: NodeId,
    vessel: VesselId,
    epoch: u64,
    image: Hash,
) -> Response {
    let n = &mut w.nodes[node as usize];
    let known = n.disk.records.get(&vessel).cloned();
    match n.dest.commit(&from, vessel, epoch, image, known.as_ref()) {
        CommitPlan::AlreadyDone => return Response::Committed,
        CommitPlan::Refuse(r) => return Response::Refused(r),
        CommitPlan::FromSession(_) => {}
        CommitPlan::FromDisk => {
            if !prepared_matches(known.as_ref(), epoch, image) || !n.disk.images.contains(&image) {
                return Response::Refused(nothing_prepared(vessel, epoch));
            }
        }
    }
    if !w.nodes[node as usize].has_image(&image) {
        return Response::Refused(nothing_prepared(vessel, epoch));
    }
    write_record(w, node, vessel, Record::Owned { epoch, image });
    start_running(w, node, vessel, epoch);
    Response::Committed
}

fn abort(
    w: &mut World,
    node: NodeId,
    from: NodeId,
    vessel: VesselId,
    epoch: u64,
    image: Hash,
) -> Response {
    let n = &mut w.nodes[node as usize];
    let known = n.disk.records.get(&vessel).cloned();
    let plan = n.dest.abort(&from, vessel, epoch, image, known.as_ref());
    match plan.record {
        AbortRecord::Keep => {}
        AbortRecord::Restore(before) => {
            w.note(format!(
                "n{node} {vessel} prepared record undone by an abort"
            ));
            write_record(w, node, vessel, before);
        }
        AbortRecord::Remove => {
            w.note(format!(
                "n{node} {vessel} prepared record removed by an abort"
            ));
            w.nodes[node as usize].disk.records.remove(&vessel);
        }
    }
    Response::Aborted
}

/// Every node's periodic checkpoint: each vessel it runs and is not moving
/// is captured now; its image reaches the disk after a while (a slow SD
/// card now and then takes longer than a whole move).
pub fn checkpoint_tick(w: &mut World) {
    for node in 0..w.nodes.len() {
        let n = &w.nodes[node];
        if !n.up {
            continue;
        }
        let due: Vec<(VesselId, u64)> = n
            .running
            .iter()
            .filter(|(v, _)| !n.sources.contains_key(v))
            .map(|(v, e)| (*v, *e))
            .collect();
        let incarnation = n.incarnation;
        for (vessel, epoch) in due {
            let delay = match w.checkpoint_rng.below(8) {
                0 => 50 + w.checkpoint_rng.below(400),
                _ => 1 + w.checkpoint_rng.below(20),
            };
            let step = LocalStep::Checkpoint { vessel, epoch };
            w.at(
                delay,
                Event::Local {
                    node: node as NodeId,
                    incarnation,
                    step,
                },
            );
        }
    }
}

/// A checkpoint's image is durable: it becomes the vessel's record if the
/// rule allows (`record::may_checkpoint`), else it is dropped.
fn checkpoint_written(w: &mut World, node: NodeId, vessel: VesselId, epoch: u64) {
    let mut image = [0u8; 32];
    for c in image.chunks_mut(8) {
        c.copy_from_slice(&w.checkpoint_rng.next_u64().to_le_bytes());
    }
    let image = Hash(image);
    let n = &mut w.nodes[node as usize];
    n.disk.images.insert(image);
    let migrating = n.sources.contains_key(&vessel);
    if !may_checkpoint(n.record(vessel), epoch, migrating) {
        w.note(format!(
            "n{node} {vessel} checkpoint at epoch {epoch} dropped"
        ));
        return;
    }
    w.stats.checkpoints += 1;
    write_record(w, node, vessel, Record::Owned { epoch, image });
}

/// The vessel runs here from now on.
pub fn start_running(w: &mut World, node: NodeId, vessel: VesselId, epoch: u64) {
    w.note(format!("n{node} {vessel} runs at epoch {epoch}"));
    w.ghost.started(node, vessel, epoch);
    w.nodes[node as usize].running.insert(vessel, epoch);
}

pub fn stop_running(w: &mut World, node: NodeId, vessel: VesselId) {
    if w.nodes[node as usize].running.remove(&vessel).is_some() {
        w.note(format!("n{node} {vessel} stops (paused or gone)"));
    }
}

pub fn local_done(w: &mut World, node: NodeId, step: LocalStep) {
    match step {
        LocalStep::Source { vessel, run, input } => source_run::feed(w, node, vessel, run, input),
        LocalStep::WriteLeft { vessel, run } => source_run::left_written(w, node, vessel, run),
        LocalStep::Checkpoint { vessel, epoch } => checkpoint_written(w, node, vessel, epoch),
        LocalStep::Prepare {
            from,
            vessel,
            epoch,
            image,
            request,
        } => prepare_done(w, node, from, (vessel, epoch, image), request),
    }
}

/// Power lost: everything not durable is gone.
pub fn crash(w: &mut World, node: NodeId) {
    w.stats.crashes += 1;
    w.note(format!("n{node} crashes"));
    let n = &mut w.nodes[node as usize];
    n.up = false;
    n.incarnation += 1;
    n.running.clear();
    n.sources.clear();
    n.pending.clear();
    n.reported_epochs.clear();
    n.dest = Destination::default();
    n.nonces = NonceBook::default();
    n.disk.unsynced_images.clear();
}

/// Back up: each record decides what runs (the real recovery rule).
pub fn restart(w: &mut World, node: NodeId) {
    w.note(format!("n{node} restarts"));
    w.nodes[node as usize].up = true;
    let records: Vec<(VesselId, Record)> = w.nodes[node as usize]
        .disk
        .records
        .iter()
        .map(|(v, r)| (*v, r.clone()))
        .collect();
    for (vessel, record) in records {
        match recovery_of(&record) {
            Recovery::Resume if w.nodes[node as usize].disk.images.contains(&record.image()) => {
                start_running(w, node, vessel, record.epoch())
            }
            Recovery::Resume => {
                w.note(format!("n{node} {vessel} cannot resume: its image is gone"))
            }
            Recovery::FinishCommit { to } => {
                source_run::finish_commit(w, node, vessel, &record, to[0])
            }
            Recovery::Remember | Recovery::AwaitCommit => {}
        }
    }
}
