//! The wire messages and their hand-written binary codec: a version byte,
//! a kind byte, LEB128 varints, 32-byte ids. Hand-written so that the
//! simulator counts the bytes a node would really send, and so that the
//! decoder is total: every length is checked against a named limit before
//! anything is allocated, and any byte string decodes to a message or a
//! typed [`DecodeError`], never a panic.

use crate::limits::{MAX_DATAGRAM_BYTES, MAX_PIGGYBACK_CHANGES, MAX_SYNC_BYTES, SYNC_PAGE_ENTRIES};
use crate::{MemberState, NodeId};

/// The codec's version; a node refuses another.
pub const WIRE_VERSION: u8 = 1;

/// One membership change: what a node says about member `id`. Ordered by
/// (incarnation, state rank): the newer one wins (state.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Change {
    pub id: NodeId,
    pub incarnation: u32,
    pub state: MemberState,
}

/// A digest of a range of the member table, for anti-entropy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RangeDigest {
    pub count: u32,
    pub hash: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A probe; the receiver answers [`Message::Ack`] with the same `seq`.
    Ping { seq: u32, gossip: Vec<Change> },
    /// The answer to a ping (or a relayed answer to a ping request).
    Ack { seq: u32, gossip: Vec<Change> },
    /// "Ping `target` for me and relay its ack with my `seq`".
    PingReq {
        seq: u32,
        target: NodeId,
        gossip: Vec<Change>,
    },
    /// Asks for the members in `(after, until]` (`None`: from the start, to
    /// the end). With a digest, the responder answers with an empty page
    /// when its own range hashes the same.
    SyncRequest {
        after: Option<NodeId>,
        until: Option<NodeId>,
        digest: Option<RangeDigest>,
        gossip: Vec<Change>,
    },
    /// One page of the range; `next` is where the rest starts, if any.
    SyncResponse {
        until: Option<NodeId>,
        entries: Vec<Change>,
        next: Option<NodeId>,
    },
}

/// Why a byte string is not a message. A breach of a limit carries it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("message is {len} bytes, over the limit of {limit}")]
    TooLarge { len: usize, limit: usize },
    #[error("message has {count} entries, over the limit of {limit}")]
    TooManyEntries { count: u64, limit: usize },
    #[error("message ends early")]
    Truncated,
    #[error("wire version {0} is not {WIRE_VERSION}")]
    Version(u8),
    #[error("unknown message kind {0}")]
    Kind(u8),
    #[error("unknown member state {0}")]
    State(u8),
    #[error("varint is too long or over its type")]
    Varint,
    #[error("{0} trailing bytes")]
    Trailing(usize),
}

const PING: u8 = 1;
const ACK: u8 = 2;
const PING_REQ: u8 = 3;
const SYNC_REQUEST: u8 = 4;
const SYNC_RESPONSE: u8 = 5;

/// The size limit of a message whose kind byte (its second byte) is
/// `kind`: a transport reads the first two bytes, then no more than this
/// (a sync page may be a stream message; anything else fits a datagram).
pub fn limit_of_kind(kind: u8) -> usize {
    match kind {
        SYNC_RESPONSE => MAX_SYNC_BYTES,
        _ => MAX_DATAGRAM_BYTES,
    }
}

