//! The migration side's state, below the jobs that use it: [`Migrator`],
//! the handle a task holds to move vessels and answer moves (the vessels,
//! the link to peers, reports of migrations started here, migrations
//! arriving, the policy), [`MigrationState`], what the event loop keeps of
//! it (the nonce book besides), and the constants of the vessel protocol.
//!
//! The jobs that use it sit above it, one each: `migrate` (the source
//! side), `serve` (the destination side), `recover` (start-up recovery).
//! Control and placement start and read migrations only through
//! `migrate::start_migration` and [`Migrator::report`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::control::MigrationReport;
use protocol::membership::{Nonce, PublicKey};
use protocol::refusal::{Refusal, RefusalCode};
use protocol::snapshot::{Hash, Manifest};
use protocol::vessel::{VesselId, VesselImage};

use super::lease::{LeaseDriver, Leases};
use super::link::Link;
use super::replica_book::Replication;
use crate::migration::destination::Destination;
use crate::migration::nonce::NonceBook;
use crate::migration::source::MAX_WARM_ROUNDS;
use crate::sync::lock;
use crate::vessel::image::{Prebuilt, Ready};
use crate::vessel::Host;

/// One wait of a pre-copy round for its memory copy. A running vessel
/// answers at the end of its slice (milliseconds of work) and a waiting one
/// from inside its wait (`dock::wasi::wait`).
pub const WARM_COPY_WAIT: Duration = Duration::from_millis(200);

/// Waits of [`WARM_COPY_WAIT`] for one copy before the move goes to the
/// final round without it: pre-copy always runs unless no copy comes in
/// 2 s (a single slice that runs that long, or a wait that cannot hear
/// commands: the node's own stdin under `meshnode run`).
pub const MAX_COPY_WAITS: u32 = 10;

/// How long a destination waits for a module's chunks to prepare it early.
pub const PREWARM_WAIT: Duration = Duration::from_secs(30);

/// Batches of chunks in flight at once.
pub const CHUNK_BATCHES_IN_FLIGHT: usize = 4;

/// Eviction runs after a move out once the departed LRU holds this many
/// vessels (below it, a vessel's own older images are all there is to
/// evict, and they are evicted at the next move).
pub const MAX_DEPARTED_IMAGES_BEFORE_EVICT: usize = 1;

/// How this node moves vessels. The defaults are what a user wants; the
/// other settings exist to measure what pre-copy and deduplication buy
/// (docs/benchmarks.md).
#[derive(Debug, Clone, Copy)]
pub struct MigrationPolicy {
    /// Pre-copy rounds before the final stop (0: stop-and-copy).
    pub warm_rounds: u32,
    /// Send only the chunks the destination lacks (false: every chunk of
    /// each round, as if the destination had nothing).
    pub dedup: bool,
}

impl Default for MigrationPolicy {
    fn default() -> Self {
        MigrationPolicy {
            warm_rounds: MAX_WARM_ROUNDS,
            dedup: true,
        }
    }
}

/// Reports of the migrations started here, by vessel.
pub type Reports = Arc<Mutex<HashMap<VesselId, MigrationReport>>>;

/// Per vessel, the highest epoch a destination reported refusing one of
/// this node's offers as stale: the next move of it offers above that
/// (`migration::record::offer_epoch`). In memory: a restart forgets it, and
/// the first attempt after it is refused once more and learns it again.
pub type ReportedEpochs = Arc<Mutex<HashMap<VesselId, u64>>>;

/// The migrations this node is receiving, by vessel.
pub type IncomingMap = Arc<Mutex<Incoming>>;

/// What a task needs to move a vessel out, or answer a move in.
#[derive(Clone)]
pub struct Migrator {
    pub host: Arc<Mutex<Host>>,
    pub link: Link,
    pub me: PeerId,
    /// Signs offers and decisions.
    pub signing: ed25519_dalek::SigningKey,
    /// The user keys this node trusted when the task started (an offered
    /// vessel's deployer must be one).
    pub trusted: Vec<PublicKey>,
    pub migrations: Reports,
    pub incoming: IncomingMap,
    pub policy: MigrationPolicy,
    pub reported: ReportedEpochs,
    /// The leases of replicated vessels (issue 15).
    pub leases: Leases,
    /// Replicas: the checkpoints shipped from here, the copies held here.
    pub replication: Arc<Replication>,
}

