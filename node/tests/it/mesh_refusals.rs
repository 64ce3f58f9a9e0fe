//! Goal: a node refuses, with a clear reason in the answer and in its log,
//! every migration message it must not act on: from a non-member, a forged
//! offer, an offer from one node claiming to be another, a replayed offer, a
//! tampered chunk, a vessel deployed by an untrusted key, a stale epoch, a
//! forged commit.
//!
//! Method: the node is a real `meshnode start` process. The adversary is a
//! real libp2p peer built from meshnode's own swarm (same transports, same
//! codecs), run in the test, which speaks the vessel protocol with messages
//! the test crafts. One adversary is a member (enrolled by the user's key:
//! an insider gone wrong), one is not.

use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{request_response, Multiaddr, PeerId, Swarm};
use meshnode::identity::NodeIdentity;
use meshnode::mesh::behaviour::{node_swarm, NodeBehaviour, NodeBehaviourEvent, SwarmOptions};
use protocol::ids::PeerIdBytes;
use protocol::ingress::IngressRequest;
use protocol::ingress::{EgressFrame, InSegment, IngressFrame, OutSegment};
use protocol::membership::{MemberCertificate, MemberRequest, MemberResponse, Nonce, PublicKey};
use protocol::migrate::{
    ChunkBytes, Decision, DecisionBody, MigrationRequest, MigrationResponse, NamedChunk, Offer,
    OfferBody, OfferKind, PEER_PROTOCOL_VERSION,
};
use protocol::peer::{PeerRequest, PeerResponse};
use protocol::refusal::RefusalCode;
use protocol::snapshot::{ChunkedImage, Hash};
use protocol::vessel::{
    Deployment, DeploymentBody, LogImage, Resume, VesselId, VesselImage, VESSEL_VERSION,
};

use crate::mesh::User;

pub(crate) struct Adversary {
    swarm: Swarm<NodeBehaviour>,
    pub(crate) identity: NodeIdentity,
    cert: Option<MemberCertificate>,
    pub(crate) node: PeerId,
    got_member_response: bool,
}

fn peer_of(addr: &Multiaddr) -> PeerId {
    meshnode::mesh::peers::peer_of(addr).expect("the address ends in /p2p/ID")
}

impl Adversary {
    pub(crate) async fn connect(
        addr: &str,
        cert_user: Option<&ed25519_dalek::SigningKey>,
    ) -> Adversary {
        let identity = NodeIdentity::ephemeral().unwrap();
        let cert = cert_user.map(|u| MemberCertificate::self_enrol(u, identity.public_key()));
        let mut swarm = node_swarm(
            &identity,
            &SwarmOptions {
                mdns: false,
                kademlia: false,
                ping_interval: Duration::from_secs(5),
                idle_connection_timeout: Duration::from_secs(60),
            },
        )
        .unwrap();
        let addr: Multiaddr = addr.parse().unwrap();
        let node = peer_of(&addr);
        swarm.dial(addr).unwrap();
        let mut a = Adversary {
            swarm,
            identity,
            cert,
            node,
            got_member_response: false,
        };
        // Show our certificate (or lack of one), and wait for the node's.
        let c = a.cert.clone();
        a.swarm
            .behaviour_mut()
            .member
            .send_request(&node, MemberRequest::Certificate(c));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !a.got_member_response {
            let ev = tokio::time::timeout_at(deadline, a.swarm.select_next_some())
                .await
                .expect("the node answered our certificate");
            a.handle(ev, None);
        }
        // Let the node's own certificate request be answered too.
        let settle = tokio::time::Instant::now() + Duration::from_millis(300);
        while let Ok(ev) = tokio::time::timeout_at(settle, a.swarm.select_next_some()).await {
            a.handle(ev, None);
        }
        a
    }

