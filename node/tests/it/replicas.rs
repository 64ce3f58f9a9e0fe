//! Replicas (issue 15, item 1) on a mesh of three real `meshnode start`
//! processes (the harness of `mesh_vessels`), driven by the real CLI:
//! a vessel deployed with `--replicas 1` has its checkpoints on another
//! node, only the chunks that node lacks travel after the first, a replica
//! that is killed is replaced, and `--replicas 0` ships nothing; a real
//! libp2p peer (the adversary of `mesh_refusals`) sends the replica
//! messages a node must refuse.
//!
//! What a replica holds is read from its own record on disk
//! (`vessels/ID/replica.cbor`), and the host's newest checkpoint from the
//! host's ownership record: both are the nodes' durable word.

use std::path::Path;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use meshnode::vessel::Record;
use protocol::ids::PeerIdBytes;
use protocol::membership::Nonce;
use protocol::migrate::{ChunkBytes, NamedChunk};
use protocol::peer::PeerResponse;
use protocol::refusal::RefusalCode;
use protocol::replica::{
    ReplicaOffer, ReplicaOfferBody, ReplicaRecord, ReplicaRequest, ReplicaResponse, REPLICA_VERSION,
};
use protocol::snapshot::Hash;
use protocol::vessel::VesselId;
use serde_json::Value;

use crate::mesh::stderr;
use crate::mesh_refusals::{image_for, refused, Adversary};
use crate::mesh_vessels::Mesh;
use crate::support::compile_c;

/// The vessels' checkpoint interval.
const EVERY_MS: u64 = 500;

/// Generous for a loaded 2-core CI machine; every wait polls.
const WAIT: Duration = Duration::from_secs(60);

/// How long a replica may lag the host's newest checkpoint: a couple of
/// intervals, and the slack of a loaded debug build (the image is read,
/// offered, its lacking chunks sent and stored durably).
const LAG: Duration = Duration::from_millis(2 * EVERY_MS + 3_000);

