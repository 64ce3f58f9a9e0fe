//! A vessel as the mesh knows it: who deployed it ([`Deployment`], signed by
//! a user key), and everything that travels when it moves ([`VesselImage`]:
//! the snapshot, its volumes' files and its log), named by the BLAKE3 hash of
//! its CBOR encoding, like a snapshot manifest.
//!
//! Files and logs are cut into chunks exactly like memory
//! ([`ChunkedImage`]), so a node that already holds a chunk (from an earlier
//! visit, another vessel or the same module) never receives it again.

use serde::{Deserialize, Serialize};

use crate::limits::{
    MAX_DEPLOY_ARGS, MAX_LOG_BYTES, MAX_MOUNTS, MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_VOLUMES,
    MAX_VOLUME_BYTES, MAX_VOLUME_ENTRIES,
};
use crate::membership::{sign, verify, Domain, PublicKey, Signature, SignatureError};
use crate::snapshot::{ChunkedImage, Hash, CHUNK_SIZE_BYTES};

/// Version of the deployment and vessel-image formats.
pub const VESSEL_VERSION: u32 = 1;

pub use crate::ids::VesselId;

/// One file or directory of a volume, relative to the volume's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeEntry {
    Dir { path: String },
    File { path: String, content: ChunkedImage },
    Symlink { path: String, target: String },
}

impl VolumeEntry {
    pub fn path(&self) -> &str {
        match self {
            VolumeEntry::Dir { path }
            | VolumeEntry::File { path, .. }
            | VolumeEntry::Symlink { path, .. } => path,
        }
    }
}

/// A volume's files at one instant. Volumes belong to the vessel: they
/// travel with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeImage {
    /// The guest path the vessel sees it at (a preopened directory).
    pub guest: String,
    pub entries: Vec<VolumeEntry>,
}

/// What a user asks the mesh to run, signed by the user's key. It travels
/// with the vessel, so every node that ever hosts it can check who deployed
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentBody {
    pub version: u32,
    pub vessel: VesselId,
    pub name: String,
    /// BLAKE3 of the original module.
    pub module_hash: Hash,
    pub args: Vec<String>,
    pub env: Vec<String>,
    /// The initial volumes (their files' hashes are inside).
    pub volumes: Vec<VolumeImage>,
    /// Node-local directories: (guest path, name that each node maps in its
    /// config).
    pub mounts: Vec<(String, String)>,
    /// Service ports (`meshnode deploy --port`): the vessel gets a listening
    /// socket for each, as descriptors 3, 4, ... in this order, and every
    /// node accepts its clients on them.
    #[serde(default)]
    pub ports: Vec<u16>,
    /// How often the node that runs it takes a durable checkpoint, in
    /// milliseconds (`deploy --checkpoint-every`): `None` is the node's own
    /// default (config.toml `checkpoint_every_ms`), `Some(0)` never. Left
    /// out of the encoding when `None`, so a deployment signed before the
    /// field existed still verifies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_every_ms: Option<u64>,
    /// How many other member nodes keep its newest checkpoint
    /// (`deploy --replicas`): `None` is `replica::DEFAULT_REPLICAS`,
    /// `Some(0)` none. Left out of the encoding when `None`, as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// When its output may leave the host (`deploy --durability`): `None`
    /// is async (output at once; a failover loses up to one checkpoint
    /// interval and resets its clients), `Some(Sync)` releases client bytes
    /// and log lines only once every replica holds a checkpoint that
    /// produced them (docs/protocol.md, "Output commit"). Left out of the
    /// encoding when `None`, as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durability: Option<Durability>,
    /// The most memory the vessel may hold, in bytes (`deploy
    /// --max-memory`): a growth past it traps the vessel, saying so. The
    /// node's own limit (`vessel_max_memory_bytes`) holds too, whichever is
    /// lower. Left out of the encoding when `None`, as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_bytes: Option<u64>,
    /// Whether its host runs it again when it ends (`deploy --restart`):
    /// `None` never. A restart runs the module afresh from this deployment,
    /// with its volumes as they are. Left out of the encoding when `None`,
    /// as above.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<RestartPolicy>,
}

