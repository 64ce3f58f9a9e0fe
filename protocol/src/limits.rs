//! Named limits on everything that comes from outside. A breach is a typed
//! error that carries the limit, never a panic or an unbounded allocation.

/// Largest CBOR document the decoder accepts. A WASI state holds paths, args
/// and env, all of which are small; 16 MiB leaves room for detached file
/// contents (see [`MAX_DETACHED_FILE_BYTES`]) while bounding what a hostile peer
/// can make us buffer.
pub const MAX_CBOR_DOCUMENT_BYTES: usize = 64 * 1024 * 1024;

/// Most descriptors one vessel may hold open. Linux's default soft
/// `RLIMIT_NOFILE` is 1024; a vessel gets the same budget, so a migrated
/// vessel never needs more host handles than the destination can give it.
pub const MAX_OPEN_DESCRIPTORS: usize = 1024;

/// Longest guest path, in bytes, after joining with its directory. Linux's
/// `PATH_MAX` is 4096; a longer path gets `ENAMETOOLONG`, as it would natively.
pub const MAX_PATH_BYTES: usize = 4096;

/// Most bytes of args plus environment. Linux's `ARG_MAX` is 2 MiB.
pub const MAX_ARGS_ENV_BYTES: usize = 2 * 1024 * 1024;

/// Most preopened directories per vessel. Real programs use a handful.
pub const MAX_PREOPENS: usize = 64;

/// Largest file that was unlinked while the vessel held it open and whose
/// contents therefore travel inside the WASI state (it has no path to be
/// re-opened by). Temp files bigger than this make a capture fail cleanly
/// (the vessel keeps running where it is) rather than lose data.
pub const MAX_DETACHED_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Largest linear memory a snapshot may describe: all of wasm32's 4 GiB.
/// The resuming dock also applies the vessel's own, usually lower, cap.
pub const MAX_MEMORY_BYTES: u64 = 4 * 1024 * 1024 * 1024;

/// Largest module. Real WASI programs are a few MiB; this keeps a mistaken
/// path (a disk image, a log) from being read whole.
pub const MAX_MODULE_BYTES: u64 = 256 * 1024 * 1024;

/// Most globals a snapshot may carry. wasmparser's own limit on globals in a
/// module is 1,000,000.
pub const MAX_GLOBALS: u64 = 1_000_000;

/// Most captured frames: the dock's default call-depth cap, with headroom
/// for a vessel that ran under a raised cap.
pub const MAX_FRAMES: u64 = 1_000_000;

/// Most locals in one frame. wasmparser refuses functions with more than
/// 50,000 locals.
pub const MAX_LOCALS_PER_FRAME: u64 = 50_000;

/// Most values in all frames together, so that a hostile manifest cannot
/// make a resume allocate far more than any real stack holds.
pub const MAX_TOTAL_FRAME_VALUES: u64 = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------
// The mesh: control protocol, membership, gossip (protocol/src/control/,
// protocol/src/membership.rs). Each request-response message is read with an
// explicit size limit before any decoding (node/src/mesh/codec.rs).

/// Largest control request (CLI → node). A deployment carries its module
/// and its volumes' initial files inside the request: a C program is tens
/// of KiB to a few MiB, and volumes for small boards are seeds, not data
/// sets. The codec reads at most this many bytes from a stream before it
/// gives up, so a stranger cannot make a node buffer more.
pub const MAX_CONTROL_REQUEST_BYTES: usize = 48 * 1024 * 1024;

/// Largest control request header (`control::ControlHeader`): a size, a
/// key, a hash and a signature, under 200 bytes of CBOR.
pub const MAX_CONTROL_HEADER_BYTES: usize = 1024;

/// Largest control response (node → CLI). A `peers` listing of
/// [`MAX_PEERS_LISTED`] peers with their status is well under this.
pub const MAX_CONTROL_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

/// Largest membership message (node ↔ node): one certificate, which holds at
/// most one invite grant (under 1 KiB); the rest is headroom.
pub const MAX_MEMBER_MESSAGE_BYTES: usize = 16 * 1024;

/// Largest gossiped status message: a certificate, a few strings and up to
/// [`MAX_STATUS_VESSELS`] vessel ids.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 64 * 1024;

