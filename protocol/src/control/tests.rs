use super::*;
use crate::ids::VesselId;
use crate::limits::{MAX_STATUS_RTTS, MAX_STATUS_STRING_BYTES, MAX_STATUS_VESSELS};
use crate::membership::tests::key;

pub fn sample_request() -> SignedRequest {
    let body = RequestBody {
        version: CONTROL_VERSION,
        node: PublicKey::of(&key(3)),
        nonce: Nonce([5; 32]),
        command: Command::TrustAdd {
            user_key: PublicKey::of(&key(4)),
        },
    };
    SignedRequest::sign(&key(1), body)
}

/// Issue 14, item 4: the header a signed request goes behind verifies
/// for its node only, vouches for its body only, and a request without
/// a signature gets a header without one.
#[test]
fn a_header_vouches_for_one_body_for_one_node() {
    let r = sample_request();
    let node = r.body.node;
    let req = ControlRequest::Signed(Box::new(r.clone()));
    let auth = req.header(10).auth.unwrap();
    auth.verify_for(&node).unwrap();
    assert!(auth.verify_for(&PublicKey::of(&key(9))).is_err());
    assert!(req.matches(&auth));
    let mut other = r.clone();
    other.body.nonce = Nonce([6; 32]);
    assert!(!ControlRequest::Signed(Box::new(other)).matches(&auth));
    let mut forged = auth.clone();
    forged.body_hash = Hash::of(b"another body");
    assert!(forged.verify_for(&node).is_err());
    assert_eq!(ControlRequest::Challenge.header(1).auth, None);
}

#[test]
fn signed_request_verifies_only_for_its_node_and_fields() {
    let r = sample_request();
    let node = PublicKey::of(&key(3));
    r.verify_for(&node).unwrap();
    assert!(matches!(
        r.verify_for(&PublicKey::of(&key(9))),
        Err(ControlError::WrongNode { .. })
    ));

    // Tampered command.
    let mut t = r.clone();
    t.body.command = Command::TrustAdd {
        user_key: PublicKey::of(&key(7)),
    };
    assert!(matches!(
        t.verify_for(&node),
        Err(ControlError::Signature(SignatureError::Mismatch))
    ));

    // Tampered nonce (a replay with a fresh nonce but the old signature).
    let mut t = r.clone();
    t.body.nonce = Nonce([6; 32]);
    assert!(matches!(
        t.verify_for(&node),
        Err(ControlError::Signature(_))
    ));

    // Wrong key: claims another user.
    let mut t = r.clone();
    t.user_key = PublicKey::of(&key(2));
    assert!(matches!(
        t.verify_for(&node),
        Err(ControlError::Signature(_))
    ));

    // Wrong domain: a certificate-domain signature over the same body.
    let mut t = r.clone();
    t.signature = crate::membership::sign(&key(1), Domain::MemberCertificate, &t.body);
    assert!(matches!(
        t.verify_for(&node),
        Err(ControlError::Signature(_))
    ));
    let mut t = r;
    t.signature = crate::membership::sign(&key(1), Domain::InviteGrant, &t.body);
    assert!(matches!(
        t.verify_for(&node),
        Err(ControlError::Signature(_))
    ));
}

#[test]
fn status_limits() {
    let mut s = NodeStatus {
        version: CONTROL_VERSION,
        arch: "x86_64".into(),
        os: "linux".into(),
        free_memory_bytes: Some(1),
        total_memory_bytes: Some(2),
        load_milli: Some(10),
        cpus: 2,
        vessels: vec![],
        rtts: vec![],
        draining: false,
        services: vec![],
        named: vec![],
        name: None,
        software: None,
        coordinate: None,
        refresh_intervals: None,
    };
    s.check().unwrap();
    // A peer's NaN coordinate refuses its whole status: it must never
    // reach our own (issue 19).
    let mut hostile = crate::coordinate::NetCoordinate::default();
    hostile.vec_s[0] = f64::NAN;
    s.coordinate = Some(hostile);
    assert!(matches!(s.check(), Err(StatusError::BadCoordinate(_))));
    s.coordinate = Some(crate::coordinate::NetCoordinate::default());
    s.check().unwrap();
    // A status from a node older than coordinates still decodes.
    let mut old: ciborium::Value = crate::cbor::decode(&crate::cbor::encode(&s)).unwrap();
    if let ciborium::Value::Map(fields) = &mut old {
        fields.retain(|(k, _)| k.as_text() != Some("coordinate"));
    }
    let old: NodeStatus = crate::cbor::decode(&crate::cbor::encode(&old)).unwrap();
    assert_eq!(old.coordinate, None);
    s.coordinate = None;
    s.rtts = vec![
        PeerRtt {
            peer: "p".into(),
            rtt_us: 1
        };
        MAX_STATUS_RTTS + 1
    ];
    assert!(matches!(s.check(), Err(StatusError::TooManyRtts { .. })));
    s.rtts.clear();
    s.vessels = vec!["v".into(); MAX_STATUS_VESSELS + 1];
    assert!(matches!(s.check(), Err(StatusError::TooManyVessels { .. })));
    s.vessels.clear();
    let named = StatusVessel {
        id: VesselId([1; 8]),
        name: "v".into(),
        epoch: 1,
        voters: vec![],
        replicas: vec![],
    };
    s.named = vec![named.clone(); MAX_STATUS_NAMED_VESSELS + 1];
    assert!(matches!(s.check(), Err(StatusError::TooManyVessels { .. })));
    s.named = vec![StatusVessel {
        name: "n".repeat(crate::limits::MAX_NAME_BYTES + 1),
        ..named.clone()
    }];
    assert!(matches!(s.check(), Err(StatusError::StringTooLong { .. })));
    let voter = PeerIdBytes(vec![1; 38]);
    s.named = vec![StatusVessel {
        voters: vec![voter.clone(); crate::limits::MAX_VOTERS_PER_VESSEL + 1],
        ..named.clone()
    }];
    assert!(matches!(s.check(), Err(StatusError::TooManyVoters { .. })));
    s.named = vec![StatusVessel {
        replicas: vec![PeerIdBytes(vec![
            1;
            crate::status::MAX_STATUS_PEER_ID_BYTES + 1
        ])],
        ..named.clone()
    }];
    assert!(matches!(s.check(), Err(StatusError::StringTooLong { .. })));
    s.named = vec![
        StatusVessel {
            voters: vec![voter],
            ..named.clone()
        };
        crate::status::MAX_STATUS_FAILOVER_VESSELS + 1
    ];
    assert!(matches!(s.check(), Err(StatusError::TooManyVessels { .. })));
    s.named.clear();
    s.arch = "x".repeat(MAX_STATUS_STRING_BYTES + 1);
    assert!(matches!(s.check(), Err(StatusError::StringTooLong { .. })));
}
