//! Migration on the vessel protocol (inside the `peer` envelope, `/meshnode/vessel/2`):
//! the messages a source and a destination exchange to move a vessel.
//! Plain data; the state machine is in docs/protocol.md.
//!
//! A migration from S to D, for vessel V now at epoch E:
//! 1. S → D [`MigrationRequest::Nonce`]; D answers a fresh nonce,
//!    remembered for S.
//! 2. S → D [`MigrationRequest::Offer`]: an [`Offer`] signed by S's node
//!    key naming V, E + 1, the image's hash, S, D and D's nonce, plus the
//!    image. D checks all of it (signature, addressee, nonce unused and
//!    issued to S, S a member, the deployer trusted, E + 1 above every epoch
//!    D knows for V, capacity) and answers the chunks of *this* image it
//!    lacks. A [`OfferKind::Warm`] offer (pre-copy while V runs) stops here,
//!    after the chunks; a [`OfferKind::Final`] one goes on:
//! 3. S → D [`MigrationRequest::Chunks`] until D has them all (each
//!    verified).
//! 4. S → D [`MigrationRequest::Prepare`]: D validates the whole snapshot
//!    and writes the image durably, *without running it*.
//! 5. S writes "V left for D at E + 1" durably: **the commit point**. Before
//!    it, S resumes V on any failure; after it, S never runs V again.
//! 6. S → D [`MigrationRequest::Commit`] (signed), retried until D answers:
//!    D runs V under E + 1. A commit for a prepared image is idempotent.
//!    If S aborts before step 5, it sends [`MigrationRequest::Abort`]; a
//!    prepared image that never gets its commit is never run.

use serde::{Deserialize, Serialize};

pub use crate::ids::ChunkBytes;
use crate::ids::{serde_bytes_vec, PeerIdBytes, VesselId};
use crate::membership::{sign, verify, Domain, Nonce, PublicKey, Signature, SignatureError};
use crate::snapshot::Hash;

/// Version of the signed offer and decision bodies. Their layout did not
/// change with the envelope of vessel protocol version 2
/// (`peer::VESSEL_PROTOCOL_VERSION`), so it is still 1.
pub const PEER_PROTOCOL_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfferKind {
    /// A pre-copy round: the receiver stores the chunks it lacks, pinned for
    /// this migration, and nothing else.
    Warm,
    /// The vessel is paused at a migration point; this image is the one to
    /// resume.
    Final,
}

/// What the source signs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferBody {
    pub version: u32,
    pub kind: OfferKind,
    pub vessel: VesselId,
    /// The epoch the vessel will have at the destination.
    pub epoch: u64,
    /// The hash of the [`crate::vessel::VesselImage`] sent with the offer.
    pub image: Hash,
    pub source: PeerIdBytes,
    pub destination: PeerIdBytes,
    /// Issued by the destination ([`MigrationRequest::Nonce`]).
    pub nonce: Nonce,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub body: OfferBody,
    pub signature: Signature,
}

impl Offer {
    pub fn sign(source: &ed25519_dalek::SigningKey, body: OfferBody) -> Offer {
        let signature = sign(source, Domain::MigrationOffer, &body);
        Offer { body, signature }
    }

    /// Checks the signature against the source node's key.
    pub fn verify(&self, source_key: &PublicKey) -> Result<(), SignatureError> {
        verify(
            source_key,
            Domain::MigrationOffer,
            &self.body,
            &self.signature,
        )
    }
}

/// The source's decision, signed: only the source can make a destination
/// run a vessel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionBody {
    pub version: u32,
    pub vessel: VesselId,
    pub epoch: u64,
    pub image: Hash,
    pub source: PeerIdBytes,
    pub destination: PeerIdBytes,
    pub commit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub body: DecisionBody,
    pub signature: Signature,
}

impl Decision {
    pub fn sign(source: &ed25519_dalek::SigningKey, body: DecisionBody) -> Decision {
        let signature = sign(source, Domain::MigrationDecision, &body);
        Decision { body, signature }
    }