/// Most vessel ids one status lists. A small board runs tens of vessels.
pub const MAX_STATUS_VESSELS: usize = 512;

/// Longest string (arch, OS, vessel id, PeerId) in a status.
pub const MAX_STATUS_STRING_BYTES: usize = 64;

/// Most peer RTTs one status lists (its nearest peers). Placement needs the
/// RTTs between a vessel's candidates and its clients' entry nodes, which
/// are near each other when a move is worth it; 128 entries of about 80
/// bytes keep a status far under [`MAX_STATUS_MESSAGE_BYTES`].
pub const MAX_STATUS_RTTS: usize = 128;

/// Longest placement note that travels with a vessel (why it last moved),
/// in bytes: one line for `meshnode ps`.
pub const MAX_PLACEMENT_NOTE_BYTES: usize = 256;

/// Most peers a node keeps in its peer table and lists; past it, peers that
/// are neither members nor connected are forgotten first.
pub const MAX_PEERS_LISTED: usize = 1024;

/// Longest join token. A token holds a PeerId, up to
/// [`MAX_JOIN_TOKEN_ADDRS`] addresses and two 32-byte values: about 400
/// characters of base32.
pub const MAX_JOIN_TOKEN_CHARS: usize = 2048;

/// Most inviter addresses in a join token.
pub const MAX_JOIN_TOKEN_ADDRS: usize = 8;

/// Longest PeerId in bytes (an identity multihash of an ed25519 key is 38).
pub const MAX_PEER_ID_BYTES: usize = 64;

/// Longest multiaddr string in a token or config.
pub const MAX_MULTIADDR_BYTES: usize = 256;

/// Most user keys a node trusts. A mesh has a handful of users.
pub const MAX_TRUSTED_USERS: usize = 256;

/// Most invites a node holds open at once; older ones are dropped first.
pub const MAX_PENDING_INVITES: usize = 64;

/// Most used or expired invites a node remembers, to tell a replayed token
/// ("already used") from one it never issued.
pub const MAX_SPENT_INVITES: usize = 1024;

/// Most outstanding migration nonces; the oldest is forgotten first. Only
/// members ask for them. (Control nonces are not kept at all: they are
/// MACs, see [`MAX_USED_CONTROL_NONCES`].)
pub const MAX_PENDING_NONCES: usize = 1024;

/// Most spent control nonces a node remembers within their
/// [`CONTROL_NONCE_TTL_SECS`], so that each works once. Control nonces are
/// MACs of the peer and a counter under a per-start node secret, so issuing
/// one (an unauthenticated `Challenge`) stores nothing and can evict nothing;
/// only a trusted user's signed request spends one. Over this many spent in
/// one TTL, the oldest are forgotten and every nonce issued before them is
/// refused as too old (the CLI retries with a fresh one).
pub const MAX_USED_CONTROL_NONCES: usize = 16 * 1024;

/// How long a control nonce stays valid, in seconds (node's monotonic
/// clock).
pub const CONTROL_NONCE_TTL_SECS: u64 = 60;

/// Most revoked node keys a mesh remembers (`meshnode revoke`): a mesh of
/// small boards loses a few, and every revocation travels in each trust
/// notice, which must fit one gossip message (`MAX_STATUS_MESSAGE_BYTES`).
pub const MAX_REVOCATIONS: usize = 64;

/// Most endorsements (user-signed certificates that replace a revoked
/// node's invites, `meshnode endorse`) a mesh remembers; with
/// [`MAX_REVOCATIONS`] a full trust notice is about 50 KB.
pub const MAX_ENDORSEMENTS: usize = 192;

/// Most invite ids a node remembers the enrolled node keys of, to refuse a
/// second certificate under one invite. Only certificates that verify back
/// to a trusted user are recorded, so only the user's own grants count.
pub const MAX_INVITES_SEEN: usize = 4096;

/// Longest an invite may be held open, in seconds: one day.
pub const MAX_INVITE_TTL_SECS: u64 = 24 * 3600;

// ---------------------------------------------------------------------------
// Vessels in the mesh: deployments, images, the node ↔ node protocol
// (protocol/src/vessel.rs, protocol/src/migrate.rs).

/// Largest module a deployment uploads.
pub const MAX_DEPLOY_MODULE_BYTES: usize = 32 * 1024 * 1024;

