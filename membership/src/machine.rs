//! The state machine: [`Membership::handle`] takes a message from a member,
//! [`Membership::tick`] the passing of time; both push [`Action`]s for the
//! driver (the node's event loop, or the simulator) to carry out. No I/O,
//! no clock of its own, no randomness but its seed: replayable.

use std::collections::BTreeMap;

use crate::dissemination::Broadcasts;
use crate::limits::{
    retransmit_limit, suspicion_timeout_ms, INDIRECT_PROBES, INDIRECT_TIMEOUT_MS,
    MAX_PIGGYBACK_CHANGES, MAX_RELAYS, PROBE_INTERVAL_MS, PROBE_TIMEOUT_MS,
};
use crate::message::{Change, DecodeError, Message};
use crate::probe::{Distance, Probe, Prober, Stage};
use crate::state::{Applied, Table};
use crate::sync::SyncState;
use crate::{MemberState, NodeId, PeerState, SplitMix64};

/// What the driver does for the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send `bytes` to `to`: on a datagram (probe traffic, at most
    /// [`MAX_DATAGRAM_BYTES`](crate::limits::MAX_DATAGRAM_BYTES)) or, when
    /// `stream`, on a stream (a sync page).
    Send {
        to: NodeId,
        bytes: Vec<u8>,
        stream: bool,
    },
    /// A member's state as `peers` shows it changed. Only decides when to
    /// ask for a lease; never who owns a vessel.
    StateChanged { id: NodeId, state: PeerState },
    /// A measured round trip to a member (a direct ping's ack), for the
    /// node's RTT table and Vivaldi coordinate.
    Rtt { id: NodeId, rtt_ms: u64 },
}

/// Counters for the simulator and for `peers`' diagnostics.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub probes: u64,
    pub indirect_probes: u64,
    pub suspicions_raised: u64,
    pub refutations: u64,
    pub refused_full: u64,
    pub relays_dropped: u64,
    pub sync_pages: u64,
}

pub struct Membership {
    pub(crate) me: NodeId,
    pub(crate) incarnation: u32,
    pub(crate) table: Table,
    pub(crate) broadcasts: Broadcasts,
    pub(crate) prober: Prober,
    pub(crate) rng: SplitMix64,
    probe: Option<Probe>,
    next_round_ms: u64,
    next_seq: u32,
    /// Ping requests relayed for others: our seq → (requester, its seq,
    /// expiry).
    relays: BTreeMap<u32, (NodeId, u32, u64)>,
    /// Suspicions that become deaths: (deadline, member) → incarnation.
    suspicions: BTreeMap<(u64, NodeId), u32>,
    pub(crate) sync: SyncState,
    pub(crate) left: bool,
    pub stats: Stats,
}

