//! What a node keeps of replication (issue 15, item 1), below the jobs
//! that use it (`replicate`: the host side, shipping checkpoints;
//! `replica_serve`: the replica side, keeping them). A leaf of `mesh/`: it
//! names no other module of it.
//!
//! As a **host**: per replicated vessel that runs here, the replicas
//! placement chose, what each holds, and the newest durable checkpoint
//! waiting to be shipped (one per vessel: a newer one replaces it, so a
//! slow or dead replica never makes checkpoints wait or queue up).
//!
//! As a **replica**: the copy held of each vessel another node runs (its
//! record, on disk in `vessels/ID/replica.cbor`) and the transfers arriving.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::control::ReplicaInfo;
use protocol::membership::Nonce;
use protocol::replica::ReplicaRecord;
use protocol::snapshot::Hash;
use protocol::vessel::VesselId;

use crate::placement::{NodeRoom, PlacementParams, Rtts};
use crate::sync::lock;

/// A replica whose shipments have failed for this long (unreachable, or
/// refusing) is replaced by another node: long enough to ride out a
/// restart of it, short against the interval a failover could lose.
pub const REPLACE_FAILING_AFTER: Duration = Duration::from_secs(10);

/// What placement last saw of the mesh (published by its tick): the
/// members, the connected ones with a fresh status (and their room), and
/// their RTTs.
#[derive(Debug, Clone)]
pub struct MeshView {
    /// Every peer this node knows as a member, connected or not: a replica
    /// that is no longer one is replaced at once.
    pub members: Vec<PeerId>,
    pub rtts: Rtts,
    pub rooms: Vec<NodeRoom>,
    pub here_load_per_cpu: Option<f64>,
    pub params: PlacementParams,
}

/// A durable checkpoint waiting to be shipped.
#[derive(Debug, Clone, Copy)]
pub struct Queued {
    pub image: Hash,
    pub epoch: u64,
    /// When its pause was (its age is what a failover would lose).
    pub taken_at: Instant,
    pub wanted: u32,
    /// A `--durability sync` vessel: once every replica holds it, its
    /// output is released up to it (`mesh::output_commit`).
    pub sync: bool,
}

/// One replica of a vessel, as its host keeps it.
#[derive(Debug, Clone)]
pub struct Slot {
    pub peer: PeerId,
    /// The checkpoint it holds (as it answered `Held`) and when that was
    /// taken.
    pub holds: Option<(Hash, Instant)>,
    /// Its nonce for the next offer (from its last answer).
    pub nonce: Option<Nonce>,
    /// Since when its shipments fail, and why the last one did.
    pub failing_since: Option<Instant>,
    pub problem: Option<String>,
}

impl Slot {
    pub fn new(peer: PeerId) -> Slot {
        Slot {
            peer,
            holds: None,
            nonce: None,
            failing_since: None,
            problem: None,
        }
    }

    /// Failing for long enough to be replaced.
    pub fn gone(&self, now: Instant) -> bool {
        self.failing_since
            .is_some_and(|t| now.duration_since(t) >= REPLACE_FAILING_AFTER)
    }
}

/// One replicated vessel that runs here.
#[derive(Debug, Default, Clone)]
pub struct Shipping {
    pub wanted: u32,
    /// The epoch of the last checkpoint shipped.
    pub epoch: u64,
    pub replicas: Vec<Slot>,
    /// Why it has fewer replicas than it asks for.
    pub shortfall: Option<String>,
    /// Bytes and chunks sent to replicas (chunk batches, not offers).
    pub bytes_sent: u64,
    pub chunks_sent: u64,
    /// A shipment of it is under way.
    pub in_flight: bool,
}

/// A transfer arriving here: an accepted offer whose chunks come.
pub struct Transfer {
    pub from: PeerId,
    pub epoch: u64,
    pub image: Hash,
    pub lacking: HashSet<Hash>,
    pub started: Instant,
}

/// Replication on this node, shared by the event loop and the tasks.
#[derive(Default)]
pub struct Replication {
    book: Mutex<Book>,
    /// Rung when a checkpoint is queued or a shipment ends.
    pub wake: tokio::sync::Notify,
}

