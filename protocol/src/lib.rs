//! meshnode's wire and storage types. Plain data only: this crate opens no
//! file and no socket, so every type here can be fuzzed and reasoned about on
//! its own.
//!
//! Main types:
//! - [`wasi::WasiState`]: a vessel's virtual OS state (descriptor table, args,
//!   env, clocks, stdio positions). The dock keeps host handles only as a cache
//!   that it rebuilds from this value, which is what lets a capture carry it.
//! - [`limits`]: the named bounds on everything that comes from outside.
//! - [`snapshot::Manifest`]: a captured vessel (module, memory chunks,
//!   globals, typed frames, WASI state), named by the hash of its encoding.
//! - [`cbor`]: ciborium encoding with explicit size limits on decode.
//! - [`membership`]: keys, domain-separated signatures, member certificates,
//!   invite grants and join tokens (docs/security.md).
//! - [`control`]: the CLI ↔ node control protocol and the gossiped node
//!   status (docs/protocol.md).
//! - [`vessel`]: a vessel's signed [`vessel::Deployment`] and the
//!   [`vessel::VesselImage`] that travels when it moves (snapshot, volumes,
//!   log).
//! - [`migrate`]: the node ↔ node protocol: signed migration offers with
//!   receiver-issued nonces, deduplicated chunks, one commit point.
//! - [`duration`]: the one parser of durations (`500ms`, `1.5s`, `10m`,
//!   `1h`) that every command line and scenario file uses.

pub mod cbor;
pub mod control;
pub mod duration;
pub mod fuzzing;
pub mod ingress;
pub mod limits;
pub mod membership;
pub mod migrate;
pub mod refusal;
pub mod snapshot;
pub mod vessel;
pub mod wasi;