impl Membership {
    /// A node `me` starting at `now_ms`; its first round is at a random
    /// point of the first interval, so that a fleet started at once does
    /// not probe in lockstep.
    pub fn new(me: NodeId, seed: u64, now_ms: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let mut table = Table::default();
        let alive = Change {
            id: me,
            incarnation: 0,
            state: MemberState::Alive,
        };
        table.apply(alive, now_ms);
        let mut broadcasts = Broadcasts::default();
        broadcasts.push(me);
        let next_round_ms = now_ms + rng.below(PROBE_INTERVAL_MS);
        Membership {
            me,
            incarnation: 0,
            table,
            broadcasts,
            prober: Prober::new(&mut rng),
            // The first anti-entropy round within about a second, at a
            // point that differs per node (a joiner's first sync is
            // `join`'s, at once).
            sync: SyncState::new(now_ms + next_round_ms % 997),
            rng,
            probe: None,
            next_round_ms,
            next_seq: 1,
            relays: BTreeMap::new(),
            suspicions: BTreeMap::new(),
            left: false,
            stats: Stats::default(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.me
    }

    pub fn incarnation(&self) -> u32 {
        self.incarnation
    }

    /// What this node believes of `id`.
    pub fn state_of(&self, id: &NodeId) -> Option<MemberState> {
        self.table.get(id).map(|m| m.state)
    }

    /// What this node believes of `id`, with the incarnation it holds for
    /// it (the driver shows both in `peers`).
    pub fn member(&self, id: &NodeId) -> Option<crate::state::Member> {
        self.table.get(id).copied()
    }

    /// Members alive or suspect, this node included.
    pub fn live_members(&self) -> usize {
        self.table.live()
    }

    /// Changes still waiting to be piggybacked.
    pub fn pending_broadcasts(&self) -> usize {
        self.broadcasts.len()
    }

    /// The nearest members this node probes more often (the ones whose
    /// full status it would ask for, with its vessels' hosts and replicas).
    pub fn nearest(&self) -> Vec<NodeId> {
        self.prober.nearest().collect()
    }

    /// The earliest time at which [`Membership::tick`] has work to do.
    pub fn next_deadline_ms(&self) -> u64 {
        let mut at = self.next_round_ms.min(self.sync.next_round_ms);
        if let Some(p) = &self.probe {
            at = at.min(p.deadline_ms);
        }
        if let Some(((deadline, _), _)) = self.suspicions.first_key_value() {
            at = at.min(*deadline);
        }
        at
    }

    /// Leaves the fleet: a [`MemberState::Left`] notice goes at once to
    /// [`INDIRECT_PROBES`] random members, in pings, and rides on this
    /// node's acks after that; it probes no more. The caller keeps
    /// answering for a few rounds, then stops.
    pub fn leave(&mut self, out: &mut Vec<Action>) {
        self.left = true;
        self.probe = None;
        let bye = Change {
            id: self.me,
            incarnation: self.incarnation,
            state: MemberState::Left,
        };
        self.table.apply(bye, 0);
        self.broadcasts.push(self.me);
        let mut told = vec![self.me];
        for _ in 0..INDIRECT_PROBES {
            let Some(to) = self.prober.random_live(&self.table, &mut self.rng, &told) else {
                break;
            };
            told.push(to);
            let seq = self.seq();
            self.send_probe_msg(to, |gossip| Message::Ping { seq, gossip }, out);
        }
    }

    /// Handles one message from `from` (the transport's authenticated
    /// sender). A malformed or oversized one is refused whole.
    pub fn handle(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        now_ms: u64,
        out: &mut Vec<Action>,
    ) -> Result<(), DecodeError> {
        let message = Message::decode(bytes)?;
        match message {
            Message::Ping { seq, gossip } => {
                self.merge(&gossip, now_ms, out);
                self.send_probe_msg(from, |gossip| Message::Ack { seq, gossip }, out);
            }
            Message::Ack { seq, gossip } => {
                self.merge(&gossip, now_ms, out);
                self.on_ack(from, seq, now_ms, out);
            }
            Message::PingReq {
                seq,
                target,
                gossip,
            } => {
                self.merge(&gossip, now_ms, out);
                self.relay(from, seq, target, now_ms, out);
            }
            Message::SyncRequest {
                after,
                until,
                digest,
                gossip,
            } => {
                self.merge(&gossip, now_ms, out);
                self.answer_sync(from, after, until, digest, out);
            }
            Message::SyncResponse {
                until,
                entries,
                next,
            } => {
                let learned = self.merge_from(&entries, now_ms, out, false);
                self.on_sync_page(from, until, next, learned, now_ms, out);
            }
        }
        Ok(())
    }

    /// Runs what is due at `now_ms`: probe stages, a new round, suspicion
    /// timeouts, an anti-entropy round.
    pub fn tick(&mut self, now_ms: u64, distance: Distance<'_>, out: &mut Vec<Action>) {
        self.expire_suspicions(now_ms, out);
        self.advance_probe(now_ms, out);
        if now_ms >= self.next_round_ms {
            self.next_round_ms = now_ms.max(self.next_round_ms) + PROBE_INTERVAL_MS;
            self.start_round(now_ms, distance, out);
        }
        if now_ms >= self.sync.next_round_ms {
            self.sync_round(now_ms, out);
        }
        self.relays.retain(|_, r| r.2 > now_ms);
        self.table.forget_expired(now_ms);
    }

    fn start_round(&mut self, now_ms: u64, distance: Distance<'_>, out: &mut Vec<Action>) {
        if self.probe.is_some() || self.left {
            return;
        }
        let Some((target, reconnect)) =
            self.prober
                .next_target(self.me, &self.table, &mut self.rng, distance)
        else {
            return;
        };
        let seq = self.seq();
        self.stats.probes += 1;
        self.probe = Some(Probe {
            target,
            seq,
            sent_ms: now_ms,
            stage: Stage::Direct,
            deadline_ms: now_ms + PROBE_TIMEOUT_MS,
            reconnect,
        });
        self.send_probe_msg(target, |gossip| Message::Ping { seq, gossip }, out);
    }

    fn advance_probe(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let Some(probe) = self.probe else { return };
        if now_ms < probe.deadline_ms {
            return;
        }
        match probe.stage {
            Stage::Direct if !probe.reconnect => {
                let mut helpers = vec![self.me, probe.target];
                for _ in 0..INDIRECT_PROBES {
                    if let Some(h) = self
                        .prober
                        .random_live(&self.table, &mut self.rng, &helpers)
                    {
                        helpers.push(h);
                    }
                }
                for &helper in &helpers[2..] {
                    let (seq, target) = (probe.seq, probe.target);
                    self.send_probe_msg(
                        helper,
                        |gossip| Message::PingReq {
                            seq,
                            target,
                            gossip,
                        },
                        out,
                    );
                }
                self.stats.indirect_probes += (helpers.len() - 2) as u64;
                self.probe = Some(Probe {
                    stage: Stage::Indirect,
                    deadline_ms: now_ms + INDIRECT_TIMEOUT_MS,
                    ..probe
                });
            }
            Stage::Direct => self.probe = None,
            Stage::Indirect => {
                self.probe = None;
                let m = self.table.get(&probe.target).copied();
                if let Some(m) = m.filter(|m| m.state == MemberState::Alive) {
                    self.stats.suspicions_raised += 1;
                    let suspect = Change {
                        id: probe.target,
                        incarnation: m.incarnation,
                        state: MemberState::Suspect,
                    };
                    self.merge(&[suspect], now_ms, out);
                    // Tell the suspect at once (a ping that carries the
                    // suspicion first): if only our path to it was lossy,
                    // it refutes now rather than when gossip reaches it.
                    let seq = self.seq();
                    self.send_probe_msg(probe.target, |gossip| Message::Ping { seq, gossip }, out);
                }
            }
        }
    }

    fn on_ack(&mut self, from: NodeId, seq: u32, now_ms: u64, out: &mut Vec<Action>) {
        if let Some((requester, their_seq, _)) = self.relays.remove(&seq) {
            self.send_probe_msg(
                requester,
                |gossip| Message::Ack {
                    seq: their_seq,
                    gossip,
                },
                out,
            );
            return;
        }
        let Some(probe) = self.probe.filter(|p| p.seq == seq) else {
            return;
        };
        self.probe = None;
        if from == probe.target {
            out.push(Action::Rtt {
                id: from,
                rtt_ms: now_ms - probe.sent_ms,
            });
        }
    }

    fn relay(
        &mut self,
        from: NodeId,
        seq: u32,
        target: NodeId,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if self.relays.len() >= MAX_RELAYS {
            self.stats.relays_dropped += 1;
            return;
        }
        let my_seq = self.seq();
        self.relays
            .insert(my_seq, (from, seq, now_ms + PROBE_INTERVAL_MS));
        self.send_probe_msg(
            target,
            |gossip| Message::Ping {
                seq: my_seq,
                gossip,
            },
            out,
        );
    }

    fn expire_suspicions(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        while let Some((&(deadline, id), &incarnation)) = self.suspicions.first_key_value() {
            if deadline > now_ms {
                break;
            }
            self.suspicions.pop_first();
            let still = self
                .table
                .get(&id)
                .is_some_and(|m| m.state == MemberState::Suspect && m.incarnation == incarnation);
            if still {
                let dead = Change {
                    id,
                    incarnation,
                    state: MemberState::Dead,
                };
                self.merge(&[dead], now_ms, out);
            }
        }
    }

    /// Applies changes heard by gossip (or made here): newer ones are
    /// taken, queued for gossip and reported; a suspicion or death of this
    /// node is refuted with a higher incarnation.
    pub(crate) fn merge(&mut self, changes: &[Change], now_ms: u64, out: &mut Vec<Action>) {
        self.merge_from(changes, now_ms, out, true);
    }

    /// As [`Membership::merge`]; `gossip` false for a sync page's entries,
    /// which are not gossiped again: the member that sent them already
    /// did, and a joiner's pull of a whole table must not become
    /// N changes × the retransmit limit of piggyback traffic. Returns how
    /// many changes were new.
    pub(crate) fn merge_from(
        &mut self,
        changes: &[Change],
        now_ms: u64,
        out: &mut Vec<Action>,
        gossip: bool,
    ) -> usize {
        let mut taken = 0;
        for &c in changes {
            if c.id == self.me {
                self.about_me(c);
                continue;
            }
            match self.table.apply(c, now_ms) {
                Applied::Stale => {}
                Applied::Full => self.stats.refused_full += 1,
                Applied::Taken { old } => {
                    taken += 1;
                    if gossip {
                        self.broadcasts.push(c.id);
                    }
                    if c.state == MemberState::Suspect {
                        let deadline = now_ms + suspicion_timeout_ms(self.table.live());
                        self.suspicions.insert((deadline, c.id), c.incarnation);
                    }
                    if old != Some(c.state) {
                        out.push(Action::StateChanged {
                            id: c.id,
                            state: c.state.peer_state(),
                        });
                    }
                }
            }
        }
        taken
    }

    fn about_me(&mut self, c: Change) {
        let refute = match c.state {
            MemberState::Alive => c.incarnation > self.incarnation,
            _ => c.incarnation >= self.incarnation && !self.left,
        };
        if !refute {
            return;
        }
        self.stats.refutations += 1;
        self.incarnation = c.incarnation.saturating_add(1);
        let alive = Change {
            id: self.me,
            incarnation: self.incarnation,
            state: MemberState::Alive,
        };
        self.table.apply(alive, 0);
        self.broadcasts.push(self.me);
    }

    /// Sends a probe-path message with as much gossip as fits; a probe of
    /// a suspect or dead member carries that claim first, so it can refute.
    pub(crate) fn send_probe_msg(
        &mut self,
        to: NodeId,
        make: impl FnOnce(Vec<Change>) -> Message,
        out: &mut Vec<Action>,
    ) {
        let limit = retransmit_limit(self.table.live());
        let mut gossip = self
            .broadcasts
            .take(&self.table, MAX_PIGGYBACK_CHANGES, limit, Some(to));
        if gossip.first().is_none_or(|c| c.id != to) {
            if let Some(m) = self
                .table
                .get(&to)
                .filter(|m| m.state != MemberState::Alive)
            {
                gossip.truncate(MAX_PIGGYBACK_CHANGES - 1);
                gossip.insert(
                    0,
                    Change {
                        id: to,
                        incarnation: m.incarnation,
                        state: m.state,
                    },
                );
            }
        }
        let bytes = make(gossip).encode();
        out.push(Action::Send {
            to,
            bytes,
            stream: false,
        });
    }

    pub(crate) fn seq(&mut self) -> u32 {
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_seq
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