/// Deploys `wasm ARGS` on node `node` with `--replicas R`; its id.
fn deploy(
    mesh: &Mesh,
    node: usize,
    name: &str,
    replicas: &str,
    wasm: &Path,
    args: &[&str],
) -> String {
    let every = format!("{EVERY_MS}ms");
    let mut all = vec!["deploy", "--name", name, "--checkpoint-every", &every];
    all.extend(["--data-dir", mesh.nodes[node].dir()]);
    all.extend(["--replicas", replicas, wasm.to_str().unwrap()]);
    all.extend(args);
    let out = mesh.user.run(&all);
    assert!(out.status.success(), "deploy {name}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The replica record node `i` keeps of `vessel`, if any.
fn replica_record(mesh: &Mesh, i: usize, vessel: &str) -> Option<ReplicaRecord> {
    let path = mesh.nodes[i]
        .data_dir
        .join("vessels")
        .join(vessel)
        .join("replica.cbor");
    let bytes = std::fs::read(&path).ok()?;
    Some(protocol::cbor::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

/// The image of the host's ownership record: its newest durable checkpoint.
fn host_image(mesh: &Mesh, host: usize, vessel: &str) -> Option<Hash> {
    let path = mesh.nodes[host]
        .data_dir
        .join("vessels")
        .join(vessel)
        .join("record.cbor");
    let record: Record = protocol::cbor::decode(&std::fs::read(path).ok()?).ok()?;
    match record {
        Record::Owned { image, .. } => Some(image),
        _ => None,
    }
}

/// Waits until the vessel's log (through node 0) has `text`.
fn wait_log(mesh: &Mesh, vessel: &str, text: &str) {
    let deadline = Instant::now() + WAIT;
    while !String::from_utf8_lossy(&mesh.logs(0, vessel).0).contains(text) {
        assert!(Instant::now() < deadline, "no {text:?} in {vessel}'s log");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until replica `rep` holds the host's newest checkpoint and that
/// is an image not in `seen`; adds it.
fn wait_new_image(mesh: &Mesh, rep: usize, vessel: &str, seen: &mut Vec<Hash>) {
    let deadline = Instant::now() + WAIT;
    loop {
        let h = wait_replica_caught_up(mesh, 0, rep, vessel);
        if !seen.contains(&h) {
            seen.push(h);
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{vessel}: no new checkpoint on the replica"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `ps` through node `via` until `ok` holds for the vessel's row.
fn wait_row(
    mesh: &Mesh,
    via: usize,
    vessel: &str,
    what: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let row = mesh.row(via, vessel);
        if let Some(r) = row.as_ref().filter(|r| ok(r)) {
            return r.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{vessel}: {what} within {WAIT:?}; last row {row:?}\n{}",
            mesh.logs_of_nodes()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The node index of the row's replica `k` (by PeerId).
fn replica_index(mesh: &Mesh, row: &Value, k: usize) -> usize {
    let node = row["replicas"][k]["node"].as_str().expect("a replica node");
    mesh.ids
        .iter()
        .position(|id| id == node)
        .unwrap_or_else(|| panic!("replica {node} is not a node of the mesh"))
}

fn shipped(r: &Value) -> bool {
    r["replicas"]
        .as_array()
        .is_some_and(|a| !a.is_empty() && a.iter().all(|x| x["image"].is_string()))
}

/// Waits until replica `rep` holds exactly the host's newest checkpoint,
/// read at the same moment; returns it. Checkpoints keep coming, so the
/// two agree between a shipment's end and the next checkpoint.
fn wait_replica_caught_up(mesh: &Mesh, host: usize, rep: usize, vessel: &str) -> Hash {
    let deadline = Instant::now() + LAG;
    loop {
        let held = replica_record(mesh, rep, vessel).map(|r| r.image);
        let newest = host_image(mesh, host, vessel);
        if let (Some(h), Some(n)) = (held, newest) {
            if h == n {
                return h;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{vessel}: the replica on node {rep} did not hold the host's newest checkpoint \
             within {LAG:?} (holds {held:?}, host's newest {newest:?})\n{}",
            mesh.logs_of_nodes()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Goal: a vessel deployed with `--replicas 1` on a 3-node mesh has the
/// host's newest checkpoint on its replica within a couple of intervals;
/// after the first whole image, each checkpoint sends only the chunks the
/// replica lacks (a 16 MiB memory sweeping 64 KiB/s dirties about one
/// chunk an interval, not 256); the replica's record is its own, never an
/// ownership record; a vessel deployed with `--replicas 0` ships nothing
/// anywhere; one that asks for more replicas than there are other members
/// gets those there are, and `ps` says so; one that ends releases them.
#[test]
fn checkpoints_reach_the_replica_and_only_the_chunks_it_lacks_travel() {
    let _cpu = crate::support::shared_cpu();
    let mesh = Mesh::new(0, 200_000);
    let writer = compile_c("benches/programs/memwriter.c", &[]);
    let ticker = compile_c("node/tests/it/programs/ticker.c", &[]);
    let args = ["16", "65536", "sweep", "0", "7", "sleep"];
    let v = deploy(&mesh, 0, "writer", "1", &writer, &args);
    let quiet = deploy(&mesh, 0, "quiet", "0", &ticker, &[]);
    let wide = deploy(&mesh, 0, "wide", "3", &ticker, &[]);
    let row = wait_row(&mesh, 0, &v, "a checkpoint on its replica", shipped);
    assert_eq!(row["replicas_wanted"], 1, "{row}");
    let rep = replica_index(&mesh, &row, 0);
    assert_ne!(rep, 0, "the host is never its own replica");
    wait_replica_caught_up(&mesh, 0, rep, &v);
    let record = replica_record(&mesh, rep, &v).unwrap();
    assert_eq!(
        record.host.0,
        mesh.ids[0].parse::<libp2p::PeerId>().unwrap().to_bytes()
    );
    assert!(
        host_image(&mesh, rep, &v).is_none(),
        "a replica must never hold an ownership record of the vessel"
    );
    // Once the writer has filled its 16 MiB, the replica catches up with
    // an image taken after that (the second it holds from then on: the
    // first may have been taken before), so the whole memory has crossed.
    wait_log(&mesh, &v, "ready");
    let after_fill = wait_replica_caught_up(&mesh, 0, rep, &v);
    let mut seen = vec![after_fill];
    wait_new_image(&mesh, rep, &v, &mut seen);
    let filled = mesh.row(0, &v).unwrap()["replica_chunks_sent"]
        .as_u64()
        .unwrap();
    assert!(
        filled >= 256,
        "the whole 16 MiB memory (256 chunks) has crossed once: {filled} chunks sent"
    );
    // Four more shipments, each caught up with the host's newest.
    while seen.len() < 6 {
        wait_new_image(&mesh, rep, &v, &mut seen);
    }
    let row = mesh.row(0, &v).unwrap();
    let more = row["replica_chunks_sent"].as_u64().unwrap() - filled;
    eprintln!(
        "replicas: {filled} chunks until the memory was whole there, the next 4 shipments {more}"
    );
    assert!(
        more < 64,
        "4 later shipments sent {more} chunks (a 16 MiB memory is 256): only the chunks \
         the replica lacks may cross\n{row}"
    );
    // `--replicas 0`: a checkpoint of each, then the replicated one's on
    // its replica; the other has no replica anywhere and sent nothing.
    for vessel in [&quiet, &v] {
        let out = mesh.cli(0, &["checkpoint", vessel]);
        assert!(out.status.success(), "checkpoint: {}", stderr(&out));
    }
    wait_replica_caught_up(&mesh, 0, rep, &v);
    let row = mesh.row(0, &quiet).unwrap();
    assert_eq!(row["replicas_wanted"], 0, "{row}");
    assert_eq!(row["replicas"], Value::Array(vec![]), "{row}");
    assert_eq!(row["replica_bytes_sent"], 0, "{row}");
    assert!(
        (0..3).all(|i| replica_record(&mesh, i, &quiet).is_none()),
        "a vessel deployed with --replicas 0 has a replica"
    );
    // More replicas asked for than other members: it has what there is,
    // and `ps` says so, in JSON and to a human.
    let row = wait_row(&mesh, 0, &wide, "two replicas", |r| {
        shipped(r) && r["replicas"].as_array().unwrap().len() == 2
    });
    let problem = row["replication_problem"].as_str().unwrap_or_default();
    assert!(
        problem.starts_with("2 of 3 replicas: only 2 other members"),
        "{row}"
    );
    // Wide: full ids and PeerIds (the default table shows names and
    // short ids within 100 columns).
    let out = mesh.cli(0, &["ps", "-o", "wide"]);
    assert!(out.status.success(), "ps: {}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |v: &str| {
        text.lines()
            .find(|l| l.starts_with(v))
            .unwrap_or("")
            .to_string()
    };
    assert!(text.lines().next().unwrap().contains("REPLICAS"), "{text}");
    assert!(line(&v).contains(" 1/1 "), "{text}");
    assert!(line(&wide).contains(" 2/3 "), "{text}");
    assert!(line(&quiet).contains(" off "), "{text}");
    assert!(
        text.contains(&format!("replica {}: holds a checkpoint", mesh.ids[rep])),
        "{text}"
    );
    assert!(text.contains("replicas: 2 of 3 replicas"), "{text}");
    // A vessel that ends releases its replica, which lets its copy go.
    let out = mesh.cli(0, &["stop", &v]);
    assert!(out.status.success(), "stop: {}", stderr(&out));
    let deadline = Instant::now() + WAIT;
    while replica_record(&mesh, rep, &v).is_some() {
        assert!(
            Instant::now() < deadline,
            "the replica kept its copy of a vessel that ended\n{}",
            mesh.logs_of_nodes()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Goal: a replica that is killed is replaced by the other member, which
/// then holds the host's newest checkpoint; `ps` shows the new replica.
/// Moved to that replica, the vessel is replicated by its new host, under
/// its new epoch, and the node it moved to keeps no replica copy of it.
#[test]
fn a_killed_replica_is_replaced() {
    let _cpu = crate::support::shared_cpu();
    let mut mesh = Mesh::new(0, 200_000);
    let ticker = compile_c("node/tests/it/programs/ticker.c", &[]);
    let v = deploy(&mesh, 0, "ticker", "1", &ticker, &[]);
    let row = wait_row(&mesh, 0, &v, "a checkpoint on its replica", shipped);
    let gone = replica_index(&mesh, &row, 0);
    wait_replica_caught_up(&mesh, 0, gone, &v);
    let _ = mesh.nodes[gone].child.kill();
    let _ = mesh.nodes[gone].child.wait();
    let other = (1..3).find(|i| *i != gone).unwrap();
    let row = wait_row(&mesh, 0, &v, "its replica replaced", |r| {
        shipped(r) && r["replicas"][0]["node"] == mesh.ids[other].as_str()
    });
    assert_eq!(row["replicas"].as_array().unwrap().len(), 1, "{row}");
    assert!(row["replication_problem"].is_null(), "{row}");
    wait_replica_caught_up(&mesh, 0, other, &v);
    // Moved to its replica: the replica count travels in its deployment,
    // its new host ships to the one node left (the old host, whose `Left`
    // record is at the new epoch, not above it), and the node it moved to
    // lets its own copy go: it owns the vessel now.
    let report = mesh.migrate(0, &v, other).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["phase"], "done", "{report}");
    let row = wait_row(&mesh, other, &v, "replicated from its new host", |r| {
        r["node"] == mesh.ids[other].as_str()
            && shipped(r)
            && r["replicas"][0]["node"] == mesh.ids[0].as_str()
    });
    assert_eq!(row["replicas_wanted"], 1, "{row}");
    wait_replica_caught_up(&mesh, other, 0, &v);
    let record = replica_record(&mesh, 0, &v).unwrap();
    assert_eq!(record.epoch, 2);
    let deadline = Instant::now() + WAIT;
    while replica_record(&mesh, other, &v).is_some() {
        assert!(
            Instant::now() < deadline,
            "the new host kept its replica copy"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A replica request from the adversary, answered with a replica answer.
async fn replica_nonce(m: &mut Adversary) -> Nonce {
    match m.ask(ReplicaRequest::Nonce).await {
        PeerResponse::Replica(ReplicaResponse::Nonce(n)) => n,
        other => panic!("no replica nonce: {other:?}"),
    }
}

/// An offer body from the adversary `m` (the host) to its node.
fn offer_body(
    m: &Adversary,
    vessel: VesselId,
    epoch: u64,
    image: &[u8],
    nonce: Nonce,
) -> ReplicaOfferBody {
    ReplicaOfferBody {
        version: REPLICA_VERSION,
        vessel,
        epoch,
        image: Hash::of(image),
        host: PeerIdBytes(m.identity.peer_id.to_bytes()),
        replica: PeerIdBytes(m.node.to_bytes()),
        nonce,
    }
}

/// `m` offers `image` for `vessel` at `epoch`, signed by itself, with a
/// fresh nonce and the body changed by `tamper`.
async fn offer(
    m: &mut Adversary,
    vessel: VesselId,
    epoch: u64,
    image: &[u8],
    tamper: impl FnOnce(&mut ReplicaOfferBody),
) -> PeerResponse {
    let n = replica_nonce(m).await;
    let mut body = offer_body(m, vessel, epoch, image, n);
    tamper(&mut body);
    let offer = ReplicaOffer::sign(&m.identity.signing, body);
    m.ask(ReplicaRequest::Offer {
        offer,
        image: image.to_vec(),
    })
    .await
}

/// Goal: a node refuses, with the code that says why, every replica
/// message it must not act on (forged, lying about its host, misdirected,
/// replayed, tampered, untrusted, stale, over its disk budget, for a vessel
/// it runs, chunks it did not ask for, a store before its chunks, a batch
/// over the limit),
/// and keeps an offered image only once it is whole: in its own replica
/// record, never an ownership record; its host's release lets it go.
#[test]
fn replica_messages_are_checked_and_refused_with_their_reason() {
    let _cpu = crate::support::shared_cpu();
    let user = crate::mesh::User::new();
    // A disk budget of 64 MiB: room for the ticker's checkpoints, not for
    // a replica of a 128 MiB volume.
    let dir = user.home.path().join("a");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), "disk_budget_bytes = 67108864\n").unwrap();
    let mut a = user.start("a", &[], &[]);
    let addr = a.wait_ready();
    let ticker = compile_c("node/tests/it/programs/ticker.c", &[]);
    let out = user.run(&["deploy", "--data-dir", a.dir(), ticker.to_str().unwrap()]);
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let running = VesselId::from_hex(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
    let user_key = meshnode::identity::read_key(&user.user_key_file())
        .unwrap()
        .unwrap();
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[77; 32]);
    let vessel = VesselId([0xcd; 8]);
    let content = b"replica chunk".to_vec();
    let chunk = Hash::of(&content);
    let image = protocol::cbor::encode(&image_for(&user_key, vessel, 3, chunk));
    let record_dir = a.data_dir.join("vessels").join(vessel.to_hex());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut m = Adversary::connect(&addr, Some(&user_key)).await;
        // Signed by a key that is not the sender's.
        let n = replica_nonce(&mut m).await;
        let forged = ReplicaOffer::sign(&stranger, offer_body(&m, vessel, 3, &image, n));
        let r = m
            .ask(ReplicaRequest::Offer {
                offer: forged,
                image: image.clone(),
            })
            .await;
        assert!(refused(r, RefusalCode::Forged).contains("forged replica offer"));
        let r = offer(&mut m, vessel, 3, &image, |b| {
            b.host = PeerIdBytes(PeerId::random().to_bytes())
        })
        .await;
        assert!(refused(r, RefusalCode::Forged).contains("another node as the host"));
        let r = offer(&mut m, vessel, 3, &image, |b| {
            b.replica = PeerIdBytes(PeerId::random().to_bytes())
        })
        .await;
        refused(r, RefusalCode::Misdirected);
        let r = offer(&mut m, vessel, 3, &image, |b| b.nonce = Nonce([9; 32])).await;
        refused(r, RefusalCode::Replayed);
        let r = offer(&mut m, vessel, 3, &image, |b| b.image = Hash::of(b"other")).await;
        refused(r, RefusalCode::Tampered);
        let untrusted = protocol::cbor::encode(&image_for(&stranger, vessel, 3, chunk));
        let r = offer(&mut m, vessel, 3, &untrusted, |_| {}).await;
        refused(r, RefusalCode::Untrusted);
        // Over the disk budget: refused before any chunk is asked for.
        let mut huge = image_for(&user_key, VesselId([0xee; 8]), 1, chunk);
        let file_bytes: u64 = 128 << 20;
        huge.volumes = vec![protocol::vessel::VolumeImage {
            guest: "/data".into(),
            entries: vec![protocol::vessel::VolumeEntry::File {
                path: "big".into(),
                content: protocol::snapshot::ChunkedImage {
                    size_bytes: file_bytes,
                    chunks: (0..file_bytes / 65536)
                        .map(|i| Some(Hash::of(&i.to_le_bytes())))
                        .collect(),
                },
            }],
        }];
        let huge = protocol::cbor::encode(&huge);
        let r = offer(&mut m, VesselId([0xee; 8]), 1, &huge, |_| {}).await;
        assert!(refused(r, RefusalCode::Full).contains("disk budget"));
        let of_running = protocol::cbor::encode(&image_for(&user_key, running, 9, chunk));
        let r = offer(&mut m, running, 9, &of_running, |_| {}).await;
        refused(r, RefusalCode::BadArgument);
        // Chunks and store with no offer open.
        let batch = |chunks: Vec<NamedChunk>| ReplicaRequest::Chunks {
            vessel,
            image: Hash::of(&image),
            chunks,
        };
        let good = NamedChunk {
            hash: chunk,
            bytes: ChunkBytes(content.clone()),
        };
        refused(
            m.ask(batch(vec![good.clone()])).await,
            RefusalCode::NoMigration,
        );
        refused(
            m.ask(batch(vec![good.clone(); 65])).await,
            RefusalCode::Limit,
        );
        // A good offer: the chunk is lacking.
        match offer(&mut m, vessel, 3, &image, |_| {}).await {
            PeerResponse::Replica(ReplicaResponse::Lacking { chunks, .. }) => {
                assert_eq!(chunks, vec![chunk])
            }
            other => panic!("a good offer: {other:?}"),
        }
        let store = ReplicaRequest::Store {
            vessel,
            epoch: 3,
            image: Hash::of(&image),
        };
        refused(m.ask(store.clone()).await, RefusalCode::MissingChunks);
        let other = NamedChunk {
            hash: Hash::of(b"x"),
            bytes: ChunkBytes(b"x".to_vec()),
        };
        refused(
            m.ask(batch(vec![other])).await,
            RefusalCode::UnexpectedChunk,
        );
        let bad = NamedChunk {
            hash: chunk,
            bytes: ChunkBytes(b"not it".to_vec()),
        };
        refused(m.ask(batch(vec![bad])).await, RefusalCode::Tampered);
        assert!(
            !record_dir.join("replica.cbor").exists(),
            "held before it was whole"
        );
        match m.ask(batch(vec![good])).await {
            PeerResponse::Replica(ReplicaResponse::Stored { count: 1 }) => {}
            other => panic!("the chunk: {other:?}"),
        }
        match m.ask(store).await {
            PeerResponse::Replica(ReplicaResponse::Held { epoch: 3, .. }) => {}
            other => panic!("store: {other:?}"),
        }
        let record: ReplicaRecord =
            protocol::cbor::decode(&std::fs::read(record_dir.join("replica.cbor")).unwrap())
                .unwrap();
        assert_eq!((record.epoch, record.image), (3, Hash::of(&image)));
        assert!(
            !record_dir.join("record.cbor").exists(),
            "a replica never owns"
        );
        // An offer below the epoch held is stale, and says what is held.
        let older = protocol::cbor::encode(&image_for(&user_key, vessel, 2, chunk));
        match offer(&mut m, vessel, 2, &older, |_| {}).await {
            PeerResponse::Refused(r) => {
                assert_eq!(
                    (r.code, r.known_epoch),
                    (RefusalCode::StaleEpoch, Some(3)),
                    "{r}"
                )
            }
            other => panic!("a stale offer: {other:?}"),
        }
        // The host lets it go.
        let release = ReplicaRequest::Release { vessel, epoch: 3 };
        match m.ask(release).await {
            PeerResponse::Replica(ReplicaResponse::Released) => {}
            other => panic!("release: {other:?}"),
        }
        assert!(
            !record_dir.join("replica.cbor").exists(),
            "released, still held"
        );
    });
    assert!(
        a.child.try_wait().unwrap().is_none(),
        "the node exited:\n{}",
        a.log()
    );
}

/// Goal (issue 15: a peer accepts epoch E+1 only with its certificate): a
/// node whose voter knows the certificate of a vessel's epoch takes a
/// replica only from the owner it names, and no epoch above it until it
/// learnt that epoch's certificate.
#[test]
fn a_replica_offer_from_a_node_the_certificate_does_not_name_is_refused() {
    use protocol::lease::{
        peer_id_bytes_of, AssignmentBody, AssignmentKind, Certificate, LeaseRequest, LEASE_VERSION,
    };
    use protocol::membership::PublicKey;
    let _cpu = crate::support::shared_cpu();
    let user = crate::mesh::User::new();
    let mut a = user.start("a", &[], &[]);
    let addr = a.wait_ready();
    let user_key = meshnode::identity::read_key(&user.user_key_file())
        .unwrap()
        .unwrap();
    let (vessel, chunk) = (VesselId([0xab; 8]), Hash::of(b"replica chunk"));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut m = Adversary::connect(&addr, Some(&user_key)).await;
        // Epoch 1 of the vessel belongs to `owner`, by a certificate that
        // a majority of its voters (the adversary, owner, node a) signed.
        let owner = ed25519_dalek::SigningKey::from_bytes(&[55; 32]);
        let owner_id = peer_id_bytes_of(&PublicKey::of(&owner));
        let me = PeerIdBytes(m.identity.peer_id.to_bytes());
        let voters = vec![me.clone(), owner_id.clone(), PeerIdBytes(m.node.to_bytes())];
        let body = AssignmentBody {
            version: LEASE_VERSION,
            vessel,
            epoch: 1,
            owner: owner_id.clone(),
            kind: AssignmentKind::Deploy,
            previous_epoch: 0,
            signers: voters.clone(),
            voters,
        };
        let certificate = Certificate {
            signatures: vec![
                body.sign(&m.identity.signing, me),
                body.sign(&owner, owner_id),
            ],
            body,
        };
        // Node a's voter learns it (and refuses the lease: m is not its owner).
        let r = m
            .ask(LeaseRequest::Lease {
                certificate,
                round: 1,
            })
            .await;
        refused(r, RefusalCode::NotOwner);
        for (epoch, code, words) in [
            (1, RefusalCode::Forged, "does not name as owner"),
            (
                2,
                RefusalCode::Busy,
                "knows the certificate of epoch 1 only",
            ),
        ] {
            let image = protocol::cbor::encode(&image_for(&user_key, vessel, epoch, chunk));
            let r = offer(&mut m, vessel, epoch, &image, |_| {}).await;
            let why = refused(r, code);
            assert!(why.contains(words), "epoch {epoch}: {why}");
        }
    });
}