impl Migrator {
    /// The lease driver's handle, on this migrator's link and key.
    pub fn lease_driver(&self) -> LeaseDriver {
        LeaseDriver {
            leases: self.leases.clone(),
            link: self.link.clone(),
            me: self.me,
            signing: self.signing.clone(),
            replication: self.replication.clone(),
        }
    }

    /// Updates the report of the migration of `id` started here.
    pub fn set_report(&self, id: VesselId, f: impl FnOnce(&mut MigrationReport)) {
        if let Some(r) = lock(&self.migrations).get_mut(&id) {
            f(r);
        }
    }

    /// The report of the last migration of `id` started here, if any.
    pub fn report(&self, id: VesselId) -> Option<MigrationReport> {
        lock(&self.migrations).get(&id).cloned()
    }

    /// This handle, with a link that gives up at the first transport error
    /// (for the requests sent while the vessel is paused).
    pub fn failing_fast(&self) -> Migrator {
        Migrator {
            link: self.link.failing_fast(),
            ..self.clone()
        }
    }
}

/// The migration side as the event loop keeps it.
pub struct MigrationState {
    /// Nonces issued to sources for their next offer (event loop only).
    nonces: NonceBook<PeerId>,
    pub migrations: Reports,
    pub incoming: IncomingMap,
    pub policy: MigrationPolicy,
    pub reported: ReportedEpochs,
    /// The leases of replicated vessels (issue 15): this node's voters.
    pub leases: Leases,
    pub replication: Arc<Replication>,
}

/// Every migration this node is receiving: the migration layer's
/// destination sessions, each with what this node keeps beside it.
pub type Incoming = Destination<PeerId, IncomingData>;

/// What the node keeps of one migration it is receiving, beside the
/// protocol's own fields (`migration::destination::Session`).
#[derive(Default)]
pub struct IncomingData {
    /// The final image, decoded and checked (final offers only).
    pub image: Option<VesselImage>,
    pub manifest: Option<Manifest>,
    /// The vessel re-created from the prepared image, not running: the
    /// commit starts it.
    pub ready: Option<Ready>,
    /// Chunks known to be in the store for this migration: everything an
    /// earlier offer of it named, once all that offer lacked had arrived.
    /// Nothing evicts them while the migration is open, so the final offer
    /// (in the pause) asks the store only about the rest.
    pub known: Arc<HashSet<Hash>>,
    /// Every chunk this offer names (known once `expected` is empty).
    pub named: Arc<HashSet<Hash>>,
    /// The vessel's memory as the last pre-copy round left it, written
    /// (from verified chunks) into a blank instance while the vessel still
    /// ran at the source, so the pause patches only what changed instead of
    /// re-reading it all and copying it into a new instance. Locked while a
    /// round's chunks are written into it, so `prepare` waits for that
    /// rather than starting over.
    pub memory: Arc<Mutex<Option<Prebuilt>>>,
    /// A leased vessel's handoff certificate (final offers), written
    /// beside the record when the image is prepared.
    pub lease: Option<protocol::lease::Certificate>,
}

impl MigrationState {
    pub fn new(policy: MigrationPolicy, leases: Leases) -> MigrationState {
        MigrationState {
            nonces: NonceBook::default(),
            migrations: Arc::new(Mutex::new(HashMap::new())),
            incoming: Arc::new(Mutex::new(Incoming::default())),
            policy,
            reported: Arc::new(Mutex::new(HashMap::new())),
            leases,
            replication: Arc::new(Replication::default()),
        }
    }

    /// A fresh nonce for `peer`'s next offer.
    pub(super) fn issue(&mut self, peer: PeerId) -> Nonce {
        let mut n = [0u8; 32];
        getrandom::fill(&mut n).expect("the OS random source works");
        self.nonces.issue(peer, Nonce(n), Instant::now())
    }

    /// Spends `nonce` for an offer from `peer`.
    pub(super) fn redeem(&mut self, nonce: &Nonce, peer: &PeerId) -> Result<(), Refusal> {
        self.nonces.redeem(nonce, peer, Instant::now())
    }
}

/// A refusal, with its code, as a one-line detail: `Err(refuse(code, …))`.
pub(super) fn refuse(code: RefusalCode, detail: impl Into<String>) -> Refusal {
    Refusal::new(code, detail)
}