    pub fn verify(&self, source_key: &PublicKey) -> Result<(), SignatureError> {
        verify(
            source_key,
            Domain::MigrationDecision,
            &self.body,
            &self.signature,
        )
    }
}

/// A chunk with the name it is sent for: the receiver refuses it when the
/// bytes hash to anything else, or when the name is not one it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedChunk {
    pub hash: Hash,
    pub bytes: ChunkBytes,
}

/// What a final offer carries besides its image, so that the pause needs
/// no round trip for the chunks and none for the prepare: the chunks of the
/// image the source expects the destination to lack (at most
/// [`crate::limits::MAX_PUSHED_CHUNKS`]; the destination stores only those
/// the image names and it lacks, each checked against its name, and
/// ignores the rest), and whether to prepare at once when nothing is
/// lacking after them (answered in `Lacking::prepared`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalPush {
    pub chunks: Vec<NamedChunk>,
    pub prepare: bool,
    /// Chunks sent as the bytes that differ from an earlier chunk the
    /// destination has (the same memory chunk as the last pre-copy round
    /// named it): a vessel that changed a few bytes of a chunk in the pause
    /// sends those bytes, not 64 KiB, so the delta fits the round trip the
    /// offer takes anyway. At most [`crate::limits::MAX_PUSHED_PATCHES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub patches: Vec<ChunkPatch>,
}

/// A chunk named `hash`, `len` bytes long, made by writing each run over
/// the chunk `base` (None: all zero), cut or padded with zeros to `len`.
/// The destination applies it only when it has `base` and the result
/// hashes to `hash`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPatch {
    pub hash: Hash,
    pub base: Option<Hash>,
    pub len: u32,
    pub runs: Vec<PatchRun>,
}

/// Bytes at offset `at` of a patched chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRun {
    pub at: u32,
    pub bytes: ChunkBytes,
}

/// Why a chunk patch cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchError {
    /// A run or the length lies outside a chunk.
    OutOfBounds,
    /// The result does not hash to the patch's name.
    Mismatch,
}

impl ChunkPatch {
    /// The runs that turn `base` into `now` (two runs closer than
    /// `gap` bytes are one), or None when they would carry more than
    /// `max_bytes`.
    pub fn runs_between(
        base: &[u8],
        now: &[u8],
        gap: usize,
        max_bytes: usize,
    ) -> Option<Vec<PatchRun>> {
        let mut runs: Vec<PatchRun> = Vec::new();
        let mut total = 0usize;
        let mut i = 0usize;
        while i < now.len() {
            if base.get(i) == Some(&now[i]) || (base.len() <= i && now[i] == 0) {
                i += 1;
                continue;
            }
            let start = i;
            let mut end = i + 1;
            let mut same = 0usize;
            let mut j = end;
            while j < now.len() && same < gap {
                let differs = base.get(j).map_or(now[j] != 0, |b| *b != now[j]);
                if differs {
                    end = j + 1;
                    same = 0;
                } else {
                    same += 1;
                }
                j += 1;
            }
            total += end - start;
            if total > max_bytes {
                return None;
            }
            runs.push(PatchRun {
                at: start as u32,
                bytes: ChunkBytes(now[start..end].to_vec()),
            });
            i = end;
        }
        Some(runs)
    }

    /// The patched chunk, from `base`'s bytes (empty for an all-zero base),
    /// checked against its name.
    pub fn apply(&self, base: &[u8]) -> Result<Vec<u8>, PatchError> {
        let len = self.len as usize;
        if len > crate::snapshot::CHUNK_SIZE_BYTES as usize {
            return Err(PatchError::OutOfBounds);
        }
        let mut out = base.to_vec();
        out.resize(len, 0);
        for r in &self.runs {
            let at = r.at as usize;
            let end = at
                .checked_add(r.bytes.0.len())
                .ok_or(PatchError::OutOfBounds)?;
            if end > len {
                return Err(PatchError::OutOfBounds);
            }
            out[at..end].copy_from_slice(&r.bytes.0);
        }
        match Hash::of(&out) == self.hash {
            true => Ok(out),
            false => Err(PatchError::Mismatch),
        }
    }
}

