//! Membership: keys, domain-separated signatures, member certificates,
//! invite grants and join tokens. Plain data and pure functions (no I/O).
//!
//! Trust model in brief (docs/security.md has the whole of it):
//! - A **user key** (ed25519) belongs to a person; the mesh trusts a set of
//!   user keys (each node keeps that set, its *trust list*).
//! - A **node key** (ed25519) is a node's libp2p identity: its PeerId.
//! - A node is a **member** when it holds a [`MemberCertificate`] for its node
//!   key that verifies back to a trusted user key: either signed by that user
//!   key directly (a node enrolled on the user's own machine), or signed by a
//!   member node under an [`InviteGrant`] that the user key signed for exactly
//!   one enrolment (a device that joined with `meshnode start --join TOKEN`).
//! - Every signature covers `DOMAIN_PREFIX || domain || 0x00 || CBOR(body)`,
//!   with one [`Domain`] per message type, so that a signature made for one
//!   purpose can never be replayed as another.
//! - Nothing here reads a clock. Freshness comes from nonces that the
//!   receiver issues (see `control`), expiry of join tokens from the inviting
//!   node's monotonic clock.

use std::fmt;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::limits::{
    MAX_JOIN_TOKEN_ADDRS, MAX_JOIN_TOKEN_CHARS, MAX_MULTIADDR_BYTES, MAX_PEER_ID_BYTES,
};
use crate::snapshot::Hash;

/// Version of the certificate, grant and token formats this build writes and
/// accepts.
pub const MEMBERSHIP_VERSION: u32 = 1;

/// Every signed message starts with this, then the domain's name, then a
/// zero byte, then the CBOR body. No other protocol that might share a key
/// (libp2p's noise handshake signs `noise-libp2p-static-key:…`, gossipsub
/// signs `libp2p-pubsub:…`) starts its signed bytes with it.
pub const DOMAIN_PREFIX: &[u8] = b"meshnode/v1/";

/// What a signature is for. Each has its own context string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Domain {
    /// A user key (or an invited node) certifies a node key as a member.
    MemberCertificate,
    /// A user key lets one node enrol one more device.
    InviteGrant,
    /// A user asks a node to do something (`control::SignedRequest`).
    ControlRequest,
    /// A user asks the mesh to run a vessel (`vessel::Deployment`).
    Deployment,
    /// A node offers a vessel to another (`migrate::Offer`).
    MigrationOffer,
    /// A source node commits or aborts a migration (`migrate::Decision`).
    MigrationDecision,
    /// A user vouches for a control request's body before the node reads
    /// it (`control::HeaderAuth`).
    ControlHeader,
    /// A user key revokes a node key (`revocation::Revocation`).
    Revocation,
    /// A host ships a checkpoint to a replica (`replica::ReplicaOffer`).
    ReplicaOffer,
    /// A user opens a node's dashboard (`control::DashboardLogin`).
    DashboardLogin,
    /// A user publishes a release for the fleet (`release::SignedRelease`).
    Release,
    /// A user removes an ended vessel for good (`vessel::Tombstone`).
    Tombstone,
}

impl Domain {
    pub fn context(self) -> &'static [u8] {
        match self {
            Domain::MemberCertificate => b"member-certificate",
            Domain::InviteGrant => b"invite-grant",
            Domain::ControlRequest => b"control-request",
            Domain::Deployment => b"deployment",
            Domain::MigrationOffer => b"migration-offer",
            Domain::MigrationDecision => b"migration-decision",
            Domain::ControlHeader => b"control-header",
            Domain::Revocation => b"revocation",
            Domain::ReplicaOffer => b"replica-offer",
            Domain::DashboardLogin => b"dashboard-login",
            Domain::Release => b"release",
            Domain::Tombstone => b"tombstone",
        }
    }
}

/// The exact bytes that a signature of `domain` over `body` covers.
pub fn signed_bytes<T: Serialize>(domain: Domain, body: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(DOMAIN_PREFIX);
    out.extend_from_slice(domain.context());
    out.push(0);
    out.extend_from_slice(&crate::cbor::encode(body));
    out
}

/// Signs `body` for `domain`.
pub fn sign<T: Serialize>(key: &SigningKey, domain: Domain, body: &T) -> Signature {
    Signature(key.sign(&signed_bytes(domain, body)).to_bytes())
}

