//! The trust ledger (issue 14, item 1): what this node has seen that a
//! certificate alone does not say, persisted in the data directory so that
//! a restart does not forget it.
//!
//! - **Invite uses.** An invite grant is user-signed and then public inside
//!   the invitee's certificate, so a thief with the inviting node's key can
//!   sign any number of certificates under it. Every certificate that
//!   verifies back to a trusted user is recorded by invite id; once two node
//!   keys appear under one invite, both are refused. No consensus is
//!   needed: certificates travel with every connection and every status.
//! - **Revocations** (`meshnode revoke`), user-signed: the node key is
//!   refused and cut off, and so is every certificate it issued.
//! - **Endorsements** (`meshnode endorse`): certificates the user key signed
//!   itself for nodes a revoked node had enrolled; they take precedence
//!   over the node's invite certificate.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use protocol::limits::{MAX_ENDORSEMENTS, MAX_INVITES_SEEN, MAX_REVOCATIONS};
use protocol::membership::{MemberCertificate, Nonce, PublicKey};
use protocol::revocation::{verify_endorsement, Revocation, TrustNotice};
use serde::{Deserialize, Serialize};

use crate::daemon::datadir::write_atomic;
use crate::identity::peer_id_of;

/// The ledger's file in the data directory.
pub const LEDGER_FILE: &str = "trust-ledger.cbor";

/// Largest ledger file read back: [`MAX_INVITES_SEEN`] uses of about 200
/// bytes plus a full trust notice, with room to spare.
const MAX_LEDGER_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Node keys kept per invite: two prove the reuse; a few more name the
/// other minted keys in `revoke`'s list.
const MAX_KEYS_PER_INVITE: usize = 8;

/// Format version of the ledger file.
const LEDGER_VERSION: u32 = 1;

/// Why the ledger could not be read, written or changed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot read the trust ledger {path}: {reason} (it holds the mesh's revocations; move it away to start with an empty one, which the mesh's gossip refills)")]
    Read { path: PathBuf, reason: String },
    #[error("cannot save the trust ledger: {0}")]
    Write(String),
    #[error("{0}")]
    Refused(String),
    #[error("this mesh holds {limit} {what} already (the limit)")]
    Full { what: &'static str, limit: usize },
}

/// The node keys seen certified under one invite.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct InviteUse {
    issuer: PublicKey,
    nodes: Vec<PublicKey>,
}

#[derive(Serialize, Deserialize)]
struct LedgerFile {
    version: u32,
    invites: Vec<(Nonce, InviteUse)>,
    revocations: Vec<Revocation>,
    endorsements: Vec<MemberCertificate>,
}

/// What this node knows about invites, revocations and endorsements.
#[derive(Debug, Default)]
pub struct Ledger {
    path: Option<PathBuf>,
    invites: BTreeMap<[u8; 32], InviteUse>,
    revoked: BTreeMap<PublicKey, Revocation>,
    endorsed: BTreeMap<PublicKey, MemberCertificate>,
}

/// A node key shown as its PeerId (what `peers` lists), else as hex.
pub fn show_key(key: &PublicKey) -> String {
    peer_id_of(key).map_or_else(|| key.to_hex(), |p| p.to_string())
}