/// When a vessel's host runs it again after it ended (`deploy --restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    /// After a trap or a non-zero exit code.
    OnFailure,
    /// After any end but `meshnode stop`.
    Always,
}

impl RestartPolicy {
    /// As `deploy --restart` and `ps` write it.
    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Always => "always",
        }
    }

    /// Whether a vessel that ended with `code` (None: a trap or failure)
    /// runs again under this policy. A user's stop never restarts it.
    pub fn restarts(self, code: Option<i32>) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => code != Some(0),
        }
    }
}

/// The least `deploy --max-memory` may be: one WebAssembly page.
pub const MIN_VESSEL_MEMORY_BYTES: u64 = 64 * 1024;

/// How often a `--durability sync` vessel is checkpointed and shipped to
/// its replicas unless its deployment says: its output waits for the next
/// checkpoint, so a reply waits about half of this on average, plus the
/// shipment (Remus used 25 ms epochs on a LAN; the write-tracking
/// checkpoint of a 16 MiB vessel pauses it about 0.3 ms, so 50 ms spends
/// about 1% of it in pauses).
pub const DEFAULT_SYNC_INTERVAL_MS: u64 = 50;

/// The shortest sync interval: below this a checkpoint's own work
/// (hashing, writing, shipping) would no longer fit between two of them
/// on a small board.
pub const MIN_SYNC_INTERVAL_MS: u64 = 10;

/// The longest sync interval: replies would wait longer than many clients
/// keep a request open for, and entries hold the client's bytes as long.
pub const MAX_SYNC_INTERVAL_MS: u64 = 5_000;

/// A vessel's durability mode beyond the default (async), as deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Durability {
    /// Output commit: a checkpoint every `interval_ms`, shipped to every
    /// replica; output is released once all of them acknowledged it.
    Sync { interval_ms: u64 },
}

