//! Whom to probe: one target per round, from a bounded set. One round in
//! [`NEAREST_PROBE_EVERY_ROUNDS`] goes to one of the [`NEAREST_COUNT`]
//! nearest members (by the caller's distance estimate, refreshed from a
//! sample of [`NEAREST_SAMPLE`] members, never a scan of the fleet); one
//! in [`RECONNECT_EVERY_ROUNDS`] to a random dead member (a reconnect);
//! the others walk the member table in id order from where the last walk
//! stopped, SWIM's round-robin, so that every member is probed within a
//! bounded number of rounds. Ids are hashes of public keys, so id order
//! is a random order, unrelated to where nodes are; each node starts its
//! walk at a random id, and again after each pass. Unlike SWIM's
//! shuffled list this costs no memory and no O(N) reshuffle per pass (at
//! 10,000 simulated nodes a shuffled list per node is 3 GB), and a joiner
//! enters the walk at once.

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

pub struct Prober {
    pub round: u64,
    /// The last member the walk probed (or its random starting point).
    cursor: NodeId,
    /// Members walked since the pass started; after a pass the walk jumps
    /// to a random point, so that no two nodes keep a fixed offset.
    walked: usize,
    nearest: Vec<(u64, NodeId)>,
}

/// A random id: a uniform point of the id space.
fn random_id(rng: &mut SplitMix64) -> NodeId {
    let mut id = [0u8; 32];
    for chunk in id.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next_u64().to_le_bytes());
    }
    NodeId(id)
}

/// The table's entries after `from`, wrapping around to the start.
fn ring<'a>(table: &'a Table, from: NodeId) -> impl Iterator<Item = crate::message::Change> + 'a {
    table
        .range(Some(from), None)
        .chain(table.range(None, Some(from)))
}

/// A distance estimate from this node to a member (an RTT in ms from the
/// node's measurements or Vivaldi coordinates), or `None` if unknown.
pub type Distance<'a> = &'a mut dyn FnMut(&NodeId) -> Option<u64>;

/// Entries looked at, at most, for one random choice: a mostly dead
/// table (a mass failure) may yield none this round, never a long scan.
const RANDOM_SCAN: usize = 64;

impl Prober {
    pub fn new(rng: &mut SplitMix64) -> Prober {
        Prober {
            round: 0,
            cursor: random_id(rng),
            walked: 0,
            nearest: Vec::new(),
        }
    }

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

    /// The next live member of the walk (at most one pass over the table).
    fn next_in_order(&mut self, me: NodeId, table: &Table, rng: &mut SplitMix64) -> Option<NodeId> {
        if self.walked >= table.live() {
            self.walked = 0;
            self.cursor = random_id(rng);
        }
        let next = ring(table, self.cursor).find(|c| c.id != me && c.state.is_live())?;
        self.cursor = next.id;
        self.walked += 1;
        Some(next.id)
    }

    /// A random live member other than those in `not`, or none: one
    /// chosen uniformly among the eligible of the [`RANDOM_SCAN`] entries
    /// after a random point of the id space (a member's chance then hangs
    /// on the sum of 64 gaps between ids, not on one: close to uniform).
    pub fn random_live(
        &self,
        table: &Table,
        rng: &mut SplitMix64,
        not: &[NodeId],
    ) -> Option<NodeId> {
        let from = random_id(rng);
        let window = ring(table, from).take(RANDOM_SCAN);
        let eligible: Vec<NodeId> = window
            .filter(|c| c.state.is_live() && !not.contains(&c.id))
            .map(|c| c.id)
            .collect();
        eligible
            .get(rng.below(eligible.len() as u64) as usize)
            .copied()
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
