use super::tests::sample_request;
use super::*;
use crate::fuzzing::{mutate, SplitMix64};
use crate::ids::VesselId;
use crate::membership::tests::{key, sample_grant};
use crate::membership::{JoinToken, MemberCertificate, MemberRequest, MemberResponse};

fn samples() -> Vec<Vec<u8>> {
    let (grant, inviter) = sample_grant();
    let cert = MemberCertificate::by_invite(&inviter, grant.clone(), PublicKey::of(&key(6)));
    let status = NodeStatus {
        version: CONTROL_VERSION,
        arch: "aarch64".into(),
        os: "linux".into(),
        free_memory_bytes: Some(123),
        total_memory_bytes: None,
        load_milli: Some(250),
        cpus: 4,
        vessels: vec!["v1".into()],
        rtts: vec![PeerRtt {
            peer: "12D3KooW".into(),
            rtt_us: 5000,
        }],
        draining: true,
        services: vec![],
        named: vec![StatusVessel {
            id: VesselId([1; 8]),
            name: "kv".into(),
            epoch: 3,
            voters: vec![PeerIdBytes(vec![2; 38])],
            replicas: vec![PeerIdBytes(vec![3; 38])],
        }],
        name: Some("kitchen-pi".into()),
        software: None,
        coordinate: None,
        refresh_intervals: None,
    };
    let token = JoinToken {
        version: crate::membership::MEMBERSHIP_VERSION,
        inviter: vec![1, 2, 3],
        addrs: vec!["/ip4/127.0.0.1/udp/1/quic-v1".into()],
        invite_id: Nonce([3; 32]),
        secret: Nonce([4; 32]),
    };
    let mut invite = sample_request();
    invite.body.command = Command::CreateInvite {
        grant,
        ttl_secs: 60,
    };
    let revocation = crate::revocation::Revocation::sign(&key(1), PublicKey::of(&key(2)));
    let endorsement = MemberCertificate::self_enrol(&key(1), PublicKey::of(&key(3)));
    let mut revoke = sample_request();
    revoke.body.command = Command::Revoke {
        revocation: revocation.clone(),
    };
    let mut endorse = sample_request();
    endorse.body.command = Command::Endorse {
        certificates: vec![endorsement.clone()],
    };
    let header = ControlRequest::Signed(Box::new(sample_request())).header(300);
    vec![
        crate::cbor::encode(&ControlRequest::Signed(Box::new(sample_request()))),
        crate::cbor::encode(&ControlRequest::Signed(Box::new(invite))),
        crate::cbor::encode(&header),
        crate::cbor::encode(&ControlRequest::Signed(Box::new(revoke))),
        crate::cbor::encode(&ControlRequest::Signed(Box::new(endorse))),
        crate::cbor::encode(&crate::revocation::TrustNotice {
            revocations: vec![revocation],
            endorsements: vec![endorsement],
        }),
        crate::cbor::encode(&ControlResponse::SignFor {
            node: "12D3KooWb".into(),
            node_key: PublicKey::of(&key(2)),
            nonce: Nonce([6; 32]),
        }),
        crate::cbor::encode(&ControlResponse::Revoked {
            node: "12D3KooWa".into(),
            enrolled: vec!["12D3KooWb".into()],
        }),
        crate::cbor::encode(&ControlRequest::Join(JoinRequest {
            invite_id: Nonce([1; 32]),
            secret: Nonce([2; 32]),
        })),
        crate::cbor::encode(&ControlResponse::Joined(Box::new(JoinAccepted {
            certificate: cert.clone(),
            trusted_users: vec![PublicKey::of(&key(1))],
        }))),
        crate::cbor::encode(&MemberResponse::Certificate(Some(cert.clone()))),
        crate::cbor::encode(&MemberRequest::Certificate(Some(cert.clone()))),
        crate::cbor::encode(&StatusMessage {
            certificate: cert,
            status,
        }),
        crate::cbor::encode(&token),
        token.encode().into_bytes(),
        crate::cbor::encode(&ControlResponse::Refused(Refusal::new(
            RefusalCode::Untrusted,
            "user key … is not trusted by this node",
        ))),
        crate::cbor::encode(&ControlResponse::Migration(MigrationReport {
            vessel: VesselId([4; 8]),
            from: "12D3KooWa".into(),
            to: "12D3KooWb".into(),
            phase: MigrationPhase::Committed,
            rounds: 3,
            bytes_sent: 1 << 20,
            chunks_sent: 16,
            chunks_skipped: 2,
            final_chunks_sent: 1,
            downtime_us: Some(1500),
            total_ms: 40,
            error: None,
            step_chunks: 4,
            step_chunks_sent: 2,
        })),
    ]
}

/// Measured (seed 0x5eed_0004): 979 of 12,000 decode as some mesh
/// message, 81 per mille; the floor is half that.
const MESH_MIN_DECODED_PER_MILLE: usize = 40;

/// Seeded smoke run of the `mesh_messages` fuzz target: mutations of each
/// valid message, a share of which must still decode. A failure prints
/// the seed and case to replay.
#[test]
fn mesh_messages_survive_seeded_mutations() {
    let samples = samples();
    for (i, s) in samples.iter().enumerate() {
        assert!(mesh_messages_oracle(s), "sample {i} decodes unmutated");
    }
    crate::fuzzing::write_seeds("mesh_messages", &samples);
    let seed = 0x5eed_0004;
    let mut rng = SplitMix64(seed);
    let cases = 12_000;
    let mut decoded = 0;
    for case in 0..cases {
        let valid = &samples[case % samples.len()];
        let input = mutate(&mut rng, valid);
        let result = std::panic::catch_unwind(|| mesh_messages_oracle(&input));
        match result {
            Ok(true) => decoded += 1,
            Ok(false) => {}
            Err(_) => panic!("seed {seed:#x} case {case} panicked on {input:02x?}"),
        }
    }
    eprintln!("mesh messages: {decoded} of {cases} mutated inputs decoded");
    crate::fuzzing::assert_decoded_share(
        "mesh messages",
        decoded,
        cases,
        MESH_MIN_DECODED_PER_MILLE,
    );
}
