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

/// A migration request, source → destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MigrationRequest {
    Nonce,
    Offer {
        offer: Offer,
        #[serde(with = "serde_bytes_vec")]
        image: Vec<u8>,
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
}