/// Checks that `signature` is `signer`'s signature of `body` for `domain`
/// (strict verification: no malleable or small-order-key signatures).
pub fn verify<T: Serialize>(
    signer: &PublicKey,
    domain: Domain,
    body: &T,
    signature: &Signature,
) -> Result<(), SignatureError> {
    let key = VerifyingKey::from_bytes(&signer.0).map_err(|_| SignatureError::BadKey)?;
    let sig = ed25519_dalek::Signature::from_bytes(&signature.0);
    key.verify_strict(&signed_bytes(domain, body), &sig)
        .map_err(|_| SignatureError::Mismatch)
}

/// Why a signature did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signing key is not a valid ed25519 public key")]
    BadKey,
    #[error("the signature does not match the signer and the signed fields")]
    Mismatch,
}

/// An ed25519 public key: a user's key or a node's key. Shown as 64 hex
/// digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl PublicKey {
    pub fn of(key: &SigningKey) -> PublicKey {
        PublicKey(key.verifying_key().to_bytes())
    }

    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses 64 hex digits (surrounding whitespace allowed).
    pub fn from_hex(s: &str) -> Option<PublicKey> {
        Hash::from_hex(s.trim()).map(|h| PublicKey(h.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}…", &self.to_hex()[..16])
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An ed25519 signature.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(pub [u8; 64]);

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sig:{}…", &hex(&self.0[..8]))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Keys and signatures travel as CBOR byte strings of exactly their length.
macro_rules! fixed_bytes_serde {
    ($ty:ident, $len:expr) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$ty, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                        write!(f, "a byte string of {} bytes", $len)
                    }
                    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<$ty, E> {
                        let arr: [u8; $len] = v
                            .try_into()
                            .map_err(|_| E::invalid_length(v.len(), &self))?;
                        Ok($ty(arr))
                    }
                }
                d.deserialize_bytes(V)
            }
        }
    };
}

fixed_bytes_serde!(PublicKey, 32);
fixed_bytes_serde!(Signature, 64);

/// A random value of 32 bytes (nonces, invite secrets) as a CBOR byte string.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Nonce(pub [u8; 32]);
fixed_bytes_serde!(Nonce, 32);

impl fmt::Debug for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nonce:{}…", &hex(&self.0[..6]))
    }
}

/// A user key's permission for one member node (`issuer_node`) to enrol one
/// device: the one that proves knowledge of the secret whose BLAKE3 hash is
/// `secret_hash`. Made by `meshnode invite` on the machine that holds the
/// user key; the secret itself goes only into the join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteGrant {
    pub body: InviteGrantBody,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteGrantBody {
    pub version: u32,
    pub user_key: PublicKey,
    pub issuer_node: PublicKey,
    pub invite_id: Nonce,
    pub secret_hash: Hash,
}

impl InviteGrant {
    pub fn sign(
        user: &SigningKey,
        issuer_node: PublicKey,
        invite_id: Nonce,
        secret_hash: Hash,
    ) -> InviteGrant {
        let body = InviteGrantBody {
            version: MEMBERSHIP_VERSION,
            user_key: PublicKey::of(user),
            issuer_node,
            invite_id,
            secret_hash,
        };
        let signature = sign(user, Domain::InviteGrant, &body);
        InviteGrant { body, signature }
    }

    /// Checks the version and the user's signature (not whether the user is
    /// trusted).
    pub fn verify(&self) -> Result<(), MembershipError> {
        if self.body.version != MEMBERSHIP_VERSION {
            return Err(MembershipError::Version {
                found: self.body.version,
                expected: MEMBERSHIP_VERSION,
            });
        }
        verify(
            &self.body.user_key,
            Domain::InviteGrant,
            &self.body,
            &self.signature,
        )
        .map_err(|source| MembershipError::Signature {
            what: "invite grant",
            source,
        })
    }
}

/// Proof that `node_key` belongs to the mesh of `user_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberCertificate {
    pub body: CertificateBody,
    /// By `user_key` when `grant` is `None`, else by `grant.issuer_node`.
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateBody {
    pub version: u32,
    pub node_key: PublicKey,
    pub user_key: PublicKey,
    /// Present when an invited node was enrolled by a member node.
    pub grant: Option<InviteGrant>,
}