/// Most bytes in one volume's files. Volumes travel with their vessel on
/// every move; a volume larger than this belongs on a node-local mount.
pub const MAX_VOLUME_BYTES: u64 = 256 * 1024 * 1024;

/// Most files, directories and symlinks in one volume.
pub const MAX_VOLUME_ENTRIES: usize = 100_000;

/// Most volumes per vessel (each is a preopened directory).
pub const MAX_VOLUMES: usize = 16;

/// Most node-local mounts per vessel.
pub const MAX_MOUNTS: usize = 16;

/// Most args plus env entries of a deployment.
pub const MAX_DEPLOY_ARGS: usize = 4096;

/// Longest vessel or mount name.
pub const MAX_NAME_BYTES: usize = 128;

/// Most bytes of log a vessel keeps (and carries when it moves); older
/// records are dropped first and `logs` says how many bytes were dropped.
/// A board keeps this per vessel in memory.
pub const MAX_LOG_BYTES: u64 = 8 * 1024 * 1024;

/// Largest request between two nodes: one batch of chunks
/// ([`MAX_CHUNKS_PER_BATCH`] × 64 KiB), or an offer whose image lists the
/// chunks of a 4 GiB memory (65,536 × ~35 bytes) plus volumes, or a
/// forwarded deployment (module and volume chunks).
pub const MAX_PEER_REQUEST_BYTES: usize = 64 * 1024 * 1024;

/// Largest answer between two nodes: a `Lacking` list of every chunk of a
/// 4 GiB memory, a `ps` listing, or a page of log.
pub const MAX_PEER_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// Chunks per `Chunks` request: 4 MiB per round trip keeps a pipe of a few
/// ms of loopback or LAN busy without holding much in memory.
pub const MAX_CHUNKS_PER_BATCH: usize = 64;

/// Most chunks a final offer carries with it (`FinalPush`): 1 MiB, so that
/// a pushed chunk the destination turns out to have (a log or volume chunk
/// from an earlier visit) costs the pause little on a slow link, while the
/// delta of a vessel that pre-copy caught up with fits.
pub const MAX_PUSHED_CHUNKS: usize = 16;

/// Most chunk patches a final offer carries (`FinalPush::patches`): each
/// is at most a quarter of a chunk (else the chunk goes whole or after the
/// offer), so 64 of them are at most 1 MiB, as the whole chunks.
pub const MAX_PUSHED_PATCHES: usize = 64;

/// Largest page of log in one answer.
pub const MAX_LOG_PAGE_BYTES: usize = 1024 * 1024;

/// Chunks one migration's pre-copy (warm) rounds may ask the source for,
/// all rounds together: a whole image of the largest memory and module
/// (the first round), and as much again for what later rounds find
/// changed. A source whose rounds change more than that is not converging;
/// its final offer (not counted here, and checked like every final offer)
/// could still go through. A round over it is refused with `limit`.
/// Without it, a member could offer round after round
/// of fresh chunk names and fill the destination's disk.
pub const MAX_WARM_CHUNKS_PER_MIGRATION: u64 =
    2 * ((MAX_MEMORY_BYTES + MAX_MODULE_BYTES) / WARM_CHUNK_BYTES);

/// `snapshot::CHUNK_SIZE_BYTES`, repeated because this module uses no
/// other (a test checks that the two agree).
const WARM_CHUNK_BYTES: u64 = 64 * 1024;

/// Pre-copy chunks all incoming migrations together may have asked for (a
/// session's count goes when it ends, after at most
/// `INCOMING_MIGRATION_TTL`): one full-size migration's budget, so that
/// [`MAX_INCOMING_MIGRATIONS`] hostile members cannot make a node take
/// eight times as much. A pre-copy round over it is refused with `busy`:
/// that migration fails and its vessel runs on at the source.
pub const MAX_WARM_CHUNKS_PER_NODE: u64 = MAX_WARM_CHUNKS_PER_MIGRATION;

/// Most vessels one node runs at once (each has a thread and its memory).
pub const MAX_VESSELS_PER_NODE: usize = 256;

/// Migrations a node receives at once (each pins chunks and holds an image).
pub const MAX_INCOMING_MIGRATIONS: usize = 8;

