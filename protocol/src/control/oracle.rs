//! The fuzz oracle for every message on the mesh's wire.

use crate::membership::{JoinToken, MemberRequest, MemberResponse, PublicKey};
use crate::status::StatusMessage;

use super::{Command, ControlHeader, ControlRequest, ControlResponse};

/// Fuzz oracle for every message of the mesh's wire (control requests and
/// responses, membership messages, gossiped status, join tokens): decoding
/// arbitrary bytes never panics, verification of whatever decodes never
/// panics, and whatever decodes re-encodes to an equal value. Used by the
/// cargo-fuzz target `mesh_messages` and by seeded smoke tests. Returns
/// whether `data` decoded as any of them (the smoke test counts them).
pub fn mesh_messages_oracle(data: &[u8]) -> bool {
    use crate::fuzzing::round_trip;
    let node = PublicKey([9; 32]);
    let mut decoded = false;
    match round_trip::<ControlRequest>(data) {
        Some(ControlRequest::Signed(r)) => {
            decoded = true;
            let _ = r.verify_for(&node);
            match &r.body.command {
                Command::CreateInvite { grant, .. } => {
                    let _ = grant.verify();
                }
                Command::Revoke { revocation } => {
                    let _ = revocation.verify();
                }
                Command::Endorse { certificates } => {
                    for c in certificates {
                        let _ = crate::revocation::verify_endorsement(c);
                    }
                }
                _ => {}
            }
            let header = ControlRequest::Signed(r.clone()).header(data.len() as u64);
            let auth = header
                .auth
                .as_ref()
                .expect("a signed request's header vouches");
            let _ = auth.verify_for(&node);
            assert!(ControlRequest::Signed(r).matches(auth));
        }
        Some(_) => decoded = true,
        None => {}
    }
    // The header every control request is sent behind.
    if let Some(h) = round_trip::<ControlHeader>(data) {
        decoded = true;
        if let Some(a) = &h.auth {
            let _ = a.verify_for(&node);
        }
    }
    match round_trip::<ControlResponse>(data) {
        Some(ControlResponse::Joined(j)) => {
            decoded = true;
            let _ = j.certificate.verify_trusted(&node, &j.trusted_users);
        }
        Some(_) => decoded = true,
        None => {}
    }
    match round_trip::<MemberResponse>(data) {
        Some(MemberResponse::Certificate(Some(c))) => {
            decoded = true;
            let _ = c.verify_for(&node);
        }
        Some(_) => decoded = true,
        None => {}
    }
    match round_trip::<MemberRequest>(data) {
        Some(MemberRequest::Certificate(Some(c))) => {
            decoded = true;
            let _ = c.verify_for(&node);
        }
        Some(_) => decoded = true,
        None => {}
    }
    if let Some(m) = round_trip::<StatusMessage>(data) {
        decoded = true;
        let _ = m.status.check();
        let _ = m.certificate.verify_for(&m.certificate.body.node_key);
    }
    if let Some(t) = round_trip::<JoinToken>(data) {
        decoded = true;
        let _ = t.check();
    }
    decoded |= crate::revocation::trust_notice_oracle(data);
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(t) = JoinToken::decode(s) {
            decoded = true;
            assert_eq!(JoinToken::decode(&t.encode()).as_ref(), Ok(&t));
        }
    }
    decoded
}