/// Why a certificate (or grant) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("format version {found}, this build reads version {expected}")]
    Version { found: u32, expected: u32 },
    #[error("forged or corrupt {what}: {source}")]
    Signature {
        what: &'static str,
        source: SignatureError,
    },
    #[error("the certificate is for node key {certified}, but the peer's key is {actual}")]
    WrongNode {
        certified: PublicKey,
        actual: PublicKey,
    },
    #[error("the certificate names user key {certificate}, but its invite grant was signed by user key {grant}")]
    GrantUserMismatch {
        certificate: PublicKey,
        grant: PublicKey,
    },
    #[error("the certificate's user key {0} is not trusted by this node (see `meshnode trust`)")]
    Untrusted(PublicKey),
    #[error(
        "an endorsement is a certificate signed by the user key itself, without an invite grant"
    )]
    NotEndorsement,
}

impl MemberCertificate {
    /// A certificate signed directly by the user key: a node enrolling on
    /// the machine where the user key is.
    pub fn self_enrol(user: &SigningKey, node_key: PublicKey) -> MemberCertificate {
        let body = CertificateBody {
            version: MEMBERSHIP_VERSION,
            node_key,
            user_key: PublicKey::of(user),
            grant: None,
        };
        let signature = sign(user, Domain::MemberCertificate, &body);
        MemberCertificate { body, signature }
    }

    /// A certificate signed by a member node under an invite grant.
    pub fn by_invite(
        issuer_node: &SigningKey,
        grant: InviteGrant,
        node_key: PublicKey,
    ) -> MemberCertificate {
        let body = CertificateBody {
            version: MEMBERSHIP_VERSION,
            node_key,
            user_key: grant.body.user_key,
            grant: Some(grant),
        };
        let signature = sign(issuer_node, Domain::MemberCertificate, &body);
        MemberCertificate { body, signature }
    }

    /// Checks every signature in the chain and that it certifies
    /// `node_key`. Trust in the user key is checked by
    /// [`MemberCertificate::verify_trusted`].
    pub fn verify_for(&self, node_key: &PublicKey) -> Result<(), MembershipError> {
        let b = &self.body;
        if b.version != MEMBERSHIP_VERSION {
            return Err(MembershipError::Version {
                found: b.version,
                expected: MEMBERSHIP_VERSION,
            });
        }
        if &b.node_key != node_key {
            return Err(MembershipError::WrongNode {
                certified: b.node_key,
                actual: *node_key,
            });
        }
        let signer = match &b.grant {
            None => b.user_key,
            Some(grant) => {
                grant.verify()?;
                if grant.body.user_key != b.user_key {
                    return Err(MembershipError::GrantUserMismatch {
                        certificate: b.user_key,
                        grant: grant.body.user_key,
                    });
                }
                grant.body.issuer_node
            }
        };
        verify(&signer, Domain::MemberCertificate, b, &self.signature).map_err(|source| {
            MembershipError::Signature {
                what: "member certificate",
                source,
            }
        })
    }

    /// [`MemberCertificate::verify_for`], then that the user key is trusted.
    pub fn verify_trusted(
        &self,
        node_key: &PublicKey,
        trusted: &[PublicKey],
    ) -> Result<(), MembershipError> {
        self.verify_for(node_key)?;
        if !trusted.contains(&self.body.user_key) {
            return Err(MembershipError::Untrusted(self.body.user_key));
        }
        Ok(())
    }
}

/// Node ↔ node membership protocol (`/meshnode/member/1`): on every new
/// connection, and whenever its own certificate changes, a node sends its
/// certificate (`None` when not enrolled) and gets the peer's in return.
/// The connection's noise handshake already proves the peer holds the node
/// key, so the certificate needs no freshness of its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberRequest {
    /// "Here is mine; send me yours."
    Certificate(Option<MemberCertificate>),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MemberResponse {
    /// `None`: the node is not enrolled.
    Certificate(Option<MemberCertificate>),
}

/// What `meshnode invite` prints and `meshnode start --join` reads: where the
/// inviting node is, which invite, and the one-time secret. Expiry is not in
/// the token: the inviting node measures it on its own monotonic clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinToken {
    pub version: u32,
    /// The inviting node's PeerId (multihash bytes): the joiner dials it by
    /// this identity, so a LAN attacker cannot stand in for it.
    #[serde(with = "serde_bytes_vec")]
    pub inviter: Vec<u8>,
    /// The inviting node's addresses, as multiaddr strings.
    pub addrs: Vec<String>,
    pub invite_id: Nonce,
    pub secret: Nonce,
}

