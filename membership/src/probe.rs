//! Whom to probe: one target per round, from a bounded set. One round in
//! [`NEAREST_PROBE_EVERY_ROUNDS`] goes to one of the [`NEAREST_COUNT`]
//! nearest members (by the caller's distance estimate, refreshed from a
//! sample of [`NEAREST_SAMPLE`] members, never a scan of the fleet); one
//! in [`RECONNECT_EVERY_ROUNDS`] to a random dead member (a reconnect);
//! the others walk a shuffled list of the members, SWIM's round-robin, so
//! that every member is probed within a bounded number of rounds.

use crate::limits::{
    NEAREST_COUNT, NEAREST_PROBE_EVERY_ROUNDS, NEAREST_REFRESH_ROUNDS, NEAREST_SAMPLE,
    RECONNECT_EVERY_ROUNDS,
};
use crate::state::Table;
use crate::{MemberState, NodeId, SplitMix64};

/// The stage of the one probe in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Direct,
    Indirect,
}

#[derive(Clone, Copy, Debug)]
pub struct Probe {
    pub target: NodeId,
    pub seq: u32,
    pub sent_ms: u64,
    pub stage: Stage,
    pub deadline_ms: u64,
    /// A reconnect attempt to a dead member: a miss means nothing.
    pub reconnect: bool,
}

#[derive(Default)]
pub struct Prober {
    pub round: u64,
    order: Vec<NodeId>,
    cursor: usize,
    nearest: Vec<(u64, NodeId)>,
}

/// A distance estimate from this node to a member (an RTT in ms from the
/// node's measurements or Vivaldi coordinates), or `None` if unknown.
pub type Distance<'a> = &'a mut dyn FnMut(&NodeId) -> Option<u64>;

impl Prober {
    /// The target of the next round, and whether it is a reconnect.
    pub fn next_target(
        &mut self,
        me: NodeId,
        table: &Table,
        rng: &mut SplitMix64,
        distance: Distance<'_>,
    ) -> Option<(NodeId, bool)> {
        self.round += 1;
        if self.round % NEAREST_REFRESH_ROUNDS == 1 {
            self.refresh_nearest(me, table, rng, distance);
        }
        if self.round.is_multiple_of(RECONNECT_EVERY_ROUNDS) {
            if let Some(dead) = self.random_dead(table, rng) {
                return Some((dead, true));
            }
        }
        if self.round.is_multiple_of(NEAREST_PROBE_EVERY_ROUNDS) && !self.nearest.is_empty() {
            let i = (self.round / NEAREST_PROBE_EVERY_ROUNDS) as usize % self.nearest.len();
            let id = self.nearest[i].1;
            if table.get(&id).is_some_and(|m| m.state.is_live()) {
                return Some((id, false));
            }
        }
        self.next_in_order(me, table, rng).map(|id| (id, false))
    }

    /// The next live member of the shuffled list; a new shuffle of the
    /// table once the list is walked (O(N) once per N rounds).
    fn next_in_order(&mut self, me: NodeId, table: &Table, rng: &mut SplitMix64) -> Option<NodeId> {
        for _ in 0..2 {
            while self.cursor < self.order.len() {
                let id = self.order[self.cursor];
                self.cursor += 1;
                if table.get(&id).is_some_and(|m| m.state.is_live()) {
                    return Some(id);
                }
            }
            self.order.clear();
            self.order.extend(
                table
                    .iter()
                    .filter(|(id, m)| **id != me && m.state.is_live())
                    .map(|(id, _)| *id),
            );
            shuffle(&mut self.order, rng);
            self.cursor = 0;
        }
        None
    }

    /// A member newly heard of joins the walk at a random place ahead, so
    /// that it is probed within this pass (as SWIM inserts joiners).
    pub fn insert(&mut self, id: NodeId, rng: &mut SplitMix64) {
        let ahead = self.order.len() - self.cursor;
        let at = self.cursor + rng.below(ahead as u64 + 1) as usize;
        self.order.insert(at, id);
    }

    /// A random live member other than `me` and those in `not`, or none
    /// after a bounded number of tries.
    pub fn random_live(
        &self,
        table: &Table,
        rng: &mut SplitMix64,
        not: &[NodeId],
    ) -> Option<NodeId> {
        for _ in 0..16 {
            let id = *self
                .order
                .get(rng.below(self.order.len() as u64) as usize)?;
            if !not.contains(&id) && table.get(&id).is_some_and(|m| m.state.is_live()) {
                return Some(id);
            }
        }
        None
    }

    fn random_dead(&self, table: &Table, rng: &mut SplitMix64) -> Option<NodeId> {
        if table.live() >= table.len() {
            return None;
        }
        // Dead members are not in the walk; sample the table's ids.
        let skip = rng.below(table.len() as u64) as usize;
        let mut dead = table.iter().skip(skip).chain(table.iter().take(skip));
        dead.find(|(_, m)| m.state == MemberState::Dead)
            .map(|(id, _)| *id)
    }

    fn refresh_nearest(
        &mut self,
        me: NodeId,
        table: &Table,
        rng: &mut SplitMix64,
        distance: Distance<'_>,
    ) {
        let mut candidates: Vec<NodeId> = self.nearest.iter().map(|n| n.1).collect();
        for _ in 0..NEAREST_SAMPLE {
            if let Some(id) = self.random_live(table, rng, &[me]) {
                if !candidates.contains(&id) {
                    candidates.push(id);
                }
            }
        }
        let mut scored: Vec<(u64, NodeId)> = candidates
            .into_iter()
            .filter(|id| table.get(id).is_some_and(|m| m.state.is_live()))
            .filter_map(|id| distance(&id).map(|d| (d, id)))
            .collect();
        scored.sort();
        scored.truncate(NEAREST_COUNT);
        self.nearest = scored;
    }

    pub fn nearest(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.nearest.iter().map(|n| n.1)
    }
}

fn shuffle(v: &mut [NodeId], rng: &mut SplitMix64) {
    for i in (1..v.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        v.swap(i, j);
    }
}