impl DeploymentBody {
    /// The sync interval, if the deployment asks for sync durability.
    pub fn sync_interval_ms(&self) -> Option<u64> {
        self.durability
            .map(|Durability::Sync { interval_ms }| interval_ms)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployment {
    pub body: DeploymentBody,
    pub user_key: PublicKey,
    pub signature: Signature,
}

/// Why a deployment or an image is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VesselError {
    #[error("its open connections: {0}")]
    Hub(String),
    #[error("service ports: {0}")]
    Ports(String),
    #[error("format version {found}, this build reads version {expected}")]
    Version { found: u32, expected: u32 },
    #[error("forged deployment: {0}")]
    Signature(SignatureError),
    #[error("{what} has {found}, over the limit of {limit}")]
    TooMany {
        what: &'static str,
        found: u64,
        limit: u64,
    },
    #[error("bad path `{path}` in volume {guest}: {reason}")]
    BadPath {
        guest: String,
        path: String,
        reason: &'static str,
    },
    #[error("{what}: image of {size_bytes} bytes does not match its {chunks} chunks")]
    ImageShape {
        what: &'static str,
        size_bytes: u64,
        chunks: usize,
    },
    #[error("the image names vessel {found}, its deployment names {expected}")]
    WrongVessel { found: VesselId, expected: VesselId },
    #[error("durability: {0}")]
    Durability(String),
}

impl VesselError {
    /// The refusal code a node answers this error with.
    pub fn code(&self) -> crate::refusal::RefusalCode {
        use crate::refusal::RefusalCode;
        match self {
            VesselError::Version { .. } => RefusalCode::Version,
            VesselError::Signature(_) => RefusalCode::Forged,
            VesselError::TooMany { .. } => RefusalCode::Limit,
            _ => RefusalCode::Invalid,
        }
    }
}

fn too_many(what: &'static str, found: usize, limit: usize) -> Result<(), VesselError> {
    if found > limit {
        return Err(VesselError::TooMany {
            what,
            found: found as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

fn check_image(what: &'static str, img: &ChunkedImage) -> Result<(), VesselError> {
    if ChunkedImage::chunk_count(img.size_bytes) != img.chunks.len() as u64 {
        return Err(VesselError::ImageShape {
            what,
            size_bytes: img.size_bytes,
            chunks: img.chunks.len(),
        });
    }
    Ok(())
}

/// What a pre-copy (warm) offer carries: the images of the vessel's memory
/// and of its module, in that order, so that the destination can fetch
/// their chunks while the vessel still runs at the source.
pub const WARM_IMAGES: usize = 2;

/// Checks a pre-copy offer's images as a final offer's are checked: at
/// most two, each with as many chunks as its size has, neither larger
/// than a memory or a module may be. Chunk names are not looked at here;
/// the destination counts the ones it lacks against its pre-copy budgets.
pub fn check_warm_images(images: &[ChunkedImage]) -> Result<(), VesselError> {
    // A memory and a module image; fewer is a round that names less
    // (nothing is lost by it), more would be counted nowhere.
    too_many(
        "a pre-copy offer's images (a memory and a module)",
        images.len(),
        WARM_IMAGES,
    )?;
    let limits = [
        ("a pre-copy memory image", crate::limits::MAX_MEMORY_BYTES),
        ("a pre-copy module image", crate::limits::MAX_MODULE_BYTES),
    ];
    for (img, (what, limit)) in images.iter().zip(limits) {
        if img.size_bytes > limit {
            return Err(VesselError::TooMany {
                what,
                found: img.size_bytes,
                limit,
            });
        }
        check_image(what, img)?;
    }
    Ok(())
}

/// A relative path inside a volume: no `..`, no absolute path, no empty or
/// `.` components, no NUL. The node re-creates files from these, so this is
/// the line between a hostile image and the host's filesystem.
pub fn check_volume_path(guest: &str, path: &str) -> Result<(), VesselError> {
    let bad = |reason| {
        Err(VesselError::BadPath {
            guest: guest.to_string(),
            path: path.chars().take(200).collect(),
            reason,
        })
    };
    if path.is_empty() || path.len() > MAX_PATH_BYTES {
        return bad("empty or too long");
    }
    if path.contains('\0') {
        return bad("contains NUL");
    }
    if path.starts_with('/') {
        return bad("absolute");
    }
    for c in path.split('/') {
        if c.is_empty() || c == "." || c == ".." {
            return bad("empty, `.` or `..` component");
        }
    }
    Ok(())
}

impl VolumeImage {
    pub fn check(&self) -> Result<(), VesselError> {
        too_many("a guest path", self.guest.len(), MAX_PATH_BYTES)?;
        too_many("volume entries", self.entries.len(), MAX_VOLUME_ENTRIES)?;
        let mut total = 0u64;
        for e in &self.entries {
            check_volume_path(&self.guest, e.path())?;
            match e {
                VolumeEntry::File { content, .. } => {
                    check_image("a volume file", content)?;
                    total = total.saturating_add(content.size_bytes);
                }
                VolumeEntry::Symlink { target, .. } => {
                    too_many("a symlink target", target.len(), MAX_PATH_BYTES)?
                }
                VolumeEntry::Dir { .. } => {}
            }
        }
        if total > MAX_VOLUME_BYTES {
            return Err(VesselError::TooMany {
                what: "a volume's bytes",
                found: total,
                limit: MAX_VOLUME_BYTES,
            });
        }
        Ok(())
    }

    /// Every chunk the volume's files name.
    pub fn chunks(&self) -> impl Iterator<Item = Hash> + '_ {
        self.entries.iter().flat_map(|e| match e {
            VolumeEntry::File { content, .. } => content.chunks.iter().flatten().copied().collect(),
            _ => Vec::new(),
        })
    }
}

impl DeploymentBody {
    pub fn check(&self) -> Result<(), VesselError> {
        if self.version != VESSEL_VERSION {
            return Err(VesselError::Version {
                found: self.version,
                expected: VESSEL_VERSION,
            });
        }
        too_many("a name", self.name.len(), MAX_NAME_BYTES)?;
        too_many(
            "args and env",
            self.args.len() + self.env.len(),
            MAX_DEPLOY_ARGS,
        )?;
        too_many("volumes", self.volumes.len(), MAX_VOLUMES)?;
        too_many("mounts", self.mounts.len(), MAX_MOUNTS)?;
        for v in &self.volumes {
            v.check()?;
        }
        for (guest, name) in &self.mounts {
            too_many("a mount's guest path", guest.len(), MAX_PATH_BYTES)?;
            too_many("a mount's name", name.len(), MAX_NAME_BYTES)?;
        }
        too_many(
            "service ports",
            self.ports.len(),
            crate::limits::MAX_SERVICE_PORTS,
        )?;
        too_many(
            "replicas",
            self.replicas.unwrap_or(0) as usize,
            crate::limits::MAX_REPLICAS as usize,
        )?;
        self.check_durability()?;
        if let Some(m) = self.max_memory_bytes {
            if !(MIN_VESSEL_MEMORY_BYTES..=crate::limits::MAX_MEMORY_BYTES).contains(&m) {
                return Err(VesselError::TooMany {
                    what: "--max-memory (bytes; at least 65536)",
                    found: m,
                    limit: crate::limits::MAX_MEMORY_BYTES,
                });
            }
        }
        let mut ports = self.ports.clone();
        ports.sort_unstable();
        ports.dedup();
        if ports.len() != self.ports.len() || ports.contains(&0) {
            return Err(VesselError::Ports(
                "each service port must be given once, and not be 0".into(),
            ));
        }
        Ok(())
    }
}

impl DeploymentBody {
    /// Sync durability needs a replica to acknowledge (with none, output
    /// would wait for ever) and an interval within the limits.
    fn check_durability(&self) -> Result<(), VesselError> {
        let Some(interval_ms) = self.sync_interval_ms() else {
            return Ok(());
        };
        // `None` is the default of one replica (`replica::DEFAULT_REPLICAS`).
        if self.replicas == Some(0) {
            return Err(VesselError::Durability(
                "--durability sync needs at least one replica to acknowledge its \
                 checkpoints, and --replicas is 0"
                    .into(),
            ));
        }
        if !(MIN_SYNC_INTERVAL_MS..=MAX_SYNC_INTERVAL_MS).contains(&interval_ms) {
            return Err(VesselError::Durability(format!(
                "a sync interval of {interval_ms} ms is outside \
                 {MIN_SYNC_INTERVAL_MS}..={MAX_SYNC_INTERVAL_MS} ms"
            )));
        }
        Ok(())
    }
}

impl Deployment {
    pub fn sign(user: &ed25519_dalek::SigningKey, body: DeploymentBody) -> Deployment {
        let signature = sign(user, Domain::Deployment, &body);
        Deployment {
            body,
            user_key: PublicKey::of(user),
            signature,
        }
    }

    /// Checks the form and the user's signature. Whether the user key is
    /// trusted is the node's to check.
    pub fn verify(&self) -> Result<(), VesselError> {
        self.body.check()?;
        verify(
            &self.user_key,
            Domain::Deployment,
            &self.body,
            &self.signature,
        )
        .map_err(VesselError::Signature)
    }
}

/// A vessel's log: what it wrote to stdout and stderr, in order, as framed
/// records. `start_offset` is the absolute offset of `bytes[0]` since the
/// vessel was deployed; a reader asks from an absolute offset, so it sees
/// every byte once even when the vessel moves between two reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogImage {
    pub start_offset: u64,
    pub content: ChunkedImage,
}

/// Where a vessel's life is: running from the start, or from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resume {
    /// Start the module fresh (it has not run anywhere yet, or it was not
    /// captured before its node restarted).
    Fresh,
    /// Resume this snapshot (a manifest in the chunk store).
    Snapshot(Hash),
}

/// Everything that travels when a vessel moves, at one instant. Named by the
/// hash of its CBOR encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VesselImage {
    pub version: u32,
    pub deployment: Deployment,
    /// Only ever increases; the node that owns the vessel under the highest
    /// epoch is the one that may run it.
    pub epoch: u64,
    pub resume: Resume,
    /// The original module, chunked (a fresh start needs it; a snapshot's
    /// manifest names the same chunks).
    pub module: ChunkedImage,
    /// The snapshot manifest's encoding, when `resume` names one (it travels
    /// inside the image so the receiver needs one round trip less).
    #[serde(with = "crate::ids::serde_bytes_vec")]
    pub manifest: Vec<u8>,
    pub volumes: Vec<VolumeImage>,
    pub log: LogImage,
    pub migrations: u32,
    /// Run time so far, milliseconds (for `ps`).
    pub run_ms: u64,
    /// The host's side of the vessel's open client connections at the
    /// capture (a service vessel's; empty otherwise).
    #[serde(default)]
    pub hub: crate::ingress::HubImage,
    /// What placement keeps about the vessel (absent from images older than
    /// placement).
    #[serde(default)]
    pub placement: VesselPlacement,
}

/// Placement facts that travel with a vessel, so that they hold wherever it
/// runs and after its node restarts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VesselPlacement {
    /// Never moved automatically (`meshnode pin`).
    pub pinned: bool,
    /// Why it last moved ("migrated by hand", "drained from …", "nearer its
    /// clients: …"); empty before its first move.
    pub last_move: String,
}

