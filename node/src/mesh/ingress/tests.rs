//! The entry role's tests (`mesh::ingress`): a reader that follows a
//! move, and the hold of a sync vessel's client through its host's death.

use std::collections::BTreeMap;

use super::entry::{admit_when_heard, read_client};
use super::*;
use crate::dock::DockConfig;
use crate::mesh::link::NodeCommand;

/// A request's answer, kept unsent until a test sends it.
type Reply = oneshot::Sender<Result<protocol::peer::PeerResponse, RequestError>>;

/// The next request the entry sent that `pick` takes (others are
/// skipped), with its peer and its answer's sender.
async fn next_request<T>(
    rx: &mut mpsc::Receiver<NodeCommand>,
    pick: impl Fn(protocol::peer::PeerRequest) -> Option<T>,
) -> (PeerId, T, Reply) {
    loop {
        let cmd = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the entry sends it within 5 s")
            .expect("the link is open");
        if let NodeCommand::PeerRequest {
            peer,
            request,
            reply,
        } = cmd
        {
            if let Some(t) = pick(*request) {
                return (peer, t, reply);
            }
        }
    }
}

/// The frame an entry sent to `peer`, as the event loop would get it;
/// its answer is kept unsent (a host a WAN away, or frozen in a move).
async fn next_frame(rx: &mut mpsc::Receiver<NodeCommand>) -> (PeerId, IngressFrame, Reply) {
    next_request(rx, |r| match r {
        protocol::peer::PeerRequest::Ingress(IngressRequest::Ingress(f)) => Some(f),
        _ => None,
    })
    .await
}

/// An entry node on its own: its link's requests come out of the receiver
/// (as the event loop would get them), unanswered until a test answers.
fn entry() -> (tempfile::TempDir, Arc<Ingress>, mpsc::Receiver<NodeCommand>) {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::open(
        dir.path(),
        "n".into(),
        DockConfig::default(),
        BTreeMap::new(),
    )
    .unwrap();
    let (tx, rx) = mpsc::channel(16);
    let link = Link {
        tx,
        fail_fast: false,
    };
    let ingress = Arc::new(Ingress::new(
        None,
        link,
        Arc::new(Mutex::new(host)),
        PeerId::random(),
        Suspects::default(),
    ));
    (dir, ingress, rx)
}

/// A client of `vessel` held by `ingress` as connection 1, its reader
/// running: the client's end, the reader's task, and what the entry would
/// write to the client (kept open).
async fn held_client(
    ingress: &Arc<Ingress>,
    vessel: VesselId,
) -> (
    tokio::net::TcpStream,
    tokio::task::JoinHandle<()>,
    mpsc::Receiver<WriteCmd>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, _) = listener.accept().await.unwrap();
    let (read, _write) = stream.into_split();
    let (writer, writes) = mpsc::channel(4);
    lock(&ingress.conns).insert(1, Arc::new(EntryConn { vessel, writer }));
    let reader = tokio::spawn(read_client(ingress.clone(), vessel, 1, "7000".into(), read));
    (client, reader, writes)
}

#[tokio::test]
async fn an_entry_waiting_on_the_old_host_resends_to_the_new_one_when_it_announces_itself() {
    let (_dir, ingress, mut rx) = entry();
    let (vessel, old, new) = (VesselId([7; 8]), PeerId::random(), PeerId::random());
    let route = |epoch| ServiceRoute {
        vessel,
        epoch,
        ports: vec![7000],
        sync: false,
        leased: false,
    };
    ingress.learn(old, &[route(1)]);

    // A client connection held here, its reader carrying its bytes.
    let (mut client, _reader, _writes) = held_client(&ingress, vessel).await;
    let (to, opening, reply) = next_frame(&mut rx).await;
    assert_eq!((to, opening.segments[0].at), (old, 0));
    let took = IngressReply::Took {
        epoch: 1,
        conns: vec![(1, InStatus::Taken { taken: 0 })],
    };
    let _ = reply.send(Ok(IngressResponse::Ingress(took).into()));

    client.write_all(b"SET k v\n").await.unwrap();
    let (to, frame, _unanswered) = next_frame(&mut rx).await;
    assert_eq!(to, old);
    assert_eq!(frame.segments[0].data, b"SET k v\n");

    // The vessel moved: the new host's announcement (an egress frame of
    // the new epoch, no segments) reaches this entry while the old host
    // still has the frame. The bytes go to the new host at once.
    let announce = EgressFrame {
        vessel,
        epoch: 2,
        segments: vec![],
    };
    entry_write(&ingress, new, announce).await.unwrap();
    let (to, resent, _) = next_frame(&mut rx).await;
    assert_eq!(to, new, "the resend goes to the new host");
    assert_eq!(
        (resent.segments[0].at, &resent.segments[0].data[..]),
        (0, &b"SET k v\n"[..])
    );
    // A late frame of the old host's epoch is refused from now on.
    let late = EgressFrame {
        vessel,
        epoch: 1,
        segments: vec![],
    };
    let refused = entry_write(&ingress, old, late).await.unwrap_err();
    assert_eq!(refused.code, RefusalCode::StaleEpoch);
}

