//! The piggyback queue: changes waiting to ride on probe traffic. One
//! entry per member (a newer change replaces the older), sent least-sent
//! first (newest first among equals, as memberlist's TransmitLimitedQueue),
//! each at most [`retransmit_limit`](crate::limits::retransmit_limit)
//! times, then dropped. Only changes travel: a member nobody changes costs
//! nothing here. The queue holds ids; what is sent is the member's state
//! in the table when it is sent (the newest claim, never a stale one).
//! At most [`MAX_QUEUED_CHANGES`] are queued: past it the most-sent entry
//! is dropped (as Serf's MaxQueueDepth), and anti-entropy carries what
//! gossip dropped.

use std::collections::{BTreeMap, BTreeSet};

use crate::limits::MAX_QUEUED_CHANGES;
use crate::message::Change;
use crate::state::Table;
use crate::NodeId;

#[derive(Default)]
pub struct Broadcasts {
    /// (transmits, reverse age, id): the first is the next to send.
    queue: BTreeSet<(u32, u64, NodeId)>,
    by_id: BTreeMap<NodeId, (u32, u64)>,
    enqueued: u64,
    /// Entries dropped because the queue was full.
    pub dropped: u64,
}

impl Broadcasts {
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Queues member `id`'s change afresh, replacing an older one.
    pub fn push(&mut self, id: NodeId) {
        if let Some((transmits, age)) = self.by_id.remove(&id) {
            self.queue.remove(&(transmits, age, id));
        }
        if self.by_id.len() >= MAX_QUEUED_CHANGES {
            if let Some((transmits, age, most_sent)) = self.queue.pop_last() {
                self.by_id.remove(&most_sent);
                let _ = (transmits, age);
                self.dropped += 1;
            }
        }
        self.enqueued += 1;
        let age = u64::MAX - self.enqueued;
        self.queue.insert((0, age, id));
        self.by_id.insert(id, (0, age));
    }

    /// Takes up to `max` changes for one message, counting a send of each
    /// and dropping those sent `limit` times. `first`, if queued, goes
    /// first (a probe of a suspect carries its suspicion, so that it can
    /// refute).
    pub fn take(
        &mut self,
        table: &Table,
        max: usize,
        limit: u32,
        first: Option<NodeId>,
    ) -> Vec<Change> {
        let mut picked: Vec<(u32, u64, NodeId)> = Vec::with_capacity(max);
        if let Some((id, (transmits, age))) = first.and_then(|id| Some((id, *self.by_id.get(&id)?)))
        {
            picked.push((transmits, age, id));
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
            let Some(m) = table.get(&key.2) else {
                self.by_id.remove(&key.2); // forgotten since
                continue;
            };
            out.push(Change {
                id: key.2,
                incarnation: m.incarnation,
                state: m.state,
            });
            let transmits = key.0 + 1;
            if transmits >= limit {
                self.by_id.remove(&key.2);
            } else {
                self.by_id.insert(key.2, (transmits, key.1));
                self.queue.insert((transmits, key.1, key.2));
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

    fn push(b: &mut Broadcasts, t: &mut Table, change: Change) {
        t.apply(change, 0);
        b.push(change.id);
    }

    #[test]
    fn least_sent_first_and_dropped_after_the_limit() {
        let (mut b, mut t) = (Broadcasts::default(), Table::default());
        push(&mut b, &mut t, c(1, 0));
        push(&mut b, &mut t, c(2, 0));
        assert_eq!(
            b.take(&t, 1, 2, None),
            vec![c(2, 0)],
            "newest first among equals"
        );
        assert_eq!(b.take(&t, 1, 2, None), vec![c(1, 0)], "then the least sent");
        push(&mut b, &mut t, c(1, 1));
        assert_eq!(b.len(), 2, "a newer change replaces the older");
        assert_eq!(b.take(&t, 5, 2, None), vec![c(1, 1), c(2, 0)]);
        assert_eq!(b.len(), 1, "member 2 was sent twice");
        assert_eq!(b.take(&t, 5, 2, Some(NodeId([1; 32]))), vec![c(1, 1)]);
        assert!(b.is_empty());
    }

    #[test]
    fn a_full_queue_drops_its_most_sent_entry() {
        let (mut b, mut t) = (Broadcasts::default(), Table::default());
        for n in 0..MAX_QUEUED_CHANGES as u32 + 1 {
            let mut id = [0u8; 32];
            id[..4].copy_from_slice(&n.to_be_bytes());
            let change = Change {
                id: NodeId(id),
                incarnation: 0,
                state: MemberState::Alive,
            };
            push(&mut b, &mut t, change);
            if n == 0 {
                b.take(&t, 1, 10, None);
            }
        }
        assert_eq!(b.len(), MAX_QUEUED_CHANGES);
        assert_eq!(b.dropped, 1);
        assert!(
            !b.by_id.contains_key(&NodeId([0; 32])),
            "the one sent once went"
        );
    }
}
