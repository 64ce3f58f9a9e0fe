//! The piggyback queue: changes waiting to ride on probe traffic. One
//! entry per member (a newer change replaces the older), sent least-sent
//! first (newest first among equals, as memberlist's TransmitLimitedQueue),
//! each at most [`retransmit_limit`](crate::limits::retransmit_limit)
//! times, then dropped. Only changes travel: a member nobody changes costs
//! nothing here.

use std::collections::{BTreeMap, BTreeSet};

use crate::message::Change;
use crate::NodeId;

#[derive(Default)]
pub struct Broadcasts {
    /// (transmits, reverse age, id): the first is the next to send.
    queue: BTreeSet<(u32, u64, NodeId)>,
    by_id: BTreeMap<NodeId, (Change, u32, u64)>,
    enqueued: u64,
}

impl Broadcasts {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Queues `change` afresh, replacing any older change of its member.
    pub fn push(&mut self, change: Change) {
        if let Some((_, transmits, age)) = self.by_id.remove(&change.id) {
            self.queue.remove(&(transmits, age, change.id));
        }
        self.enqueued += 1;
        let age = u64::MAX - self.enqueued;
        self.queue.insert((0, age, change.id));
        self.by_id.insert(change.id, (change, 0, age));
    }

    /// The queued change about `id`, if any, without counting a send.
    pub fn about(&self, id: &NodeId) -> Option<Change> {
        self.by_id.get(id).map(|e| e.0)
    }

    /// Takes up to `max` changes for one message, counting a send of each
    /// and dropping those sent `limit` times. `first`, if queued, goes
    /// first (a probe of a suspect carries its suspicion, so that it can
    /// refute).
    pub fn take(&mut self, max: usize, limit: u32, first: Option<NodeId>) -> Vec<Change> {
        let mut picked: Vec<(u32, u64, NodeId)> = Vec::with_capacity(max);
        if let Some((c, transmits, age)) = first.and_then(|id| self.by_id.get(&id)) {
            picked.push((*transmits, *age, c.id));
        }
        for key in self.queue.iter() {
            if picked.len() >= max {
                break;
            }
            if Some(key.2) != first {
                picked.push(*key);
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for key in picked {
            self.queue.remove(&key);
            let entry = self.by_id.get_mut(&key.2).expect("queue and map agree");
            out.push(entry.0);
            entry.1 += 1;
            if entry.1 >= limit {
                self.by_id.remove(&key.2);
            } else {
                self.queue.insert((entry.1, key.1, key.2));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemberState;

    fn c(n: u8, incarnation: u32) -> Change {
        Change {
            id: NodeId([n; 32]),
            incarnation,
            state: MemberState::Alive,
        }
    }

    #[test]
    fn least_sent_first_and_dropped_after_the_limit() {
        let mut b = Broadcasts::default();
        b.push(c(1, 0));
        b.push(c(2, 0));
        assert_eq!(
            b.take(1, 2, None),
            vec![c(2, 0)],
            "newest first among equals"
        );
        assert_eq!(b.take(1, 2, None), vec![c(1, 0)], "then the least sent");
        b.push(c(1, 1));
        assert_eq!(b.len(), 2, "a newer change replaces the older");
        assert_eq!(b.take(5, 2, None), vec![c(1, 1), c(2, 0)]);
        assert_eq!(b.len(), 1, "member 2 was sent twice");
        assert_eq!(b.take(5, 2, Some(NodeId([1; 32]))), vec![c(1, 1)]);
        assert!(b.is_empty());
    }
}