/// Regression (scripts/bench_failover.py): a client whose request its
/// host had taken, waiting for the answer when the host died, was left
/// hanging until the host was declared down (30 s): its reader was idle,
/// with nothing to send, and did not look at the route. Now the new host
/// is told at once where the client stands, and answers how much of it it
/// holds: less, after a takeover from an older checkpoint, so the client
/// is reset.
#[tokio::test]
async fn an_idle_client_waiting_for_its_answer_is_reset_when_a_replica_takes_over() {
    let (_dir, ingress, mut rx) = entry();
    let (vessel, old, new) = (VesselId([9; 8]), PeerId::random(), PeerId::random());
    let route = |epoch| ServiceRoute {
        vessel,
        epoch,
        ports: vec![7000],
        sync: false,
        leased: false,
    };
    ingress.learn(old, &[route(1)]);
    let (mut client, reader, _writes) = held_client(&ingress, vessel).await;
    let took = |taken| IngressReply::Took {
        epoch: 1,
        conns: vec![(1, InStatus::Taken { taken })],
    };
    let (_, _, reply) = next_frame(&mut rx).await;
    let _ = reply.send(Ok(IngressResponse::Ingress(took(0)).into()));
    // The request is taken by the old host, which dies before it answers.
    client.write_all(b"SET k v\n").await.unwrap();
    let (_, _, reply) = next_frame(&mut rx).await;
    let _ = reply.send(Ok(IngressResponse::Ingress(took(8)).into()));
    // The reader (on this test's one thread) takes the answer and goes
    // idle before anything else happens.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }

    // A replica takes over at epoch 2 and announces itself.
    ingress.learn(new, &[route(2)]);
    let (to, probe, reply) = tokio::time::timeout(Duration::from_millis(500), next_frame(&mut rx))
        .await
        .expect("the new host is told at once, not after IDLE_LOOK_EVERY or the 30 s down");
    assert_eq!(to, new);
    assert_eq!((probe.segments[0].at, probe.segments[0].data.len()), (8, 0));
    // Its checkpoint holds none of the request: the client is reset.
    let behind = IngressReply::Took {
        epoch: 2,
        conns: vec![(1, InStatus::Taken { taken: 0 })],
    };
    let _ = reply.send(Ok(IngressResponse::Ingress(behind).into()));
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the reader ends: the client is reset")
        .unwrap();
    assert!(!lock(&ingress.conns).contains_key(&1));
}

#[test]
fn a_sync_vessels_client_is_held_through_its_hosts_death_for_a_bounded_time() {
    let (_dir, ingress, suspects) = entry_with_suspects();
    let (dead, new) = (PeerId::random(), PeerId::random());
    let (sync_v, async_v) = (VesselId([1; 8]), VesselId([2; 8]));
    let route = |vessel, epoch, sync| ServiceRoute {
        vessel,
        epoch,
        ports: vec![7000],
        sync,
        leased: false,
    };
    ingress.learn(dead, &[route(sync_v, 1, true), route(async_v, 1, false)]);
    let since = Instant::now();
    suspects.publish([(dead, crate::mesh::liveness::State::Down { since })].into_iter());

    // An async vessel's client is given up once its host is down.
    let why = ingress.gives_up(async_v, &mut None).expect("given up");
    assert!(why.contains("down"), "{why}");
    // A sync vessel's is held, while a replica may take it over...
    let mut lost = None;
    assert_eq!(ingress.gives_up(sync_v, &mut lost), None);
    assert!(lost.is_some(), "the hold is counted from now");
    // ...for SYNC_FAILOVER_HOLD, then reset with the reason.
    let mut long_lost = Some(Instant::now() - SYNC_FAILOVER_HOLD - Duration::from_secs(1));
    let why = ingress.gives_up(sync_v, &mut long_lost).expect("given up");
    assert!(
        why.contains("no other node took it over within 30 s"),
        "{why}"
    );
    // A new host at the higher epoch ends the hold.
    ingress.learn(new, &[route(sync_v, 2, true)]);
    assert_eq!(ingress.gives_up(sync_v, &mut long_lost), None);
    assert_eq!(long_lost, None);
}