/// Vessels that left whose last image (manifest and chunks) a node keeps,
/// so a return trip finds its chunks. One image per vessel; bounded so a
/// node that saw many vessels does not fill its disk (a board's SD card):
/// chunks no kept image names are evicted after each move out.
pub const MAX_DEPARTED_IMAGES: usize = 16;

/// How long a migration nonce stays good: issue to offer is one round trip.
pub const MIGRATION_NONCE_TTL_SECS: u64 = 60;

// Services: sockets of a vessel (protocol/src/wasi.rs, node/src/dock/wasi).
// A socket's state travels inside the WASI state, so each of these also
// bounds what a snapshot can make a node buffer.

/// Most listening sockets (service ports) one vessel may be given. A service
/// exposes a handful of ports (HTTP, an admin port, ...).
pub const MAX_SERVICE_PORTS: usize = 16;

/// Most connections one vessel holds at once, open or taken from the hub and
/// waiting to be accepted. Each may carry up to [`MAX_SOCKET_UNREAD_BYTES`]
/// in the state, so this times that stays well under
/// [`MAX_CBOR_DOCUMENT_BYTES`] (128 × 256 KiB = 32 MiB). Connections past it
/// wait in the hub (and, for TCP, in the kernel's backlog) until the vessel
/// closes some.
pub const MAX_VESSEL_CONNECTIONS: usize = 128;

/// Most bytes of one connection that the dock holds for the vessel before it
/// reads them (Linux's default TCP receive buffer is 128 KiB, growing to a
/// few MiB). Past it the dock takes no more from the hub, which holds the
/// rest and pushes back on the client: a slow reader never makes the state
/// (and so a migration) grow without bound.
pub const MAX_SOCKET_UNREAD_BYTES: usize = 256 * 1024;

/// Most bytes of one connection that a hub buffers in each direction between
/// the network and the dock (bytes the dock has not taken yet, bytes the
/// vessel sent that the network has not taken yet). A full buffer is
/// backpressure: the client's sends block, the vessel's sends block or get
/// `EAGAIN`.
pub const MAX_HUB_BUFFER_BYTES: usize = 256 * 1024;

/// Longest service port name (for `--tcplisten`, the address as given).
pub const MAX_SERVICE_NAME_BYTES: usize = 256;

/// Most connections one ingress or egress frame carries. A frame is sent
/// per burst of traffic; more connections wait for the next frame, so one
/// frame stays under a few MiB ([`MAX_HUB_BUFFER_BYTES`] each at most).
pub const MAX_INGRESS_SEGMENTS: usize = 16;

// ---------------------------------------------------------------------------
// Failover: leases and fencing of a replicated vessel (protocol/src/lease.rs,
// node/src/failover).

/// Most voters one replicated vessel has (the host, its replicas and
/// witness members). Every lease round and every vote asks each of them,
/// so a small board keeps this small; 9 voters survive 4 lost ones, more
/// than a fleet of boards loses at once. A longer list in a message fails
/// while it is decoded (`lease::bounded_vec`).
pub const MAX_VOTERS_PER_VESSEL: usize = 9;

/// Most signatures one certificate carries: one per signer, and the
/// signers are a voter set.
pub const MAX_CERTIFICATE_SIGNATURES: usize = MAX_VOTERS_PER_VESSEL;

/// Fewest voters a vessel fails over with automatically: with 2, either
/// one alone is no majority, and a majority of 2 is both, so a takeover
/// could never happen without the host; below 3 the user decides
/// (`recover --force`, issue 15).
pub const MIN_VOTERS_FOR_FAILOVER: usize = 3;
// Replicas (protocol/src/replica.rs, node/src/mesh/replicate.rs).

/// Most replicas one vessel may ask for (`deploy --replicas`): each costs
/// its host one upload of every checkpoint's changes, and the lease needs
/// only a majority of host, replicas and witnesses.
pub const MAX_REPLICAS: u32 = 4;

/// Most vessels one node holds replicas of: as many as it may run, so that
/// each could fail over to it.
pub const MAX_REPLICATED_VESSELS: usize = MAX_VESSELS_PER_NODE;

/// Most replica transfers (offered, not yet stored) one node receives at
/// once, from all hosts: each holds its chunks pinned until it is stored
/// or goes stale. A host ships one vessel's checkpoints one at a time.
pub const MAX_INCOMING_REPLICA_TRANSFERS: usize = 16;
