//! The member table and SWIM's merge rule: of two claims about a member,
//! the one with the higher incarnation wins, and at one incarnation the
//! later state (alive < suspect < dead < left). Only the member itself
//! raises its incarnation, to refute a suspicion or a death.

use std::collections::{BTreeMap, VecDeque};

use crate::limits::{DEAD_RETAIN_MS, MAX_MEMBERS};
use crate::message::Change;
use crate::{MemberState, NodeId};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub incarnation: u32,
    pub state: MemberState,
}

/// What applying a change did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Not newer than what the table holds.
    Stale,
    /// Newer: the table took it (the old state, if the member was known).
    Taken { old: Option<MemberState> },
    /// A new member while the table holds [`MAX_MEMBERS`].
    Full,
}

#[derive(Default)]
pub struct Table {
    members: BTreeMap<NodeId, Member>,
    live: usize,
    /// Dead and left members in the order they are forgotten.
    tombstones: VecDeque<(u64, NodeId, u32)>,
}

/// Whether claim `a` overrides claim `b`.
pub fn newer(a: (u32, MemberState), b: (u32, MemberState)) -> bool {
    a > b
}

impl Table {
    pub fn get(&self, id: &NodeId) -> Option<&Member> {
        self.members.get(id)
    }

    /// Members alive or suspect (this node included): the fleet's size N.
    pub fn live(&self) -> usize {
        self.live
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn apply(&mut self, c: Change, now_ms: u64) -> Applied {
        let old = self.members.get(&c.id).copied();
        if let Some(m) = old {
            if !newer((c.incarnation, c.state), (m.incarnation, m.state)) {
                return Applied::Stale;
            }
        } else if self.members.len() >= MAX_MEMBERS {
            return Applied::Full;
        }
        let was_live = old.is_some_and(|m| m.state.is_live());
        match (was_live, c.state.is_live()) {
            (false, true) => self.live += 1,
            (true, false) => self.live -= 1,
            _ => {}
        }
        if !c.state.is_live() {
            let expires = now_ms.saturating_add(DEAD_RETAIN_MS);
            self.tombstones.push_back((expires, c.id, c.incarnation));
        }
        let member = Member {
            incarnation: c.incarnation,
            state: c.state,
        };
        self.members.insert(c.id, member);
        Applied::Taken {
            old: old.map(|m| m.state),
        }
    }

    /// Forgets members dead or gone for [`DEAD_RETAIN_MS`].
    pub fn forget_expired(&mut self, now_ms: u64) {
        while let Some(&(expires, id, incarnation)) = self.tombstones.front() {
            if expires > now_ms {
                break;
            }
            self.tombstones.pop_front();
            let gone = self
                .members
                .get(&id)
                .is_some_and(|m| !m.state.is_live() && m.incarnation == incarnation);
            if gone {
                self.members.remove(&id);
            }
        }
    }

    /// The entries in `(after, until]` in id order.
    pub fn range(
        &self,
        after: Option<NodeId>,
        until: Option<NodeId>,
    ) -> impl Iterator<Item = Change> + '_ {
        use std::ops::Bound::{Excluded, Included, Unbounded};
        let lo = after.map_or(Unbounded, Excluded);
        let hi = until.map_or(Unbounded, Included);
        let valid = match (after, until) {
            (Some(a), Some(u)) => a < u,
            _ => true,
        };
        let iter = valid
            .then(|| self.members.range((lo, hi)))
            .into_iter()
            .flatten();
        iter.map(|(id, m)| Change {
            id: *id,
            incarnation: m.incarnation,
            state: m.state,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = (&NodeId, &Member)> {
        self.members.iter()
    }
}

/// A hash of a range of entries, the same on every node that holds the
/// same entries (anti-entropy compares it).
pub fn range_hash(entries: impl Iterator<Item = Change>) -> (u32, u64) {
    let mut count = 0u32;
    let mut h = 0x243f_6a88_85a3_08d3u64;
    for c in entries {
        count = count.saturating_add(1);
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&c.id.0[..8]);
        let x = u64::from_le_bytes(prefix) ^ (u64::from(c.incarnation) << 8) ^ c.state as u64;
        h = crate::SplitMix64(h ^ x).next_u64();
    }
    (count, h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use MemberState::*;

    fn c(n: u8, incarnation: u32, state: MemberState) -> Change {
        Change {
            id: NodeId([n; 32]),
            incarnation,
            state,
        }
    }

    #[test]
    fn higher_incarnation_wins_and_then_the_later_state() {
        let mut t = Table::default();
        assert_eq!(t.apply(c(1, 0, Alive), 0), Applied::Taken { old: None });
        assert_eq!(t.live(), 1);
        assert_eq!(
            t.apply(c(1, 0, Suspect), 1),
            Applied::Taken { old: Some(Alive) }
        );
        assert_eq!(
            t.apply(c(1, 0, Alive), 2),
            Applied::Stale,
            "same incarnation cannot refute"
        );
        assert_eq!(
            t.apply(c(1, 1, Alive), 3),
            Applied::Taken { old: Some(Suspect) }
        );
        assert_eq!(
            t.apply(c(1, 1, Dead), 4),
            Applied::Taken { old: Some(Alive) }
        );
        assert_eq!(t.live(), 0);
        assert_eq!(
            t.apply(c(1, 1, Suspect), 5),
            Applied::Stale,
            "no suspicion of the dead"
        );
        assert_eq!(
            t.apply(c(1, 2, Alive), 6),
            Applied::Taken { old: Some(Dead) }
        );
        assert_eq!(t.live(), 1);
    }

    #[test]
    fn tombstones_are_forgotten_after_the_retention() {
        let mut t = Table::default();
        t.apply(c(1, 0, Dead), 10);
        t.apply(c(2, 0, Dead), 10);
        t.apply(c(2, 1, Alive), 20);
        t.forget_expired(10 + DEAD_RETAIN_MS);
        assert!(t.get(&NodeId([1; 32])).is_none());
        assert!(t.get(&NodeId([2; 32])).is_some(), "rejoined since");
    }

    #[test]
    fn ranges_and_their_hash() {
        let mut t = Table::default();
        for n in 1..=5 {
            t.apply(c(n, 0, Alive), 0);
        }
        let ids: Vec<u8> = t
            .range(Some(NodeId([1; 32])), Some(NodeId([3; 32])))
            .map(|c| c.id.0[0])
            .collect();
        assert_eq!(ids, vec![2, 3]);
        assert_eq!(
            t.range(Some(NodeId([4; 32])), Some(NodeId([2; 32])))
                .count(),
            0
        );
        let a = range_hash(t.range(None, None));
        t.apply(c(3, 0, Suspect), 0);
        let b = range_hash(t.range(None, None));
        assert_eq!(a.0, b.0);
        assert_ne!(a.1, b.1);
    }
}