/// The next ask for a route's proof the entry sent: the epoch asked.
async fn next_proof_ask(rx: &mut mpsc::Receiver<NodeCommand>) -> (PeerId, u64, Reply) {
    use protocol::lease::LeaseRequest;
    next_request(rx, |r| match r {
        protocol::peer::PeerRequest::Lease(LeaseRequest::Proof { epoch, .. }) => Some(epoch),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn an_entry_follows_a_leased_vessels_new_epoch_only_with_its_certificate() {
    use crate::failover::cert::tests::{body, id, signed};
    use protocol::lease::{AssignmentKind, LeaseResponse};
    let peer = |n: u8| PeerId::from_bytes(&id(n).0).unwrap();
    let answer = |cert| protocol::peer::PeerResponse::Lease(LeaseResponse::Proof(cert));
    let (_dir, ingress, mut rx) = entry();
    let asked = lock(&ingress.proof_asked).take().unwrap();
    tokio::spawn(prove_routes(ingress.clone(), asked));
    let deploy = body(1, 0, AssignmentKind::Deploy, 3);
    let vessel = deploy.vessel;
    let (old, liar, new) = (peer(0), peer(1), peer(2));
    let route = |epoch| ServiceRoute {
        vessel,
        epoch,
        ports: vec![7000],
        sync: false,
        leased: true,
    };
    // The first route is taken as it comes; its proof is asked for.
    ingress.learn(old, &[route(1)]);
    assert_eq!(ingress.route(vessel), Some((old, 1)));
    let (to, epoch, reply) = next_proof_ask(&mut rx).await;
    assert_eq!((to, epoch), (old, 1));
    let _ = reply.send(Ok(answer(signed(deploy, &[0, 1, 2]))));

    // A member claims epoch 2 with a certificate only it signed: refused.
    ingress.learn(liar, &[route(2)]);
    let (to, epoch, reply) = next_proof_ask(&mut rx).await;
    assert_eq!((to, epoch), (liar, 2));
    let _ = reply.send(Ok(answer(signed(
        body(2, 1, AssignmentKind::Takeover, 3),
        &[1],
    ))));
    // The takeover's real owner announces itself (a frame, no segments):
    // followed once its certificate, signed by a majority, is checked.
    let announce = EgressFrame {
        vessel,
        epoch: 2,
        segments: vec![],
    };
    entry_write(&ingress, new, announce).await.unwrap();
    assert_eq!(
        ingress.route(vessel),
        Some((old, 1)),
        "not before its proof"
    );
    let (to, epoch, reply) = next_proof_ask(&mut rx).await;
    assert_eq!((to, epoch), (new, 2));
    let _ = reply.send(Ok(answer(signed(
        body(2, 2, AssignmentKind::Takeover, 3),
        &[1, 2],
    ))));
    tokio::time::timeout(Duration::from_secs(5), ingress.moved_from(vessel, old))
        .await
        .expect("the route follows the proven epoch");
    assert_eq!(ingress.route(vessel), Some((new, 2)));
}

/// Regression (testnet's upgrade scenario): a client entering at the node a
/// leased vessel had just left hung, and the node with it. The old host's
/// `NotHere { moved_to }` names a new epoch, which is taken only once its
/// certificate is checked; the reader asked for the proof and at once
/// asked the old host again, which answered the same, without ever
/// yielding when the old host was the entry itself: its worker thread spun
/// and the node's event loop starved. Now the reader waits for the route to
/// move (or a while) before it asks again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_at_the_node_a_leased_vessel_left_waits_for_the_new_hosts_proof() {
    use crate::failover::cert::tests::{body, id, signed};
    use protocol::lease::{AssignmentKind, LeaseRequest, LeaseResponse};
    let peer = |n: u8| PeerId::from_bytes(&id(n).0).unwrap();
    let answer = |cert| protocol::peer::PeerResponse::Lease(LeaseResponse::Proof(cert));
    let (_dir, ingress, mut rx) = entry();
    let asked = lock(&ingress.proof_asked).take().unwrap();
    tokio::spawn(prove_routes(ingress.clone(), asked));
    let deploy = body(1, 0, AssignmentKind::Deploy, 3);
    let vessel = deploy.vessel;
    let (old, new) = (peer(0), peer(2));
    let route = ServiceRoute {
        vessel,
        epoch: 1,
        ports: vec![7000],
        sync: false,
        leased: true,
    };
    ingress.learn(old, &[route]);
    let (_, _, reply) = next_proof_ask(&mut rx).await;
    let _ = reply.send(Ok(answer(signed(deploy, &[0, 1, 2]))));

    let (mut client, _reader, _writes) = held_client(&ingress, vessel).await;
    let (to, _, reply) = next_frame(&mut rx).await;
    assert_eq!(to, old);
    let took = IngressReply::Took {
        epoch: 1,
        conns: vec![(1, InStatus::Taken { taken: 0 })],
    };
    let _ = reply.send(Ok(IngressResponse::Ingress(took).into()));
    client.write_all(b"SET k v\n").await.unwrap();
    let (to, _, reply) = next_frame(&mut rx).await;
    assert_eq!(to, old);
    // The vessel moved to `new` at epoch 2 while the frame was on its way.
    let not_here = IngressReply::NotHere {
        moved_to: Some(protocol::ids::PeerIdBytes(new.to_bytes())),
        epoch: 2,
    };
    let _ = reply.send(Ok(IngressResponse::Ingress(not_here).into()));

    // The entry asks for the new epoch's proof, and sends the bytes on only
    // once the route has moved: the next frame goes to the new host.
    loop {
        let cmd = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("the entry goes on within 5 s")
            .expect("the link is open");
        let NodeCommand::PeerRequest {
            peer,
            request,
            reply,
        } = cmd
        else {
            continue;
        };
        match *request {
            protocol::peer::PeerRequest::Lease(LeaseRequest::Proof { epoch, .. }) => {
                assert_eq!((peer, epoch), (new, 2));
                let cert = signed(body(2, 2, AssignmentKind::Handoff, 3), &[0, 1, 2]);
                let _ = reply.send(Ok(answer(cert)));
            }
            protocol::peer::PeerRequest::Ingress(IngressRequest::Ingress(f)) => {
                assert_eq!(peer, new, "asked the old host again before the proof");
                assert_eq!(f.segments[0].data, b"SET k v\n");
                break;
            }
            _ => {}
        }
    }
}

/// An entry on its own with the suspicions it goes by (its link's
/// requests go nowhere).
fn entry_with_suspects() -> (tempfile::TempDir, Arc<Ingress>, Suspects) {
    let dir = tempfile::tempdir().unwrap();
    let h = Host::open(
        dir.path(),
        "n".into(),
        DockConfig::default(),
        BTreeMap::new(),
    )
    .unwrap();
    let (tx, _rx) = mpsc::channel(16);
    let suspects = Suspects::default();
    let ingress = Arc::new(Ingress::new(
        None,
        Link {
            tx,
            fail_fast: false,
        },
        Arc::new(Mutex::new(h)),
        PeerId::random(),
        suspects.clone(),
    ));
    (dir, ingress, suspects)
}

/// `host` runs `vessel` on port 7000, at epoch 1, as `ingress` learns it.
fn runs_on(ingress: &Ingress, host: PeerId, vessel: VesselId) {
    let route = ServiceRoute {
        vessel,
        epoch: 1,
        ports: vec![7000],
        sync: false,
        leased: false,
    };
    ingress.learn(host, &[route]);
}

/// A client's socket at the entry, and the client's end.
async fn client_pair() -> (tokio::net::TcpStream, tokio::net::TcpStream, SocketAddr) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let (stream, addr) = listener.accept().await.unwrap();
    (stream, client, addr)
}

#[tokio::test]
async fn a_new_client_that_comes_while_a_flapping_link_is_down_is_served_when_the_host_answers() {
    let (host, vessel) = (PeerId::random(), VesselId([3; 8]));
    let (_dir, ingress, suspects) = entry_with_suspects();
    runs_on(&ingress, host, vessel);
    let since = Instant::now();
    suspects.publish([(host, crate::mesh::liveness::State::Unreachable { since })].into_iter());
    let (stream, _client, addr) = client_pair().await;
    let admitted = tokio::spawn({
        let ingress = ingress.clone();
        async move { admit_when_heard(&ingress, stream, addr, vessel, 7000).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        ingress.connections(),
        0,
        "not held while the host is unreachable"
    );
    suspects.publish([(host, crate::mesh::liveness::State::Up)].into_iter());
    tokio::time::timeout(Duration::from_secs(2), admitted)
        .await
        .expect("admitted within 2 s of the host answering")
        .unwrap();
    assert_eq!(ingress.connections(), 1, "held once the host answers");
}

#[tokio::test]
async fn a_new_client_of_a_host_that_stays_silent_is_reset_not_left_hanging() {
    let (host, vessel) = (PeerId::random(), VesselId([4; 8]));
    let (_dir, ingress, suspects) = entry_with_suspects();
    runs_on(&ingress, host, vessel);
    let since = Instant::now();
    suspects.publish([(host, crate::mesh::liveness::State::Unreachable { since })].into_iter());
    let (stream, mut client, addr) = client_pair().await;
    let started = Instant::now();
    admit_when_heard(&ingress, stream, addr, vessel, 7000).await;
    assert!(started.elapsed() >= NEW_CLIENT_WAIT);
    assert_eq!(ingress.connections(), 0);
    let mut b = [0u8; 1];
    let got = client.read(&mut b).await;
    assert!(
        matches!(&got, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "the client is reset: {got:?}"
    );
}
