use super::*;
use crate::ids::VesselId;
use crate::limits::{MAX_STATUS_RTTS, MAX_STATUS_STRING_BYTES, MAX_STATUS_VESSELS};

/// A phase travels as the string this field used to be, and a newer
/// node's phase decodes as `Unknown` rather than failing the report.
#[test]
fn phases_travel_as_their_old_names() {
    for p in [
        MigrationPhase::Warming,
        MigrationPhase::Final,
        MigrationPhase::Committed,
        MigrationPhase::Done,
        MigrationPhase::Aborted,
    ] {
        let bytes = crate::cbor::encode(&p);
        assert_eq!(bytes, crate::cbor::encode(&p.name().to_string()));
        assert_eq!(crate::cbor::decode::<MigrationPhase>(&bytes).unwrap(), p);
    }
    let newer = crate::cbor::encode(&"replicating".to_string());
    assert_eq!(
        crate::cbor::decode::<MigrationPhase>(&newer).unwrap(),
        MigrationPhase::Unknown
    );
    assert!(MigrationPhase::Done.is_over() && !MigrationPhase::Unknown.is_over());
}

/// A liveness state travels as its name; a newer node's state decodes
/// as `Unknown` rather than failing a `peers` listing.
#[test]
fn liveness_states_travel_as_names() {
    for s in [
        LivenessState::Up,
        LivenessState::Unreachable,
        LivenessState::Down,
    ] {
        let bytes = crate::cbor::encode(&s);
        assert_eq!(bytes, crate::cbor::encode(&s.name().to_string()));
        assert_eq!(crate::cbor::decode::<LivenessState>(&bytes).unwrap(), s);
    }
    let newer = crate::cbor::encode(&"flapping".to_string());
    assert_eq!(
        crate::cbor::decode::<LivenessState>(&newer).unwrap(),
        LivenessState::Unknown
    );
}

/// The fullest status a node sends (every list at its bound, every
/// string at its longest) still fits one gossip message.
#[test]
fn the_fullest_status_fits_a_gossip_message() {
    let long = |n: usize| "x".repeat(n);
    let status = NodeStatus {
        version: CONTROL_VERSION,
        arch: long(MAX_STATUS_STRING_BYTES),
        os: long(MAX_STATUS_STRING_BYTES),
        free_memory_bytes: Some(u64::MAX),
        total_memory_bytes: Some(u64::MAX),
        load_milli: Some(u32::MAX),
        cpus: u32::MAX,
        vessels: vec![long(16); MAX_STATUS_VESSELS],
        rtts: vec![
            PeerRtt {
                peer: long(MAX_STATUS_STRING_BYTES),
                rtt_us: u64::MAX,
            };
            MAX_STATUS_RTTS
        ],
        draining: true,
        services: vec![],
        named: (0..MAX_STATUS_NAMED_VESSELS)
            .map(|i| {
                // The first ones with every voter and replica a
                // status may name, each id at its longest.
                let peers = if i < crate::status::MAX_STATUS_FAILOVER_VESSELS {
                    let id = PeerIdBytes(vec![0xff; crate::status::MAX_STATUS_PEER_ID_BYTES]);
                    vec![id; crate::limits::MAX_VOTERS_PER_VESSEL]
                } else {
                    Vec::new()
                };
                StatusVessel {
                    id: VesselId([0xff; 8]),
                    name: long(crate::limits::MAX_NAME_BYTES),
                    epoch: u64::MAX,
                    voters: peers.clone(),
                    replicas: peers,
                }
            })
            .collect(),
        name: Some("n".repeat(crate::status::MAX_NODE_NAME_BYTES)),
        software: None,
        coordinate: None,
        refresh_intervals: None,
    };
    status.check().unwrap();
    let back: NodeStatus = crate::cbor::decode(&crate::cbor::encode(&status)).unwrap();
    assert_eq!(back, status);
    // A certificate with an invite grant is under 1 KiB.
    let bytes = crate::cbor::encode(&status).len() + 1024;
    assert!(
        bytes < crate::limits::MAX_STATUS_MESSAGE_BYTES,
        "{bytes} bytes"
    );
}
