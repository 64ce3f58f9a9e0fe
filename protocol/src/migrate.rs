//! The node ↔ node vessel protocol (`/meshnode/vessel/1`): migration,
//! deployment forwarding, and the questions `ps` and `logs` ask across the
//! mesh. Plain data; the state machine is in docs/protocol.md.
//!
//! A migration from S to D, for vessel V now at epoch E:
//! 1. S → D [`PeerRequest::Nonce`]; D answers a fresh nonce, remembered for S.
//! 2. S → D [`PeerRequest::Offer`]: an [`Offer`] signed by S's node key
//!    naming V, E + 1, the image's hash, S, D and D's nonce, plus the image.
//!    D checks all of it (signature, addressee, nonce unused and issued to S,
//!    S a member, the deployer trusted, E + 1 above every epoch D knows for
//!    V, capacity) and answers the chunks of *this* image it lacks.
//!    A [`OfferKind::Warm`] offer (pre-copy while V runs) stops here, after
//!    the chunks; a [`OfferKind::Final`] one goes on:
//! 3. S → D [`PeerRequest::Chunks`] until D has them all (each verified).
//! 4. S → D [`PeerRequest::Prepare`]: D validates the whole snapshot and
//!    writes the image durably, *without running it*.
//! 5. S writes "V left for D at E + 1" durably: **the commit point**. Before
//!    it, S resumes V on any failure; after it, S never runs V again.
//! 6. S → D [`PeerRequest::Commit`] (signed), retried until D answers: D
//!    runs V under E + 1. A commit for a prepared image is idempotent.
//!    If S aborts before step 5, it sends [`PeerRequest::Abort`]; a prepared
//!    image that never gets its commit is never run.

use serde::{Deserialize, Serialize};

use crate::control::PeerIdBytes;
use crate::membership::{
    serde_bytes_vec, sign, verify, Domain, Nonce, PublicKey, Signature, SignatureError,
};
use crate::snapshot::Hash;
use crate::vessel::{Deployment, VesselId};

/// Version of these messages.
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
    /// Issued by the destination ([`PeerRequest::Nonce`]).
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

/// A chunk on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkBytes(#[serde(with = "serde_bytes_vec")] pub Vec<u8>);

/// A chunk with the name it is sent for: the receiver refuses it when the
/// bytes hash to anything else, or when the name is not one it asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedChunk {
    pub hash: Hash,
    pub bytes: ChunkBytes,
}

/// One request between two member nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerRequest {
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
    Prepare {
        vessel: VesselId,
        epoch: u64,
    },
    Commit(Decision),
    Abort(Decision),
    /// Run this deployment here (`meshnode deploy --on`): the user's
    /// signature travels, the receiving node checks its own trust list.
    Deploy {
        deployment: Deployment,
        #[serde(with = "serde_bytes_vec")]
        module: Vec<u8>,
        volume_chunks: Vec<ChunkBytes>,
        /// Start it pinned (`deploy --pin --on`).
        #[serde(default)]
        pinned: bool,
    },
    /// The vessels this node runs or knows the fate of (for `ps`).
    Vessels,
    /// Log records from an absolute offset (for `logs`).
    Logs {
        vessel: VesselId,
        from: u64,
    },
    /// Stop a vessel running here (the user's request, checked by the node
    /// the CLI talked to, travels as that node's word: members trust each
    /// other's control decisions).
    Stop {
        vessel: VesselId,
    },
    /// Move a vessel that runs here (for `meshnode migrate` sent to another
    /// node).
    Migrate {
        vessel: VesselId,
        to: PeerIdBytes,
    },
    /// How the migration of a vessel that this node started is going.
    MigrationStatus {
        vessel: VesselId,
    },
    /// Client bytes for a vessel that runs here, from the entry node that
    /// holds the clients (docs/protocol.md, "Service ingress").
    Ingress(crate::ingress::IngressFrame),
    /// A vessel's bytes for clients that this node holds, from its host.
    Egress(crate::ingress::EgressFrame),
    /// Pin (or unpin) a vessel that runs here (`meshnode pin`/`unpin` sent
    /// to another node).
    Pin {
        vessel: VesselId,
        pinned: bool,
    },
    /// Move every vessel off this node (`meshnode drain` sent to another
    /// node); answers with the drain's report at once.
    Drain {
        include_pinned: bool,
    },
    /// How this node's drain is going.
    DrainStatus,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerResponse {
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
    Deployed,
    Vessels(Vec<crate::control::VesselInfo>),
    Logs(crate::control::LogChunk),
    Migration(crate::control::MigrationReport),
    Done,
    Ingress(crate::ingress::IngressReply),
    Egress(crate::ingress::EgressReply),
    Refused {
        reason: String,
    },
    Drain(crate::control::DrainReport),
}

