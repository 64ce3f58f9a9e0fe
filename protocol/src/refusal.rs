//! Refusals: why a node will not do what a peer or the CLI asked, as a
//! code a program can act on plus a detail for a human. Both the vessel
//! protocol (`PeerResponse::Refused`) and the control protocol
//! (`ControlResponse::Refused`) carry a [`Refusal`]; one enum serves both,
//! because a control command forwarded to another node comes back to the
//! CLI with that node's code.
//!
//! **Forward compatibility.** A code travels as its name, a CBOR text
//! string (`"stale-epoch"`), not as an enum tag. A node that decodes a
//! name it does not know (a newer peer's code) gets
//! [`RefusalCode::Unknown`] and the detail intact, instead of failing to
//! decode the whole answer; it treats such a refusal as final (nothing is
//! retried on a code it does not know). New codes are therefore added
//! freely; a code's name never changes meaning once released.
//!
//! This module imports nothing of the crate (its tests use `cbor`).

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! refusal_codes {
    ($( $(#[doc = $doc:expr])+ $variant:ident = $name:literal, )+) => {
        /// Why a request was refused: see the table in docs/protocol.md
        /// ("Refusal codes").
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(into = "String", from = "String")]
        pub enum RefusalCode {
            $( $(#[doc = $doc])+ $variant, )+
            /// A code this build does not know (from a newer node). Never
            /// sent; decoded from any unknown name.
            Unknown,
        }

        impl RefusalCode {
            /// Every code this build sends (all but `Unknown`).
            pub const ALL: &'static [RefusalCode] = &[$(RefusalCode::$variant),+];

            /// The code's name on the wire and in messages.
            pub fn name(self) -> &'static str {
                match self {
                    $(RefusalCode::$variant => $name,)+
                    RefusalCode::Unknown => "unknown",
                }
            }

            /// The code named `name`, or `Unknown`.
            pub fn from_name(name: &str) -> RefusalCode {
                match name {
                    $($name => RefusalCode::$variant,)+
                    _ => RefusalCode::Unknown,
                }
            }
        }
    };
}

refusal_codes! {
    /// The sender is not a member of this mesh (no certificate this node
    /// trusts).
    NotMember = "not-member",
    /// A message version this node does not speak.
    Version = "version",
    /// A signature does not verify, or a signed message names another
    /// sender than the one that sent it.
    Forged = "forged",
    /// The message is addressed to another node.
    Misdirected = "misdirected",
    /// A command that acts on a vessel for the user came from a member node
    /// without the user's signature: a member's word is not the user's.
    Unsigned = "unsigned",
    /// A nonce this node did not issue to this sender, or one already used.
    Replayed = "replayed",
    /// A nonce older than its time to live; ask for a new one.
    NonceExpired = "nonce-expired",
    /// The user key (of the request or of a vessel's deployment) is not in
    /// this node's trust list.
    Untrusted = "untrusted",
    /// No such vessel (on this node, or in the mesh).
    UnknownVessel = "unknown-vessel",
    /// The vessel is known here but this node does not run it (it left,
    /// ended, or waits for a commit).
    NotOwner = "not-owner",
    /// An epoch not above the one this node knows for the vessel.
    StaleEpoch = "stale-epoch",
    /// Busy with the same thing (the vessel is migrating, or this node
    /// receives as many migrations as it takes): retry later.
    Busy = "busy",
    /// This node runs as many vessels as it may.
    Full = "full",
    /// A vessel with this id exists already.
    Exists = "exists",
    /// A mount names a directory this node does not map.
    MissingMount = "missing-mount",
    /// Chunks that the request needs are not here (not uploaded, not sent).
    MissingChunks = "missing-chunks",
    /// Bytes that do not hash to the name they were sent under.
    Tampered = "tampered",
    /// A chunk this migration did not ask for.
    UnexpectedChunk = "unexpected-chunk",
    /// No such migration: none in progress from this sender, nothing
    /// prepared for this commit, or none started on this node.
    NoMigration = "no-migration",
    /// The node is not being drained.
    NotDraining = "not-draining",
    /// Over a named limit (`protocol::limits`).
    Limit = "limit",
    /// Malformed: an image, manifest, module or frame that does not decode
    /// or does not pass its checks.
    Invalid = "invalid",
    /// An argument that cannot be done as asked (not a PeerId, the vessel
    /// is there already, the last trusted key, …).
    BadArgument = "bad-argument",
    /// This node is not enrolled in a mesh yet.
    NotEnrolled = "not-enrolled",
    /// A join token this node did not issue (or forgot in a restart).
    UnknownToken = "unknown-token",
    /// A join token already used by another device.
    TokenUsed = "token-used",
    /// A join token past its time to live.
    TokenExpired = "token-expired",
    /// A join token whose secret does not match.
    WrongSecret = "wrong-secret",
    /// The node a command was forwarded to could not be reached.
    Unreachable = "unreachable",
    /// This node failed to do it (a disk error, a task that died, an answer
    /// of the wrong kind from a peer).
    Internal = "internal",
    /// A voter will not vote for a takeover yet: its own grant of the
    /// lease has not run out, or it restarted less than a lease ago (it
    /// forgot its grants). Ask again later.
    LeaseHeld = "lease-held",
    /// This node is not a voter of the vessel (or serves no lease votes).
    NotVoter = "not-voter",
    /// A vessel of that name runs in the mesh already (`deploy --name`):
    /// a second one would make the name ambiguous for every command.
    NameTaken = "name-taken",
    /// Another vessel serves that service port already (`deploy --port`):
    /// the mesh's entries would carry its clients to one of the two.
    PortTaken = "port-taken",
    /// The vessel still runs: a command for ended vessels (`rm`) was
    /// asked of one that does not (stop it first).
    StillRunning = "still-running",
    /// No kept release has that id or version (`upgrade`).
    UnknownRelease = "unknown-release",
    /// The release is older than the version the node runs, and the roll
    /// did not allow a downgrade.
    Downgrade = "downgrade",
    /// A release's binary failed its checks: its hash, its size, its CPU,
    /// its marker, or it does not run.
    BadRelease = "bad-release",
    /// An upgrade is already under way here (on probation, or restarting).
    UpgradePending = "upgrade-pending",
}

impl fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<RefusalCode> for String {
    fn from(code: RefusalCode) -> String {
        code.name().to_string()
    }
}

impl From<String> for RefusalCode {
    fn from(name: String) -> RefusalCode {
        RefusalCode::from_name(&name)
    }
}

/// A refusal as it travels: the code, and one line for a human.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: RefusalCode,
    pub detail: String,
    /// With `stale-epoch` for an offer: the epoch the refusing node records
    /// for the vessel, so that the source's next attempt can offer above it
    /// (a `Prepared` record whose abort never came holds an epoch that the
    /// source's own record does not show). Absent in every other refusal,
    /// and from older nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub known_epoch: Option<u64>,
}

impl Refusal {
    pub fn new(code: RefusalCode, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            detail: detail.into(),
            known_epoch: None,
        }
    }

    /// This refusal, naming the epoch the refusing node records.
    pub fn with_known_epoch(mut self, epoch: u64) -> Refusal {
        self.known_epoch = Some(epoch);
        self
    }

    /// This node failed (not the request): the error's text as the detail.
    pub fn internal(error: impl fmt::Display) -> Refusal {
        Refusal::new(RefusalCode::Internal, error.to_string())
    }
}