/// The state behind [`Replication`]'s lock.
#[derive(Default)]
pub struct Book {
    pub view: Option<MeshView>,
    pub queue: BTreeMap<VesselId, Queued>,
    pub shipping: HashMap<VesselId, Shipping>,
    /// The copies held here of vessels other nodes run.
    pub held: HashMap<VesselId, ReplicaRecord>,
    pub transfers: HashMap<VesselId, Transfer>,
    /// Sync vessels whose newest copy is being made durable after it was
    /// acknowledged from memory (one flush per vessel at a time).
    pub flushing: HashSet<VesselId>,
    /// Per vessel, the image its replica record on disk names.
    pub durable: HashMap<VesselId, Hash>,
}

impl Replication {
    pub fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        lock(&self.book)
    }

    /// Placement's latest view of the mesh.
    pub fn set_view(&self, view: MeshView) {
        self.book().view = Some(view);
    }

    /// Queues the newest durable checkpoint of `id` for its replicas: it
    /// replaces one still waiting (newest wins), and returns at once.
    pub fn enqueue(&self, id: VesselId, queued: Queued) {
        let mut b = self.book();
        if queued.wanted == 0 {
            b.queue.remove(&id);
            b.shipping.remove(&id);
            return;
        }
        b.queue.insert(id, queued);
        drop(b);
        self.wake.notify_one();
    }

    /// Forgets the host side of vessels that no longer run here; returns
    /// what it kept of them.
    pub fn retain_shipping(&self, here: impl Fn(&VesselId) -> bool) -> Vec<(VesselId, Shipping)> {
        let mut b = self.book();
        b.queue.retain(|id, _| here(id));
        let gone: Vec<VesselId> = b.shipping.keys().filter(|id| !here(id)).copied().collect();
        gone.into_iter()
            .filter_map(|id| b.shipping.remove(&id).map(|s| (id, s)))
            .collect()
    }

    /// What `ps` shows of a vessel that runs here: (wanted, replicas,
    /// age of the newest checkpoint every replica holds, shortfall,
    /// bytes sent, chunks sent), if it is replicated.
    pub fn row(&self, id: VesselId, now: Instant) -> Option<ReplicationRow> {
        let b = self.book();
        let s = b.shipping.get(&id)?;
        let replicas: Vec<ReplicaInfo> = s
            .replicas
            .iter()
            .map(|r| ReplicaInfo {
                node: r.peer.to_string(),
                image: r.holds.map(|(h, _)| h.to_string()),
                age_ms: r
                    .holds
                    .map(|(_, at)| now.duration_since(at).as_millis() as u64),
                problem: r.problem.clone(),
            })
            .collect();
        // The oldest of what each holds: a failover to any of them loses
        // at most that.
        let oldest = s.replicas.iter().map(|r| r.holds.map(|(_, at)| at)).min();
        let age_ms = oldest
            .flatten()
            .map(|at| now.duration_since(at).as_millis() as u64);
        Some(ReplicationRow {
            wanted: s.wanted,
            replicas,
            age_ms,
            shortfall: s.shortfall.clone(),
            bytes_sent: s.bytes_sent,
            chunks_sent: s.chunks_sent,
        })
    }
}

/// A vessel's replication as `ps` shows it.
pub struct ReplicationRow {
    pub wanted: u32,
    pub replicas: Vec<ReplicaInfo>,
    pub age_ms: Option<u64>,
    pub shortfall: Option<String>,
    pub bytes_sent: u64,
    pub chunks_sent: u64,
}

/// The store's holder name of the copy a replica keeps of `id`.
pub fn held_key(id: VesselId) -> String {
    format!("replica/{id}")
}

/// The store's holder name of an image arriving for `id` (its chunks are
/// kept from the offer on, so those found present stay present).
pub fn arriving_key(id: VesselId) -> String {
    format!("replica-arriving/{id}")
}

/// The store's holder name of the copy of `id` the replica record on disk
/// names, while a newer one acknowledged from memory is not durable yet:
/// a power cut then finds every chunk the record names.
pub fn durable_key(id: VesselId) -> String {
    format!("replica-durable/{id}")
}

/// The store's holder name of a checkpoint being shipped from here.
pub fn shipping_key(id: VesselId) -> String {
    format!("replica-shipping/{id}")
}
