//! Bounded, SWIM-style membership and failure detection for meshnode
//! (issue 19, items 1 and 4): a state machine without I/O ([`Membership`]:
//! messages and ticks in, [`Action`]s out) and a seeded simulator
//! ([`sim`]) that measures it at 100 to 10,000 nodes.
//!
//! The node drives it in `mesh::swim` (shown in `peers`, deciding nothing
//! yet): besides, every node still pings every peer every second and
//! floods its full status through gossipsub, so background traffic grows
//! with the square of the fleet. Here each node probes one
//! member per [`limits::PROBE_INTERVAL_MS`] (its nearest ones, by a
//! distance the caller supplies, one round in
//! [`limits::NEAREST_PROBE_EVERY_ROUNDS`]; otherwise the next of a
//! walk of the member table in id order), asks [`limits::INDIRECT_PROBES`] others to probe
//! a member that missed its ack, suspects a member nobody reaches, and
//! declares it dead once the suspicion times out unrefuted; a member
//! refutes a suspicion of itself by raising its incarnation. Changes ride
//! on the probe traffic, each a bounded number of times
//! ([`limits::retransmit_limit`]), and a low-rate anti-entropy round
//! compares one range of the member table by hash and pulls it only when
//! it differs. A full status is never flooded: a node asks for it only
//! from the members it needs (the driver's request, outside this crate).
//!
//! **Safety note.** The states ([`PeerState`]: up, unreachable, down)
//! only decide *when a node asks for a lease*; a vessel never changes
//! owner because a member looks dead, only through the failover lease.
//!
//! Models: hashicorp/memberlist (SWIM with Lifeguard's suspicion scaled
//! by log N and bounded retransmits), iroh-gossip's `proto` (a state
//! machine driven by its caller), TigerBeetle's VOPR and this repo's
//! `failover::sim` (seeded, replayable, faults from a separate actor).

pub mod dissemination;
pub mod limits;
mod machine;
pub mod message;
mod probe;
pub mod sim;
pub mod state;
mod sync;

pub use machine::{Action, Membership, Stats};
pub use message::{Change, DecodeError, Message};

/// A member's id: 32 bytes. The node uses its ed25519 public key (the key
/// a libp2p peer id of an ed25519 key carries inline), so the peer id is
/// rebuilt from it; keys are spread over the id space as hashes are.
/// Ordered, so that sync ranges are id ranges.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 32]);

impl std::fmt::Debug for NodeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// What a node says of a member, in the order in which, at one
/// incarnation, a later state overrides an earlier one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum MemberState {
    Alive = 0,
    Suspect = 1,
    Dead = 2,
    Left = 3,
}

impl MemberState {
    pub(crate) fn from_byte(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0 => MemberState::Alive,
            1 => MemberState::Suspect,
            2 => MemberState::Dead,
            3 => MemberState::Left,
            other => return Err(DecodeError::State(other)),
        })
    }

    /// Alive or suspect: still counted in the fleet's size.
    pub fn is_live(self) -> bool {
        matches!(self, MemberState::Alive | MemberState::Suspect)
    }

    /// How meshnode's `peers` shows it.
    pub fn peer_state(self) -> PeerState {
        match self {
            MemberState::Alive => PeerState::Up,
            MemberState::Suspect => PeerState::Unreachable,
            MemberState::Dead => PeerState::Down,
            MemberState::Left => PeerState::Left,
        }
    }
}

/// meshnode's `peers` states. They decide when to ask for a lease, never
/// who owns a vessel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    Up,
    /// Suspected: nobody reached it this round; it may still refute.
    Unreachable,
    /// Confirmed: the suspicion timed out unrefuted.
    Down,
    /// Said goodbye.
    Left,
}

/// The seeded randomness (as `protocol::fuzzing::SplitMix64`, copied so
/// that this crate depends on nothing of the node's).
#[derive(Clone, Debug)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