impl VesselImage {
    pub fn check(&self) -> Result<(), VesselError> {
        if self.version != VESSEL_VERSION {
            return Err(VesselError::Version {
                found: self.version,
                expected: VESSEL_VERSION,
            });
        }
        self.deployment.body.check()?;
        too_many("volumes", self.volumes.len(), MAX_VOLUMES)?;
        for v in &self.volumes {
            v.check()?;
        }
        check_image("the log", &self.log.content)?;
        self.hub
            .check()
            .map_err(|e| VesselError::Hub(e.to_string()))?;
        check_image("the module", &self.module)?;
        too_many(
            "a placement note's bytes",
            self.placement.last_move.len(),
            crate::limits::MAX_PLACEMENT_NOTE_BYTES,
        )?;
        if self.module.size_bytes > crate::limits::MAX_DEPLOY_MODULE_BYTES as u64 {
            return Err(VesselError::TooMany {
                what: "the module's bytes",
                found: self.module.size_bytes,
                limit: crate::limits::MAX_DEPLOY_MODULE_BYTES as u64,
            });
        }
        if self.log.content.size_bytes > MAX_LOG_BYTES {
            return Err(VesselError::TooMany {
                what: "the log's bytes",
                found: self.log.content.size_bytes,
                limit: MAX_LOG_BYTES,
            });
        }
        Ok(())
    }