    /// Handles one swarm event; returns the response to `want`, if that is
    /// what arrived.
    fn handle(
        &mut self,
        ev: SwarmEvent<NodeBehaviourEvent>,
        want: Option<request_response::OutboundRequestId>,
    ) -> Option<Result<PeerResponse, String>> {
        match ev {
            SwarmEvent::Behaviour(NodeBehaviourEvent::Member(
                request_response::Event::Message { message, .. },
            )) => match message {
                request_response::Message::Request { channel, .. } => {
                    let c = self.cert.clone();
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .member
                        .send_response(channel, MemberResponse::Certificate(c));
                    None
                }
                request_response::Message::Response { .. } => {
                    self.got_member_response = true;
                    None
                }
            },
            SwarmEvent::Behaviour(NodeBehaviourEvent::Vessel(
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                },
            )) if Some(request_id) == want => Some(Ok(response)),
            SwarmEvent::Behaviour(NodeBehaviourEvent::Vessel(
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                },
            )) if Some(request_id) == want => Some(Err(error.to_string())),
            _ => None,
        }
    }

    pub(crate) async fn ask(&mut self, req: impl Into<PeerRequest>) -> PeerResponse {
        let node = self.node;
        let id = self
            .swarm
            .behaviour_mut()
            .vessel
            .send_request(&node, req.into());
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(30), self.swarm.select_next_some())
                .await
                .expect("the node answers within 30 s");
            if let Some(r) = self.handle(ev, Some(id)) {
                return r.expect("the request reached the node");
            }
        }
    }

    async fn nonce(&mut self) -> Nonce {
        match self.ask(MigrationRequest::Nonce).await {
            PeerResponse::Migration(MigrationResponse::Nonce(n)) => n,
            other => panic!("no nonce: {other:?}"),
        }
    }

    fn offer_body(
        &self,
        kind: OfferKind,
        vessel: VesselId,
        epoch: u64,
        image: &[u8],
        nonce: Nonce,
    ) -> OfferBody {
        OfferBody {
            version: PEER_PROTOCOL_VERSION,
            kind,
            vessel,
            epoch,
            image: Hash::of(image),
            source: PeerIdBytes(self.identity.peer_id.to_bytes()),
            destination: PeerIdBytes(self.node.to_bytes()),
            nonce,
        }
    }
}

pub(crate) fn image_for(
    user: &ed25519_dalek::SigningKey,
    vessel: VesselId,
    epoch: u64,
    chunk: Hash,
) -> VesselImage {
    let deployment = Deployment::sign(
        user,
        DeploymentBody {
            version: VESSEL_VERSION,
            vessel,
            name: "forged".into(),
            module_hash: Hash::of(b"module"),
            args: vec![],
            env: vec![],
            volumes: vec![],
            mounts: vec![],
            ports: vec![],
            checkpoint_every_ms: None,
            replicas: None,
            durability: None,
            max_memory_bytes: None,
            restart: None,
        },
    );
    VesselImage {
        version: VESSEL_VERSION,
        volumes: vec![],
        deployment,
        epoch,
        resume: Resume::Fresh,
        module: ChunkedImage {
            size_bytes: 6,
            chunks: vec![Some(chunk)],
        },
        manifest: vec![],
        log: LogImage::default(),
        migrations: 0,
        run_ms: 0,
        placement: Default::default(),
        hub: Default::default(),
    }
}

/// The refusal `r` must be, with the code it must carry; answers its
/// detail (the human line, checked too where it names something).
pub(crate) fn refused(r: PeerResponse, code: RefusalCode) -> String {
    match r {
        PeerResponse::Refused(refusal) => {
            assert_eq!(refusal.code, code, "{refusal}");
            refusal.detail
        }
        other => panic!("expected a refusal ({code}), got {other:?}"),
    }
}