impl Ledger {
    /// Reads the ledger in `dir` (none yet: an empty one). Every entry is
    /// checked again: the file is not trusted more than the network.
    pub fn load(dir: &Path) -> Result<Ledger, LedgerError> {
        let path = dir.join(LEDGER_FILE);
        let mut ledger = Ledger {
            path: Some(path.clone()),
            ..Ledger::default()
        };
        let read_err = |reason: String| LedgerError::Read {
            path: path.clone(),
            reason,
        };
        let len = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ledger),
            Err(e) => return Err(read_err(e.to_string())),
        };
        if len > MAX_LEDGER_FILE_BYTES {
            return Err(read_err(format!(
                "{len} bytes, over the limit of {MAX_LEDGER_FILE_BYTES}"
            )));
        }
        let bytes = std::fs::read(&path).map_err(|e| read_err(e.to_string()))?;
        let file: LedgerFile =
            protocol::cbor::decode(&bytes).map_err(|e| read_err(e.to_string()))?;
        if file.version != LEDGER_VERSION {
            return Err(read_err(format!(
                "format version {}, this build reads {LEDGER_VERSION}",
                file.version
            )));
        }
        for (id, mut u) in file.invites.into_iter().take(MAX_INVITES_SEEN) {
            u.nodes.truncate(MAX_KEYS_PER_INVITE);
            ledger.invites.insert(id.0, u);
        }
        for r in file.revocations.into_iter().take(MAX_REVOCATIONS) {
            if r.verify().is_ok() {
                ledger.revoked.insert(r.body.node_key, r);
            }
        }
        for c in file.endorsements.into_iter().take(MAX_ENDORSEMENTS) {
            if verify_endorsement(&c).is_ok() {
                ledger.endorsed.insert(c.body.node_key, c);
            }
        }
        Ok(ledger)
    }

    fn save(&self) -> Result<(), LedgerError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = LedgerFile {
            version: LEDGER_VERSION,
            invites: self
                .invites
                .iter()
                .map(|(id, u)| (Nonce(*id), u.clone()))
                .collect(),
            revocations: self.revoked.values().cloned().collect(),
            endorsements: self.endorsed.values().cloned().collect(),
        };
        write_atomic(path, &protocol::cbor::encode(&file))
            .map_err(|e| LedgerError::Write(e.to_string()))
    }

    /// Records `cert` (which verified back to a trusted user) under its
    /// invite. Returns a line for the log when this makes the invite
    /// enrol a second node key (every holder is then refused).
    pub fn note_certificate(&mut self, cert: &MemberCertificate) -> Option<String> {
        let grant = cert.body.grant.as_ref()?;
        let id = grant.body.invite_id.0;
        let node = cert.body.node_key;
        if !self.invites.contains_key(&id) && self.invites.len() >= MAX_INVITES_SEEN {
            return None;
        }
        let entry = self.invites.entry(id).or_insert_with(|| InviteUse {
            issuer: grant.body.issuer_node,
            nodes: Vec::new(),
        });
        if entry.nodes.contains(&node) || entry.nodes.len() >= MAX_KEYS_PER_INVITE {
            return None;
        }
        entry.nodes.push(node);
        let reused = entry.nodes.len() > 1;
        let line = reused.then(|| {
            format!(
                "invite {:?} enrolled more than one node key ({}); all of them are refused: was the inviting node {} stolen? (`meshnode revoke`, then `meshnode endorse` the honest ones)",
                grant.body.invite_id,
                entry.nodes.iter().map(show_key).collect::<Vec<_>>().join(", "),
                show_key(&entry.issuer),
            )
        });
        // Best effort: the certificates come again with every status.
        let _ = self.save();
        line
    }

    /// Why `cert` (already verified, for `node`) is refused by what this
    /// node has seen, if it is.
    pub fn refusal(&self, node: &PublicKey, cert: &MemberCertificate) -> Option<String> {
        let grant = cert.body.grant.as_ref()?;
        let issuer = grant.body.issuer_node;
        if self.revoked.contains_key(&issuer) {
            return Some(format!(
                "it was enrolled by node {}, which was revoked; if it is yours, `meshnode endorse {}`",
                show_key(&issuer),
                show_key(node)
            ));
        }
        let others: Vec<String> = self
            .invites
            .get(&grant.body.invite_id.0)?
            .nodes
            .iter()
            .filter(|k| *k != node)
            .map(show_key)
            .collect();
        (!others.is_empty()).then(|| {
            format!(
                "its invite {:?} enrolled more than one node key (also {}): an invite enrols one node",
                grant.body.invite_id,
                others.join(", ")
            )
        })
    }

    pub fn revocation(&self, node: &PublicKey) -> Option<&Revocation> {
        self.revoked.get(node)
    }

    pub fn endorsement(&self, node: &PublicKey) -> Option<&MemberCertificate> {
        self.endorsed.get(node)
    }

    /// Adds a revocation by a trusted user key. `Ok(false)`: known already.
    pub fn revoke(&mut self, r: Revocation, trusted: &[PublicKey]) -> Result<bool, LedgerError> {
        r.verify()
            .map_err(|e| LedgerError::Refused(e.to_string()))?;
        if !trusted.contains(&r.body.user_key) {
            return Err(LedgerError::Refused(format!(
                "the revocation's user key {} is not trusted by this node",
                r.body.user_key
            )));
        }
        if self.revoked.contains_key(&r.body.node_key) {
            return Ok(false);
        }
        if self.revoked.len() >= MAX_REVOCATIONS {
            return Err(LedgerError::Full {
                what: "revocations",
                limit: MAX_REVOCATIONS,
            });
        }
        let node = r.body.node_key;
        self.revoked.insert(node, r);
        self.endorsed.remove(&node);
        self.save()?;
        Ok(true)
    }

    /// Adds an endorsement by a trusted user key. `Ok(false)`: known
    /// already.
    pub fn endorse(
        &mut self,
        cert: MemberCertificate,
        trusted: &[PublicKey],
    ) -> Result<bool, LedgerError> {
        verify_endorsement(&cert).map_err(|e| LedgerError::Refused(e.to_string()))?;
        let node = cert.body.node_key;
        if !trusted.contains(&cert.body.user_key) {
            return Err(LedgerError::Refused(format!(
                "the endorsement's user key {} is not trusted by this node",
                cert.body.user_key
            )));
        }
        if self.revoked.contains_key(&node) {
            return Err(LedgerError::Refused(format!(
                "node {} is revoked; a revoked node cannot be endorsed",
                show_key(&node)
            )));
        }
        if self.endorsed.get(&node) == Some(&cert) {
            return Ok(false);
        }
        if !self.endorsed.contains_key(&node) && self.endorsed.len() >= MAX_ENDORSEMENTS {
            return Err(LedgerError::Full {
                what: "endorsements",
                limit: MAX_ENDORSEMENTS,
            });
        }
        self.endorsed.insert(node, cert);
        self.save()?;
        Ok(true)
    }

    /// The node keys `issuer` enrolled, as seen in their certificates.
    pub fn enrolled_by(&self, issuer: &PublicKey) -> Vec<PublicKey> {
        let mut out: Vec<PublicKey> = self
            .invites
            .values()
            .filter(|u| &u.issuer == issuer)
            .flat_map(|u| u.nodes.iter().copied())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Everything to gossip.
    pub fn notice(&self) -> TrustNotice {
        TrustNotice {
            revocations: self.revoked.values().cloned().collect(),
            endorsements: self.endorsed.values().cloned().collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty() && self.endorsed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;
    use protocol::membership::InviteGrant;
    use protocol::snapshot::Hash;

    fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    fn invited(issuer: &SigningKey, node: u8) -> MemberCertificate {
        let grant = InviteGrant::sign(
            &key(1),
            PublicKey::of(issuer),
            Nonce([5; 32]),
            Hash::of(b"secret"),
        );
        MemberCertificate::by_invite(issuer, grant, PublicKey::of(&key(node)))
    }

    #[test]
    fn a_second_key_under_one_invite_refuses_both_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::load(dir.path()).unwrap();
        let (d, m) = (invited(&key(2), 3), invited(&key(2), 4));
        assert!(l.note_certificate(&d).is_none());
        assert!(l.refusal(&d.body.node_key, &d).is_none());
        let line = l.note_certificate(&m).expect("reuse reported");
        assert!(line.contains("enrolled more than one node key"), "{line}");
        for c in [&d, &m] {
            let why = l.refusal(&c.body.node_key, c).expect("refused");
            assert!(why.contains("enrolled more than one node key"), "{why}");
        }
        let l = Ledger::load(dir.path()).unwrap();
        assert!(l.refusal(&d.body.node_key, &d).is_some());
        assert_eq!(l.enrolled_by(&PublicKey::of(&key(2))).len(), 2);
    }

    #[test]
    fn revocation_voids_issued_certificates_and_endorsement_needs_trust() {
        let dir = tempfile::tempdir().unwrap();
        let mut l = Ledger::load(dir.path()).unwrap();
        let user = [PublicKey::of(&key(1))];
        let d = invited(&key(2), 3);
        l.note_certificate(&d);
        let r = Revocation::sign(&key(1), PublicKey::of(&key(2)));
        assert!(matches!(
            l.revoke(r.clone(), &[PublicKey::of(&key(9))]),
            Err(LedgerError::Refused(_))
        ));
        assert!(l.revoke(r.clone(), &user).unwrap());
        assert!(!l.revoke(r, &user).unwrap());
        let why = l.refusal(&d.body.node_key, &d).unwrap();
        assert!(why.contains("which was revoked"), "{why}");
        // Endorsing the revoked node itself is refused; D is fine.
        let bad = MemberCertificate::self_enrol(&key(1), PublicKey::of(&key(2)));
        assert!(l.endorse(bad, &user).is_err());
        let good = MemberCertificate::self_enrol(&key(1), d.body.node_key);
        assert!(l.endorse(good, &user).unwrap());
        let l = Ledger::load(dir.path()).unwrap();
        assert!(l.revocation(&PublicKey::of(&key(2))).is_some());
        assert!(l.endorsement(&d.body.node_key).is_some());
        assert_eq!(l.notice().revocations.len(), 1);
    }

    #[test]
    fn a_damaged_ledger_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LEDGER_FILE), b"\xff\x00junk").unwrap();
        let err = Ledger::load(dir.path()).unwrap_err().to_string();
        assert!(err.starts_with("cannot read the trust ledger"), "{err}");
    }
}