    pub fn vessel(&self) -> VesselId {
        self.deployment.body.vessel
    }

    pub fn encode_and_hash(&self) -> (Vec<u8>, Hash) {
        let bytes = crate::cbor::encode(self);
        let h = Hash::of(&bytes);
        (bytes, h)
    }

    /// The chunks of the module, the volumes and the log (the snapshot's
    /// memory chunks are in its manifest).
    pub fn own_chunks(&self) -> Vec<Hash> {
        let mut out: Vec<Hash> = self.volumes.iter().flat_map(|v| v.chunks()).collect();
        out.extend(self.log.content.chunks.iter().flatten().copied());
        out.extend(self.module.chunks.iter().flatten().copied());
        out
    }
}

/// A user's removal of an ended vessel (`meshnode rm`), signed by the user
/// key: the vessel `vessel` is gone for good, under `epoch`, a new epoch
/// above every one it ran under. Every node that holds a record, a log, a
/// checkpoint or a replica of it below that epoch deletes it, and keeps the
/// tombstone so that no stale copy (an offer, a replica, a restarted old
/// host, a gossiped row) brings it back (docs/protocol.md, "Removal and
/// tombstones"). It verifies on its own, so any member may pass it on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub body: TombstoneBody,
    pub user_key: PublicKey,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TombstoneBody {
    pub version: u32,
    pub vessel: VesselId,
    /// Above the epoch the user saw the vessel end under.
    pub epoch: u64,
    /// When the user removed it (Unix ms, by the CLI's clock): for `ps` and
    /// the logs only; expiry is judged by each node's own clock.
    pub removed_unix_ms: u64,
}

impl Tombstone {
    pub fn sign(user: &ed25519_dalek::SigningKey, body: TombstoneBody) -> Tombstone {
        let signature = sign(user, Domain::Tombstone, &body);
        Tombstone {
            body,
            user_key: PublicKey::of(user),
            signature,
        }
    }

    /// Checks the version and the user's signature (whether the user key is
    /// trusted is the node's to check).
    pub fn verify(&self) -> Result<(), VesselError> {
        if self.body.version != VESSEL_VERSION {
            return Err(VesselError::Version {
                found: self.body.version,
                expected: VESSEL_VERSION,
            });
        }
        verify(
            &self.user_key,
            Domain::Tombstone,
            &self.body,
            &self.signature,
        )
        .map_err(VesselError::Signature)
    }