/// `code: detail`, as logs and the CLI show it.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_by_its_name_and_names_are_distinct() {
        let mut names = std::collections::HashSet::new();
        for &code in RefusalCode::ALL {
            assert!(names.insert(code.name()), "{code:?} reuses a name");
            assert_eq!(RefusalCode::from_name(code.name()), code);
            let r = Refusal::new(code, "why");
            let bytes = crate::cbor::encode(&r);
            assert_eq!(crate::cbor::decode::<Refusal>(&bytes).unwrap(), r);
        }
        assert!(!names.contains("unknown"));
    }

    /// The known epoch travels when set and costs nothing when not: a
    /// refusal without it encodes as before, and an older node's refusal
    /// decodes with none.
    #[test]
    fn a_known_epoch_travels_only_when_set() {
        let plain = Refusal::new(RefusalCode::StaleEpoch, "old");
        #[derive(Serialize)]
        struct Older {
            code: &'static str,
            detail: &'static str,
        }
        let older = crate::cbor::encode(&Older {
            code: "stale-epoch",
            detail: "old",
        });
        assert_eq!(crate::cbor::encode(&plain), older);
        assert_eq!(crate::cbor::decode::<Refusal>(&older).unwrap(), plain);
        let with = plain.with_known_epoch(7);
        let bytes = crate::cbor::encode(&with);
        assert_eq!(
            crate::cbor::decode::<Refusal>(&bytes).unwrap().known_epoch,
            Some(7)
        );
    }

    #[test]
    fn a_code_travels_as_its_name() {
        let bytes = crate::cbor::encode(&RefusalCode::StaleEpoch);
        let text: String = crate::cbor::decode(&bytes).unwrap();
        assert_eq!(text, "stale-epoch");
    }

    /// A newer node's code decodes as `Unknown`, detail intact, rather than
    /// failing the whole answer.
    #[test]
    fn an_unknown_code_from_a_newer_node_decodes_as_unknown() {
        #[derive(Serialize)]
        struct Newer {
            code: &'static str,
            detail: &'static str,
        }
        let bytes = crate::cbor::encode(&Newer {
            code: "quota-exceeded",
            detail: "over the user's quota",
        });
        let r: Refusal = crate::cbor::decode(&bytes).unwrap();
        assert_eq!(r.code, RefusalCode::Unknown);
        assert_eq!(r.detail, "over the user's quota");
        assert_eq!(r.to_string(), "unknown: over the user's quota");
    }
}