impl Message {
    /// The size limit of this kind of message: probe traffic fits one
    /// datagram, a sync page one stream message.
    pub fn limit(&self) -> usize {
        match self {
            Message::SyncResponse { .. } => MAX_SYNC_BYTES,
            _ => MAX_DATAGRAM_BYTES,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut w = vec![WIRE_VERSION];
        match self {
            Message::Ping { seq, gossip } | Message::Ack { seq, gossip } => {
                w.push(if matches!(self, Message::Ping { .. }) {
                    PING
                } else {
                    ACK
                });
                put_varint(&mut w, u64::from(*seq));
                put_changes(&mut w, gossip);
            }
            Message::PingReq {
                seq,
                target,
                gossip,
            } => {
                w.push(PING_REQ);
                put_varint(&mut w, u64::from(*seq));
                w.extend_from_slice(&target.0);
                put_changes(&mut w, gossip);
            }
            Message::SyncRequest {
                after,
                until,
                digest,
                gossip,
            } => {
                w.push(SYNC_REQUEST);
                put_opt_id(&mut w, after);
                put_opt_id(&mut w, until);
                match digest {
                    None => w.push(0),
                    Some(d) => {
                        w.push(1);
                        put_varint(&mut w, u64::from(d.count));
                        w.extend_from_slice(&d.hash.to_le_bytes());
                    }
                }
                put_changes(&mut w, gossip);
            }
            Message::SyncResponse {
                until,
                entries,
                next,
            } => {
                w.push(SYNC_RESPONSE);
                put_opt_id(&mut w, until);
                put_changes(&mut w, entries);
                put_opt_id(&mut w, next);
            }
        }
        w
    }

    /// Decodes one message; total (never panics) and checks the size
    /// before reading and every count before allocating.
    pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
        if bytes.len() > MAX_SYNC_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                limit: MAX_SYNC_BYTES,
            });
        }
        let mut r = Reader { bytes, at: 0 };
        let version = r.byte()?;
        if version != WIRE_VERSION {
            return Err(DecodeError::Version(version));
        }
        let kind = r.byte()?;
        if kind != SYNC_RESPONSE && bytes.len() > MAX_DATAGRAM_BYTES {
            return Err(DecodeError::TooLarge {
                len: bytes.len(),
                limit: MAX_DATAGRAM_BYTES,
            });
        }
        let message = match kind {
            PING => Message::Ping {
                seq: r.u32()?,
                gossip: r.changes(MAX_PIGGYBACK_CHANGES)?,
            },
            ACK => Message::Ack {
                seq: r.u32()?,
                gossip: r.changes(MAX_PIGGYBACK_CHANGES)?,
            },
            PING_REQ => Message::PingReq {
                seq: r.u32()?,
                target: r.id()?,
                gossip: r.changes(MAX_PIGGYBACK_CHANGES)?,
            },
            SYNC_REQUEST => Message::SyncRequest {
                after: r.opt_id()?,
                until: r.opt_id()?,
                digest: r.digest()?,
                gossip: r.changes(MAX_PIGGYBACK_CHANGES)?,
            },
            SYNC_RESPONSE => Message::SyncResponse {
                until: r.opt_id()?,
                entries: r.changes(SYNC_PAGE_ENTRIES)?,
                next: r.opt_id()?,
            },
            other => return Err(DecodeError::Kind(other)),
        };
        match bytes.len() - r.at {
            0 => Ok(message),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

fn put_varint(w: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        w.push((v as u8) | 0x80);
        v >>= 7;
    }
    w.push(v as u8);
}

fn put_opt_id(w: &mut Vec<u8>, id: &Option<NodeId>) {
    match id {
        None => w.push(0),
        Some(id) => {
            w.push(1);
            w.extend_from_slice(&id.0);
        }
    }
}