/// Fuzz oracle for the peer messages: decoding arbitrary bytes never panics,
/// verifying whatever decodes never panics, and whatever decodes re-encodes
/// to an equal value. Used by the cargo-fuzz target `peer_messages` and by a
/// seeded smoke test. Returns whether `data` decoded as any of them (the
/// smoke test counts them).
pub fn peer_messages_oracle(data: &[u8]) -> bool {
    use crate::fuzzing::round_trip;
    let key = PublicKey([7; 32]);
    let request = round_trip::<PeerRequest>(data);
    let mut decoded = request.is_some();
    match request {
        Some(PeerRequest::Offer { offer, image }) => {
            let _ = offer.verify(&key);
            if let Ok(img) = crate::cbor::decode::<crate::vessel::VesselImage>(&image) {
                let _ = img.check();
                let _ = img.deployment.verify();
            }
        }
        Some(PeerRequest::Commit(d)) | Some(PeerRequest::Abort(d)) => {
            let _ = d.verify(&key);
        }
        Some(PeerRequest::Deploy { deployment, .. }) => {
            let _ = deployment.verify();
        }
        Some(PeerRequest::Ingress(f)) => {
            let _ = f.check();
        }
        Some(PeerRequest::Egress(f)) => {
            let _ = f.check();
        }
        _ => {}
    }
    decoded |= round_trip::<PeerResponse>(data).is_some();
    if let Some(img) = round_trip::<crate::vessel::VesselImage>(data) {
        decoded = true;
        let _ = img.check();
    }
    decoded
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzzing::{mutate, SplitMix64};
    use crate::membership::tests::key;
    use crate::snapshot::ChunkedImage;
    use crate::vessel::*;

    fn deployment() -> Deployment {
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
            },
        )
    }

    fn offer() -> Offer {
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

    /// Measured (seed 0x5eed_0005): 683 of 10,000 decode as some peer
    /// message, 68 per mille; the floor is half that.
    const PEER_MIN_DECODED_PER_MILLE: usize = 34;

    /// Seeded smoke run of the `peer_messages` fuzz target: mutations of each
    /// valid message, a share of which must still decode.
    #[test]
    fn peer_messages_survive_seeded_mutations() {
        let image = VesselImage {
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
        };
        let decision = Decision::sign(
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
        );
        let samples = [
            crate::cbor::encode(&PeerRequest::Offer {
                offer: offer(),
                image: crate::cbor::encode(&image),
            }),
            crate::cbor::encode(&PeerRequest::Commit(decision)),
            crate::cbor::encode(&PeerRequest::Chunks {
                vessel: VesselId([1; 8]),
                epoch: 1,
                chunks: vec![NamedChunk {
                    hash: Hash::of(&[1, 2, 3]),
                    bytes: ChunkBytes(vec![1, 2, 3]),
                }],
            }),
            crate::cbor::encode(&PeerResponse::Lacking {
                chunks: vec![Hash::of(b"x")],
                next_nonce: Nonce([3; 32]),
            }),
            crate::cbor::encode(&image),
            crate::cbor::encode(&PeerRequest::Ingress(crate::ingress::IngressFrame {
                vessel: VesselId([1; 8]),
                segments: vec![crate::ingress::InSegment {
                    conn: 7,
                    service: "8080".into(),
                    at: 0,
                    data: b"put k v".to_vec(),
                    end: None,
                }],
            })),
            crate::cbor::encode(&PeerRequest::Egress(crate::ingress::EgressFrame {
                vessel: VesselId([1; 8]),
                epoch: 4,
                segments: vec![crate::ingress::OutSegment {
                    conn: 7,
                    at: 2,
                    data: b"ok".to_vec(),
                    fin: false,
                    closed: true,
                }],
            })),
        ];
        for (i, s) in samples.iter().enumerate() {
            assert!(peer_messages_oracle(s), "sample {i} decodes unmutated");
        }
        crate::fuzzing::write_seeds("peer_messages", &samples);
        let seed = 0x5eed_0005;
        let mut rng = SplitMix64(seed);
        let cases = 10_000;
        let mut decoded = 0;
        for case in 0..cases {
            let input = mutate(&mut rng, &samples[case % samples.len()]);
            let r = std::panic::catch_unwind(|| peer_messages_oracle(&input));
            match r {
                Ok(true) => decoded += 1,
                Ok(false) => {}
                Err(_) => panic!("seed {seed:#x} case {case} panicked on {input:02x?}"),
            }
        }
        eprintln!("peer messages: {decoded} of {cases} mutated inputs decoded");
        crate::fuzzing::assert_decoded_share(
            "peer messages",
            decoded,
            cases,
            PEER_MIN_DECODED_PER_MILLE,
        );
    }
}