    pub fn vessel(&self) -> VesselId {
        self.body.vessel
    }

    pub fn epoch(&self) -> u64 {
        self.body.epoch
    }
}

/// The log's framing: one record is `stream (1 byte: 1 stdout, 2 stderr)`,
/// `length (u32 little-endian)`, then the bytes.
pub const LOG_RECORD_HEADER_BYTES: usize = 5;

/// Appends one record to a framed log.
pub fn log_append(log: &mut Vec<u8>, stream: u8, bytes: &[u8]) {
    log.push(stream);
    log.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    log.extend_from_slice(bytes);
}

/// Splits a framed log into records; a torn last record is left out.
pub fn log_records(log: &[u8]) -> Vec<(u8, &[u8])> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + LOG_RECORD_HEADER_BYTES <= log.len() {
        let stream = log[at];
        let len = u32::from_le_bytes(log[at + 1..at + 5].try_into().expect("4 bytes")) as usize;
        let start = at + LOG_RECORD_HEADER_BYTES;
        if start + len > log.len() {
            break;
        }
        out.push((stream, &log[start..start + len]));
        at = start + len;
    }
    out
}

/// Chunks needed to hold `size_bytes` (for sizing answers).
pub fn chunks_for(size_bytes: u64) -> u64 {
    size_bytes.div_ceil(CHUNK_SIZE_BYTES as u64)
}

#[cfg(test)]
mod durability_tests {
    use super::*;

    #[test]
    fn a_tombstone_verifies_and_a_changed_one_does_not() {
        let user = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
        let body = TombstoneBody {
            version: VESSEL_VERSION,
            vessel: VesselId([3; 8]),
            epoch: 4,
            removed_unix_ms: 1,
        };
        let t = Tombstone::sign(&user, body);
        assert!(t.verify().is_ok());
        let mut raised = t.clone();
        raised.body.epoch = 40;
        assert!(matches!(raised.verify(), Err(VesselError::Signature(_))));
    }

    fn body(replicas: Option<u32>, durability: Option<Durability>) -> DeploymentBody {
        DeploymentBody {
            version: VESSEL_VERSION,
            vessel: VesselId([3; 8]),
            name: "kv".into(),
            module_hash: Hash::of(b"module"),
            args: Vec::new(),
            env: Vec::new(),
            volumes: Vec::new(),
            mounts: Vec::new(),
            ports: vec![7000],
            checkpoint_every_ms: None,
            replicas,
            durability,
            max_memory_bytes: None,
            restart: None,
        }
    }

    #[test]
    fn an_async_body_encodes_as_before_and_an_older_one_decodes_as_async() {
        // A body without the field (signed before it existed) decodes as
        // async, and an async body encodes without it: its signature holds.
        let async_body = body(None, None);
        let bytes = crate::cbor::encode(&async_body);
        assert!(!bytes.windows(10).any(|w| w == b"durability"));
        let back: DeploymentBody = crate::cbor::decode(&bytes).unwrap();
        assert_eq!(back.sync_interval_ms(), None);
        let sync = body(None, Some(Durability::Sync { interval_ms: 50 }));
        let back: DeploymentBody = crate::cbor::decode(&crate::cbor::encode(&sync)).unwrap();
        assert_eq!(back.sync_interval_ms(), Some(50));
    }

    #[test]
    fn sync_needs_a_replica_and_an_interval_within_limits() {
        let sync = |replicas, interval_ms| body(replicas, Some(Durability::Sync { interval_ms }));
        assert!(sync(None, DEFAULT_SYNC_INTERVAL_MS).check().is_ok());
        let e = sync(Some(0), 50).check().unwrap_err().to_string();
        assert!(
            e.contains("--durability sync") && e.contains("--replicas is 0"),
            "{e}"
        );
        let e = sync(Some(1), MIN_SYNC_INTERVAL_MS - 1).check().unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        assert!(sync(Some(1), MAX_SYNC_INTERVAL_MS + 1).check().is_err());
    }
}