/// Text prefix of a join token, so that a token is recognisable.
pub const JOIN_TOKEN_PREFIX: &str = "mnjoin1";

/// Why a join token string could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("a join token starts with `{JOIN_TOKEN_PREFIX}` (copy the whole line that `meshnode invite` printed)")]
    Prefix,
    #[error("join token of {chars} characters, over the limit of {limit}")]
    TooLong { chars: usize, limit: usize },
    #[error("the join token is damaged (not base32): copy it again")]
    Base32,
    /// The decoder's words stay in the value (for a debugger), not in the
    /// message: a user can only copy the token again.
    #[error("the join token is damaged or cut short (it does not read as a token): copy the whole line that `meshnode invite` printed, again")]
    Decode(String),
    #[error("join token version {found}, this build reads version {expected}")]
    Version { found: u32, expected: u32 },
    #[error("the join token has {found} addresses, over the limit of {limit}")]
    TooManyAddrs { found: usize, limit: usize },
    #[error("the join token has a field over its size limit")]
    FieldTooLong,
}

impl JoinToken {
    pub fn encode(&self) -> String {
        format!(
            "{JOIN_TOKEN_PREFIX}{}",
            base32_encode(&crate::cbor::encode(self))
        )
    }

    pub fn decode(s: &str) -> Result<JoinToken, TokenError> {
        let s = s.trim();
        if s.len() > MAX_JOIN_TOKEN_CHARS {
            return Err(TokenError::TooLong {
                chars: s.len(),
                limit: MAX_JOIN_TOKEN_CHARS,
            });
        }
        let rest = s
            .strip_prefix(JOIN_TOKEN_PREFIX)
            .ok_or(TokenError::Prefix)?;
        let bytes = base32_decode(rest).ok_or(TokenError::Base32)?;
        let token: JoinToken =
            crate::cbor::decode(&bytes).map_err(|e| TokenError::Decode(e.to_string()))?;
        token.check()?;
        Ok(token)
    }

    pub fn check(&self) -> Result<(), TokenError> {
        if self.version != MEMBERSHIP_VERSION {
            return Err(TokenError::Version {
                found: self.version,
                expected: MEMBERSHIP_VERSION,
            });
        }
        if self.addrs.len() > MAX_JOIN_TOKEN_ADDRS {
            return Err(TokenError::TooManyAddrs {
                found: self.addrs.len(),
                limit: MAX_JOIN_TOKEN_ADDRS,
            });
        }
        if self.inviter.len() > MAX_PEER_ID_BYTES
            || self.addrs.iter().any(|a| a.len() > MAX_MULTIADDR_BYTES)
        {
            return Err(TokenError::FieldTooLong);
        }
        Ok(())
    }
}

/// `Vec<u8>` as a CBOR byte string: defined in the leaf module [`crate::ids`].
pub use crate::ids::serde_bytes_vec;