#[test]
fn forged_replayed_tampered_untrusted_and_stale_messages_are_refused() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let mut a = user.start("a", &[], &["--service-address", "127.0.0.5"]);
    let addr = a.wait_ready();
    // A service vessel at epoch 1, for the fenced egress.
    let kv = crate::support::compile_c("examples/kvserver.c", &[]);
    let port = (20_000..60_000)
        .find(|p| std::net::TcpListener::bind(("127.0.0.5", *p)).is_ok())
        .unwrap()
        .to_string();
    let out = user.run(&[
        "deploy",
        "--data-dir",
        a.dir(),
        "--port",
        &port,
        kv.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", crate::mesh::stderr(&out));
    let service = VesselId::from_hex(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    // A real vessel at epoch 1, for the stale-epoch case.
    let hello = crate::corpus::corpus_wasm("cpu_loop");
    let out = user.run(&[
        "deploy",
        "--data-dir",
        a.dir(),
        hello.to_str().unwrap(),
        "200",
    ]);
    assert!(out.status.success(), "{}", crate::mesh::stderr(&out));
    let real = VesselId::from_hex(String::from_utf8_lossy(&out.stdout).trim()).unwrap();

    let user_key = meshnode::identity::read_key(&user.user_key_file())
        .unwrap()
        .unwrap();
    let stranger_key = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // Not a member: refused before anything else.
        let mut outsider = Adversary::connect(&addr, None).await;
        let why = refused(
            outsider.ask(MigrationRequest::Nonce).await,
            RefusalCode::NotMember,
        );
        assert!(why.contains("not a member"), "{why}");

        let mut m = Adversary::connect(&addr, Some(&user_key)).await;
        let vessel = VesselId([0xab; 8]);
        let content = b"chunk!".to_vec();
        let chunk = Hash::of(&content);
        let warm = protocol::cbor::encode(&vec![ChunkedImage {
            size_bytes: 6,
            chunks: vec![Some(chunk)],
        }]);

        // Forged: signed by a key that is not the sender's.
        let n = m.nonce().await;
        let body = m.offer_body(OfferKind::Warm, vessel, 1, &warm, n);
        let forged = Offer::sign(&stranger_key, body);
        let why = refused(
            m.ask(MigrationRequest::Offer {
                offer: forged,
                image: warm.clone(),
                push: None,
                lease: None,
            })
            .await,
            RefusalCode::Forged,
        );
        assert!(why.starts_with("forged offer"), "{why}");

        // Claims another node as its source (signed by us, but lying).
        let n = m.nonce().await;
        let mut body = m.offer_body(OfferKind::Warm, vessel, 1, &warm, n);
        body.source = PeerIdBytes(PeerId::random().to_bytes());
        let lying = Offer::sign(&m.identity.signing, body);
        let why = refused(
            m.ask(MigrationRequest::Offer {
                offer: lying,
                image: warm.clone(),
                push: None,
                lease: None,
            })
            .await,
            RefusalCode::Forged,
        );
        assert!(why.contains("names another node as its source"), "{why}");

        // A good offer, then the same offer again: a replay.
        let n = m.nonce().await;
        let body = m.offer_body(OfferKind::Warm, vessel, 1, &warm, n);
        let good = Offer::sign(&m.identity.signing, body);
        match m
            .ask(MigrationRequest::Offer {
                offer: good.clone(),
                image: warm.clone(),
                push: None,
                lease: None,
            })
            .await
        {
            PeerResponse::Migration(MigrationResponse::Lacking { chunks, .. }) => {
                assert_eq!(chunks, vec![chunk])
            }
            other => panic!("a good offer was not accepted: {other:?}"),
        }
        let why = refused(
            m.ask(MigrationRequest::Offer {
                offer: good,
                image: warm.clone(),
                push: None,
                lease: None,
            })
            .await,
            RefusalCode::Replayed,
        );
        assert!(why.starts_with("replayed offer"), "{why}");

        // A tampered chunk: the bytes do not hash to the name asked for.
        let why = refused(
            m.ask(MigrationRequest::Chunks {
                vessel,
                epoch: 1,
                chunks: vec![NamedChunk {
                    hash: chunk,
                    bytes: ChunkBytes(b"chunk?".to_vec()),
                }],
            })
            .await,
            RefusalCode::Tampered,
        );
        assert!(why.starts_with("tampered chunk"), "{why}");
        // The right bytes are taken.
        match m
            .ask(MigrationRequest::Chunks {
                vessel,
                epoch: 1,
                chunks: vec![NamedChunk {
                    hash: chunk,
                    bytes: ChunkBytes(content.clone()),
                }],
            })
            .await
        {
            PeerResponse::Migration(MigrationResponse::Stored { count: 1 }) => {}
            other => panic!("the right chunk was refused: {other:?}"),
        }

        // A vessel deployed by a key the node does not trust.
        let img = protocol::cbor::encode(&image_for(&stranger_key, vessel, 2, chunk));
        let n = m.nonce().await;
        let body = m.offer_body(OfferKind::Final, vessel, 2, &img, n);
        let offer = Offer::sign(&m.identity.signing, body);
        let why = refused(
            m.ask(MigrationRequest::Offer {
                offer,
                image: img,
                push: None,
                lease: None,
            })
            .await,
            RefusalCode::Untrusted,
        );
        assert!(why.starts_with("untrusted deployer"), "{why}");

        // A stale epoch: the node runs `real` at epoch 1.
        let img = protocol::cbor::encode(&image_for(&user_key, real, 1, chunk));
        let n = m.nonce().await;
        let body = m.offer_body(OfferKind::Final, real, 1, &img, n);
        let offer = Offer::sign(&m.identity.signing, body);
        let why = refused(
            m.ask(MigrationRequest::Offer {
                offer,
                image: img,
                push: None,
                lease: None,
            })
            .await,
            RefusalCode::StaleEpoch,
        );
        assert!(why.starts_with("stale epoch"), "{why}");

        // A commit signed by someone else.
        let decision = Decision::sign(
            &stranger_key,
            DecisionBody {
                version: PEER_PROTOCOL_VERSION,
                vessel,
                epoch: 2,
                image: chunk,
                source: PeerIdBytes(m.identity.peer_id.to_bytes()),
                destination: PeerIdBytes(m.node.to_bytes()),
                commit: true,
            },
        );
        let why = refused(
            m.ask(MigrationRequest::Commit(decision)).await,
            RefusalCode::Forged,
        );
        assert!(why.starts_with("forged commit"), "{why}");

        // Service ingress: vessel bytes under an epoch older than the one
        // the entry knows for the vessel (a host it left) are fenced off.
        let stale = EgressFrame {
            vessel: service,
            epoch: 0,
            segments: vec![OutSegment {
                conn: 1,
                at: 0,
                data: b"late".to_vec(),
                fin: false,
                closed: true,
            }],
        };
        let why = refused(
            m.ask(IngressRequest::Egress(stale)).await,
            RefusalCode::StaleEpoch,
        );
        assert!(
            why.contains("stale epoch 0") && why.contains("epoch 1"),
            "{why}"
        );
        // A frame over the segment limit is refused, naming the limit.
        let seg = InSegment {
            conn: 1,
            service: port.clone(),
            at: 0,
            data: vec![],
            end: None,
        };
        let big = IngressFrame {
            vessel: service,
            segments: vec![seg; protocol::limits::MAX_INGRESS_SEGMENTS + 1],
        };
        let why = refused(
            m.ask(IngressRequest::Ingress(big)).await,
            RefusalCode::Limit,
        );
        assert!(
            why.contains(&format!(
                "over the limit of {}",
                protocol::limits::MAX_INGRESS_SEGMENTS
            )),
            "{why}"
        );
        let _ = PublicKey([0; 32]);
    });
    let log = a.log();
    // Each refusal is in the log with its code.
    for expected in [
        "not-member: not a member",
        "forged: forged offer",
        "replayed: replayed offer",
        "tampered: tampered chunk",
        "untrusted: untrusted deployer",
        "stale-epoch: stale epoch",
        "forged: forged commit",
        "egress refused: stale-epoch: stale epoch",
    ] {
        assert!(
            log.contains(expected),
            "the node's log does not say `{expected}`:\n{log}"
        );
    }
}