fn put_changes(w: &mut Vec<u8>, changes: &[Change]) {
    put_varint(w, changes.len() as u64);
    for c in changes {
        w.extend_from_slice(&c.id.0);
        put_varint(w, u64::from(c.incarnation));
        w.push(c.state as u8);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let b = *self.bytes.get(self.at).ok_or(DecodeError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::Varint)
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| DecodeError::Varint)
    }

    fn id(&mut self) -> Result<NodeId, DecodeError> {
        let end = self.at.checked_add(32).ok_or(DecodeError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        let mut id = [0u8; 32];
        id.copy_from_slice(slice);
        Ok(NodeId(id))
    }

    fn opt_id(&mut self) -> Result<Option<NodeId>, DecodeError> {
        match self.byte()? {
            0 => Ok(None),
            _ => Ok(Some(self.id()?)),
        }
    }

    fn digest(&mut self) -> Result<Option<RangeDigest>, DecodeError> {
        if self.byte()? == 0 {
            return Ok(None);
        }
        let count = self.u32()?;
        let end = self.at.checked_add(8).ok_or(DecodeError::Truncated)?;
        let slice = self.bytes.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        let mut hash = [0u8; 8];
        hash.copy_from_slice(slice);
        Ok(Some(RangeDigest {
            count,
            hash: u64::from_le_bytes(hash),
        }))
    }

    fn changes(&mut self, limit: usize) -> Result<Vec<Change>, DecodeError> {
        let count = self.varint()?;
        if count > limit as u64 {
            return Err(DecodeError::TooManyEntries { count, limit });
        }
        let mut out = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let id = self.id()?;
            let incarnation = self.u32()?;
            let state = MemberState::from_byte(self.byte()?)?;
            out.push(Change {
                id,
                incarnation,
                state,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SplitMix64;

    fn id(n: u8) -> NodeId {
        NodeId([n; 32])
    }

    fn samples() -> Vec<Message> {
        let gossip = vec![
            Change {
                id: id(1),
                incarnation: 0,
                state: MemberState::Alive,
            },
            Change {
                id: id(2),
                incarnation: 300,
                state: MemberState::Suspect,
            },
            Change {
                id: id(3),
                incarnation: u32::MAX,
                state: MemberState::Dead,
            },
        ];
        vec![
            Message::Ping {
                seq: 7,
                gossip: gossip.clone(),
            },
            Message::Ack {
                seq: u32::MAX,
                gossip: vec![],
            },
            Message::PingReq {
                seq: 1,
                target: id(9),
                gossip: gossip.clone(),
            },
            Message::SyncRequest {
                after: Some(id(4)),
                until: None,
                digest: Some(RangeDigest {
                    count: 5,
                    hash: 0xdead_beef,
                }),
                gossip,
            },
            Message::SyncResponse {
                until: Some(id(8)),
                entries: vec![],
                next: Some(id(5)),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips() {
        for m in samples() {
            let bytes = m.encode();
            assert!(bytes.len() <= m.limit());
            assert_eq!(limit_of_kind(bytes[1]), m.limit());
            assert_eq!(Message::decode(&bytes), Ok(m));
        }
    }

    #[test]
    fn limits_are_typed_errors_that_carry_the_limit() {
        let mut bytes = vec![WIRE_VERSION, PING, 0];
        put_varint(&mut bytes, 1_000_000);
        assert_eq!(
            Message::decode(&bytes),
            Err(DecodeError::TooManyEntries {
                count: 1_000_000,
                limit: MAX_PIGGYBACK_CHANGES
            })
        );
        let big = vec![WIRE_VERSION; MAX_SYNC_BYTES + 1];
        assert!(matches!(
            Message::decode(&big),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut ping = vec![WIRE_VERSION, PING, 0, 0];
        ping.resize(MAX_DATAGRAM_BYTES + 1, 0);
        assert_eq!(
            Message::decode(&ping),
            Err(DecodeError::TooLarge {
                len: MAX_DATAGRAM_BYTES + 1,
                limit: MAX_DATAGRAM_BYTES
            })
        );
    }

    /// The decoder is total: random byte strings and mutations of valid
    /// messages decode or fail with an error, never panic.
    #[test]
    fn decoder_never_panics_on_arbitrary_bytes() {
        let mut rng = SplitMix64(19);
        let valid: Vec<Vec<u8>> = samples().iter().map(Message::encode).collect();
        let mut decoded = 0;
        for round in 0..20_000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(200) as usize;
                (0..len).map(|_| rng.next_u64() as u8).collect()
            } else {
                let mut v = valid[rng.below(valid.len() as u64) as usize].clone();
                for _ in 0..=rng.below(4) {
                    let i = rng.below(v.len() as u64) as usize;
                    v[i] ^= 1 << rng.below(8);
                }
                v.truncate(rng.below(v.len() as u64 + 1) as usize + 1);
                v
            };
            if let Ok(m) = Message::decode(&bytes) {
                decoded += 1;
                assert_eq!(Message::decode(&m.encode()), Ok(m));
            }
        }
        assert!(
            decoded > 0,
            "mutations of valid messages should sometimes decode"
        );
    }
}