const BASE32_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// RFC 4648 base32, lower case, no padding: survives copy and paste, shells
/// and case-insensitive chat programs.
pub fn base32_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(BASE32_ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(BASE32_ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Inverse of [`base32_encode`]; accepts upper case too.
pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = BASE32_ALPHABET
            .iter()
            .position(|&a| a == c.to_ascii_lowercase())? as u32;
        acc = ((acc << 5) | v) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn key(seed: u8) -> SigningKey {
        SigningKey::from_bytes(&[seed; 32])
    }

    pub fn sample_grant() -> (InviteGrant, SigningKey) {
        let user = key(1);
        let inviter = key(2);
        let grant = InviteGrant::sign(
            &user,
            PublicKey::of(&inviter),
            Nonce([7; 32]),
            Hash::of(b"secret"),
        );
        (grant, inviter)
    }

    #[test]
    fn self_enrolled_certificate_verifies_and_needs_trust() {
        let user = key(1);
        let node = PublicKey::of(&key(3));
        let cert = MemberCertificate::self_enrol(&user, node);
        cert.verify_for(&node).unwrap();
        cert.verify_trusted(&node, &[PublicKey::of(&user)]).unwrap();
        assert_eq!(
            cert.verify_trusted(&node, &[PublicKey::of(&key(9))]),
            Err(MembershipError::Untrusted(PublicKey::of(&user)))
        );
    }

    #[test]
    fn certificate_for_another_node_is_refused() {
        let cert = MemberCertificate::self_enrol(&key(1), PublicKey::of(&key(3)));
        let err = cert.verify_for(&PublicKey::of(&key(4))).unwrap_err();
        assert!(matches!(err, MembershipError::WrongNode { .. }), "{err}");
    }

    #[test]
    fn wrong_key_tampered_field_and_wrong_domain_are_refused() {
        let user = key(1);
        let node = PublicKey::of(&key(3));
        // Wrong key: signed by another key but claims `user`.
        let mut forged = MemberCertificate::self_enrol(&key(5), node);
        forged.body.user_key = PublicKey::of(&user);
        let err = forged.verify_for(&node).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("forged or corrupt member certificate"),
            "{err}"
        );

        // Tampered field: the node key changed after signing.
        let mut tampered = MemberCertificate::self_enrol(&user, node);
        let other = PublicKey::of(&key(4));
        tampered.body.node_key = other;
        assert!(matches!(
            tampered.verify_for(&other),
            Err(MembershipError::Signature { .. })
        ));

        // Wrong domain: a valid signature over the same body, made for a
        // control request, is not a certificate signature.
        let body = CertificateBody {
            version: MEMBERSHIP_VERSION,
            node_key: node,
            user_key: PublicKey::of(&user),
            grant: None,
        };
        let signature = sign(&user, Domain::ControlRequest, &body);
        let cross = MemberCertificate { body, signature };
        assert!(matches!(
            cross.verify_for(&node),
            Err(MembershipError::Signature { .. })
        ));
    }

    #[test]
    fn invited_certificate_chain() {
        let (grant, inviter) = sample_grant();
        let joiner = PublicKey::of(&key(6));
        let cert = MemberCertificate::by_invite(&inviter, grant.clone(), joiner);
        cert.verify_trusted(&joiner, &[PublicKey::of(&key(1))])
            .unwrap();

        // Signed by a node other than the grant's issuer.
        let bad = MemberCertificate::by_invite(&key(8), grant.clone(), joiner);
        assert!(matches!(
            bad.verify_for(&joiner),
            Err(MembershipError::Signature {
                what: "member certificate",
                ..
            })
        ));

        // A grant whose secret hash was changed no longer verifies.
        let mut g2 = grant.clone();
        g2.body.secret_hash = Hash::of(b"other");
        let bad = MemberCertificate::by_invite(&inviter, g2, joiner);
        assert!(matches!(
            bad.verify_for(&joiner),
            Err(MembershipError::Signature {
                what: "invite grant",
                ..
            })
        ));

        // A certificate that claims another user than its grant.
        let mut c = MemberCertificate::by_invite(&inviter, grant, joiner);
        c.body.user_key = PublicKey::of(&key(9));
        c.signature = sign(&inviter, Domain::MemberCertificate, &c.body);
        assert!(matches!(
            c.verify_for(&joiner),
            Err(MembershipError::GrantUserMismatch { .. })
        ));
    }

    #[test]
    fn join_token_round_trip_and_damage() {
        let t = JoinToken {
            version: MEMBERSHIP_VERSION,
            inviter: vec![0, 36, 8, 1, 18, 32, 1, 2, 3],
            addrs: vec!["/ip4/127.0.0.1/tcp/7646".into()],
            invite_id: Nonce([1; 32]),
            secret: Nonce([2; 32]),
        };
        let s = t.encode();
        assert!(s.starts_with(JOIN_TOKEN_PREFIX));
        assert_eq!(JoinToken::decode(&s).unwrap(), t);
        assert_eq!(
            JoinToken::decode(&s.to_uppercase().replacen("MNJOIN1", "mnjoin1", 1)).unwrap(),
            t
        );
        assert_eq!(JoinToken::decode("hello"), Err(TokenError::Prefix));
        assert_eq!(JoinToken::decode("mnjoin1!!"), Err(TokenError::Base32));
        assert!(matches!(
            JoinToken::decode(&s[..s.len() - 10]),
            Err(TokenError::Decode(_))
        ));
        let long = format!("{JOIN_TOKEN_PREFIX}{}", "a".repeat(MAX_JOIN_TOKEN_CHARS));
        assert!(matches!(
            JoinToken::decode(&long),
            Err(TokenError::TooLong { .. })
        ));
    }

    #[test]
    fn base32_round_trips() {
        for n in 0..40 {
            let v: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base32_decode(&base32_encode(&v)).unwrap(), v);
        }
    }
}