/// A peer that speaks version 1 of the vessel protocol, as a meshnode of
/// before the envelope did: identify and the old request-response name.
#[derive(libp2p::swarm::NetworkBehaviour)]
struct OldNode {
    identify: libp2p::identify::Behaviour,
    vessel:
        request_response::Behaviour<meshnode::mesh::codec::CborCodec<PeerRequest, PeerResponse>>,
}

/// Goal: a node refuses a peer whose vessel protocol version it cannot
/// speak, and its log names both versions and what to do.
#[test]
fn a_peer_of_another_protocol_version_is_refused_with_both_versions_named() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let mut a = user.start("a", &[], &[]);
    let addr: Multiaddr = a.wait_ready().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let expected = format!(
        "speaks meshnode vessel protocol /1, this node speaks /{}; upgrade the older one",
        protocol::peer::VESSEL_PROTOCOL_VERSION
    );
    rt.block_on(async {
        let identity = NodeIdentity::ephemeral().unwrap();
        let mut old = libp2p::SwarmBuilder::with_existing_identity(identity.keypair.clone())
            .with_tokio()
            .with_quic()
            .with_behaviour(|key| OldNode {
                identify: libp2p::identify::Behaviour::new(
                    libp2p::identify::Config::new(
                        meshnode::mesh::IDENTIFY_PROTOCOL.to_string(),
                        key.public(),
                    )
                    .with_agent_version("meshnode/0.0.1".into()),
                ),
                vessel: request_response::Behaviour::with_codec(
                    meshnode::mesh::codec::CborCodec::new(1 << 20, 1 << 20),
                    [(
                        libp2p::StreamProtocol::new("/meshnode/vessel/1"),
                        request_response::ProtocolSupport::Full,
                    )],
                    request_response::Config::default(),
                ),
            })
            .unwrap()
            .build();
        old.dial(addr).unwrap();
        // Drive the old peer until the node has judged it (its log says so).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !a.log().contains(&expected) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the node did not refuse the old peer within 30 s:\n{}",
                a.log()
            );
            let _ = tokio::time::timeout(Duration::from_millis(200), old.select_next_some()).await;
        }
    });
    let log = a.log();
    assert!(log.contains("meshnode/0.0.1"), "{log}");
    // It is refused as a member, with that reason, in `peers --all`.
    let out = user.run(&["peers", "--all", "--json", "--data-dir", a.dir()]);
    let peers = String::from_utf8_lossy(&out.stdout);
    assert!(peers.contains(&expected), "{peers}");
}