/// A migration request, source → destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationRequest {
    Nonce,
    Offer {
        offer: Offer,
        #[serde(with = "serde_bytes_vec")]
        image: Vec<u8>,
        /// A final offer's delta, sent with it instead of after its
        /// `Lacking` answer (absent from older nodes, and ignored by them).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        push: Option<FinalPush>,
        /// A final offer of a leased vessel: the certificate that hands
        /// the offered epoch to the destination (issue 15; a majority of
        /// the vessel's voters signed it before the source's commit point).
        /// Absent for a vessel without a lease, and from older nodes.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<Box<crate::lease::Certificate>>,
    },
    Chunks {
        vessel: VesselId,
        epoch: u64,
        chunks: Vec<NamedChunk>,
    },
    /// Make the final image named `image` durable and ready. The image
    /// tells two attempts of one source at the same epoch apart (a late
    /// final offer of the first must not be what the second prepares).
    Prepare {
        vessel: VesselId,
        epoch: u64,
        image: Hash,
    },
    Commit(Decision),
    Abort(Decision),
}

/// The destination's answer to a [`MigrationRequest`] (a refusal is
/// `peer::PeerResponse::Refused`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationResponse {
    Nonce(Nonce),
    /// The chunks the receiver lacks, of those the offered image names, and
    /// a fresh nonce for the same source's next offer (saves a round trip
    /// in the pause).
    Lacking {
        chunks: Vec<Hash>,
        next_nonce: Nonce,
        /// The final offer asked to be prepared at once, nothing was
        /// lacking, and the image is prepared (as a `Prepare` of it
        /// answered `Prepared`). Absent from older nodes: false.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        prepared: bool,
    },
    Stored {
        count: u32,
    },
    Prepared,
    Committed,
    Aborted,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::membership::tests::key;
    use crate::snapshot::ChunkedImage;
    use crate::vessel::*;

    /// Issue 14, item 3: a pre-copy offer's images are shape- and
    /// size-checked as a final offer's are.
    #[test]
    fn warm_images_are_shape_and_size_checked() {
        let img = |size_bytes: u64, chunks: usize| ChunkedImage {
            size_bytes,
            chunks: vec![None; chunks],
        };
        assert_eq!(
            crate::limits::MAX_WARM_CHUNKS_PER_MIGRATION,
            2 * ChunkedImage::chunk_count(
                crate::limits::MAX_MEMORY_BYTES + crate::limits::MAX_MODULE_BYTES
            )
        );
        check_warm_images(&[img(1 << 17, 2), img(10, 1)]).unwrap();
        check_warm_images(&[img(10, 1)]).unwrap();
        for bad in [
            vec![img(0, 0), img(0, 0), img(0, 0)],
            // A size its chunks do not cover, or chunks past its size.
            vec![img(1 << 17, 1), img(10, 1)],
            vec![img(0, 0), img(10, 5)],
            // Larger than a memory or a module can be.
            vec![img(crate::limits::MAX_MEMORY_BYTES + 1, 0), img(0, 0)],
            vec![img(0, 0), img(crate::limits::MAX_MODULE_BYTES + 1, 0)],
        ] {
            assert!(check_warm_images(&bad).is_err(), "{bad:?}");
        }
    }

    pub fn deployment() -> Deployment {
        Deployment::sign(
            &key(1),
            DeploymentBody {
                version: VESSEL_VERSION,
                vessel: VesselId([1; 8]),
                name: "app".into(),
                module_hash: Hash::of(b"m"),
                args: vec!["app".into(), "x".into()],
                env: vec!["A=1".into()],
                volumes: vec![VolumeImage {
                    guest: "/data".into(),
                    entries: vec![
                        VolumeEntry::Dir { path: "d".into() },
                        VolumeEntry::File {
                            path: "d/f".into(),
                            content: ChunkedImage {
                                size_bytes: 3,
                                chunks: vec![Some(Hash::of(b"abc"))],
                            },
                        },
                    ],
                }],
                mounts: vec![],
                ports: vec![],
                checkpoint_every_ms: None,
                replicas: None,
                durability: None,
                max_memory_bytes: None,
                restart: None,
            },
        )
    }

    pub fn offer() -> Offer {
        Offer::sign(
            &key(2),
            OfferBody {
                version: PEER_PROTOCOL_VERSION,
                kind: OfferKind::Final,
                vessel: VesselId([1; 8]),
                epoch: 3,
                image: Hash::of(b"image"),
                source: PeerIdBytes(vec![1, 2]),
                destination: PeerIdBytes(vec![3, 4]),
                nonce: Nonce([5; 32]),
            },
        )
    }

    #[test]
    fn offers_verify_only_unchanged_and_by_their_source() {
        let o = offer();
        o.verify(&PublicKey::of(&key(2))).unwrap();
        assert!(o.verify(&PublicKey::of(&key(3))).is_err());
        for tamper in [
            |b: &mut OfferBody| b.epoch += 1,
            |b: &mut OfferBody| b.nonce = Nonce([6; 32]),
            |b: &mut OfferBody| b.destination = PeerIdBytes(vec![9]),
            |b: &mut OfferBody| b.image = Hash::of(b"other"),
            |b: &mut OfferBody| b.kind = OfferKind::Warm,
        ] {
            let mut t = o.clone();
            tamper(&mut t.body);
            assert!(t.verify(&PublicKey::of(&key(2))).is_err());
        }
        // A decision signature is not an offer signature (domain separation).
        let mut t = o.clone();
        t.signature = sign(&key(2), Domain::MigrationDecision, &t.body);
        assert!(t.verify(&PublicKey::of(&key(2))).is_err());
    }

    #[test]
    fn deployments_verify_and_refuse_hostile_paths() {
        let d = deployment();
        d.verify().unwrap();
        let mut t = d.clone();
        t.body.args.push("more".into());
        assert!(matches!(t.verify(), Err(VesselError::Signature(_))));
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "", "a/.."] {
            assert!(check_volume_path("/data", bad).is_err(), "{bad}");
        }
        check_volume_path("/data", "a/b.txt").unwrap();
    }

    #[test]
    fn log_framing_round_trips_and_drops_a_torn_tail() {
        let mut log = Vec::new();
        log_append(&mut log, 1, b"hello\n");
        log_append(&mut log, 2, b"oops\n");
        let recs = log_records(&log);
        assert_eq!(recs, vec![(1, &b"hello\n"[..]), (2, &b"oops\n"[..])]);
        assert_eq!(log_records(&log[..log.len() - 1]).len(), 1);
    }

    /// A whole image (volumes, hub, placement) for the peer messages'
    /// smoke test.
    pub fn sample_image() -> VesselImage {
        VesselImage {
            version: VESSEL_VERSION,
            deployment: deployment(),
            epoch: 2,
            resume: Resume::Snapshot(Hash::of(b"s")),
            module: ChunkedImage::default(),
            manifest: vec![1, 2, 3],
            volumes: deployment().body.volumes,
            log: LogImage::default(),
            migrations: 1,
            run_ms: 5,
            placement: crate::vessel::VesselPlacement {
                pinned: true,
                last_move: "drained".into(),
            },
            hub: crate::ingress::HubImage {
                services: vec![("8080".into(), false)],
                conns: vec![crate::ingress::ConnImage {
                    id: 7,
                    service: "8080".into(),
                    entry: PeerIdBytes(vec![4, 5]),
                    waiting: false,
                    in_base: 3,
                    inbound: b"get".to_vec(),
                    in_end: Some(crate::ingress::StreamEnd::Fin),
                    in_discard: false,
                    out_base: 9,
                    outbound: b"ok".to_vec(),
                    out_fin: true,
                    vessel_closed: false,
                    reset: false,
                }],
            },
        }
    }

    pub fn decision() -> Decision {
        Decision::sign(
            &key(2),
            DecisionBody {
                version: PEER_PROTOCOL_VERSION,
                vessel: VesselId([1; 8]),
                epoch: 3,
                image: Hash::of(b"i"),
                source: PeerIdBytes(vec![1]),
                destination: PeerIdBytes(vec![2]),
                commit: true,
            },
        )
    }

    #[test]
    fn a_patch_rebuilds_the_chunk_from_its_base_and_nothing_else() {
        let base: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let mut now = base.clone();
        now[10] = 0xaa;
        now[12] = 0xbb; // within the gap: one run with the byte above
        now[3000..3004].copy_from_slice(b"DATA");
        let runs = ChunkPatch::runs_between(&base, &now, 16, 1024).unwrap();
        assert_eq!(runs.len(), 2, "{runs:?}");
        assert_eq!((runs[0].at, runs[0].bytes.0.len()), (10, 3));
        let patch = ChunkPatch {
            hash: Hash::of(&now),
            base: Some(Hash::of(&base)),
            len: now.len() as u32,
            runs,
        };
        assert_eq!(patch.apply(&base).unwrap(), now);
        // Another base gives another chunk: refused, not stored.
        let mut other = base.clone();
        other[0] ^= 1;
        assert_eq!(patch.apply(&other), Err(PatchError::Mismatch));
        // Against an all-zero base (no base chunk), from nothing.
        let zero_runs = ChunkPatch::runs_between(&[], &now[..64], 16, 1024).unwrap();
        let from_zero = ChunkPatch {
            hash: Hash::of(&now[..64]),
            base: None,
            len: 64,
            runs: zero_runs,
        };
        assert_eq!(from_zero.apply(&[]).unwrap(), now[..64].to_vec());
    }

    #[test]
    fn a_patch_that_changes_too_much_or_writes_outside_is_refused() {
        let base = vec![0u8; 1024];
        let now = vec![1u8; 1024];
        assert_eq!(ChunkPatch::runs_between(&base, &now, 16, 256), None);
        let outside = ChunkPatch {
            hash: Hash::of(b"x"),
            base: None,
            len: 8,
            runs: vec![PatchRun {
                at: 6,
                bytes: ChunkBytes(vec![1; 4]),
            }],
        };
        assert_eq!(outside.apply(&[]), Err(PatchError::OutOfBounds));
        let huge = ChunkPatch {
            len: crate::snapshot::CHUNK_SIZE_BYTES + 1,
            runs: vec![],
            ..outside
        };
        assert_eq!(huge.apply(&[]), Err(PatchError::OutOfBounds));
    }

    #[test]
    fn an_offer_and_an_answer_without_the_push_keep_their_old_layout() {
        // A node without the push sends no `push` and no `prepared`; one
        // with it sends neither when it does not push: older nodes decode
        // its messages as before, and it decodes theirs.
        let plain = MigrationRequest::Offer {
            offer: offer(),
            image: vec![1, 2, 3],
            push: None,
            lease: None,
        };
        let bytes = crate::cbor::encode(&plain);
        assert!(!bytes.windows(4).any(|w| w == b"push"));
        assert_eq!(
            crate::cbor::decode::<MigrationRequest>(&bytes).unwrap(),
            plain
        );
        let answer = MigrationResponse::Lacking {
            chunks: vec![],
            next_nonce: Nonce([3; 32]),
            prepared: false,
        };
        let bytes = crate::cbor::encode(&answer);
        assert!(!bytes.windows(8).any(|w| w == b"prepared"));
        assert_eq!(
            crate::cbor::decode::<MigrationResponse>(&bytes).unwrap(),
            answer
        );
    }
}
