//! Anti-entropy and a joiner's full sync. Every [`SYNC_INTERVAL_MS`] a
//! node sends one random member the digest (count and hash) of the next
//! [`SYNC_RANGE_ENTRIES`] entries of its table; the member answers with an
//! empty page when its own range hashes the same (a few dozen bytes both
//! ways), else with its entries of that range, in pages of at most
//! [`SYNC_PAGE_ENTRIES`], of which a round pulls at most
//! [`MAX_SYNC_PAGES_PER_ROUND`]. A joiner sends no digest and so pulls the
//! whole table of its seeds. Pull only: every node runs its own rounds.
//! A round that learned something is followed by a pass over all of the
//! table's ranges at one round per [`SYNC_FAST_INTERVAL_MS`], so that a cold start converges as a pull
//! epidemic (log N fast rounds) and a converged fleet pays the slow rate.

use crate::limits::{
    MAX_JOIN_SEEDS, MAX_PIGGYBACK_CHANGES, MAX_SYNC_PAGES_PER_ROUND, SYNC_FAST_INTERVAL_MS,
    SYNC_INTERVAL_MS, SYNC_PAGE_ENTRIES, SYNC_RANGE_ENTRIES,
};
use crate::machine::{Action, Membership};
use crate::message::{Message, RangeDigest};
use crate::state::range_hash;
use crate::NodeId;

pub struct SyncState {
    pub next_round_ms: u64,
    /// Where the next digest range starts (`None`: the table's start).
    cursor: Option<NodeId>,
    /// The round in flight: the member asked, the range's end, pages so far.
    in_flight: Option<(NodeId, Option<NodeId>, usize)>,
    /// Seeds to ask again while this node knows no other live member.
    seeds: Vec<NodeId>,
    /// Fast rounds left: after a round that learned something, a whole
    /// pass over the table's ranges runs at the fast rate.
    fast_rounds: usize,
}

impl SyncState {
    pub fn new(first_round_ms: u64) -> Self {
        SyncState {
            next_round_ms: first_round_ms,
            cursor: None,
            in_flight: None,
            seeds: Vec::new(),
            fast_rounds: 0,
        }
    }
}

impl Membership {
    /// Joins through up to [`MAX_JOIN_SEEDS`] seeds (from discovery or
    /// configuration): asks each for its whole table; this node's own
    /// alive notice rides on the requests, so the seeds learn of it.
    pub fn join(&mut self, seeds: &[NodeId], out: &mut Vec<Action>) {
        self.sync.seeds = seeds
            .iter()
            .copied()
            .filter(|s| *s != self.me)
            .take(MAX_JOIN_SEEDS)
            .collect();
        let seeds = self.sync.seeds.clone();
        for (i, seed) in seeds.into_iter().enumerate() {
            if i == 0 {
                self.sync.in_flight = Some((seed, None, 0));
            }
            self.send_sync_request(seed, None, None, None, out);
        }
    }

    pub(crate) fn sync_round(&mut self, now_ms: u64, out: &mut Vec<Action>) {
        let fast = self.sync.fast_rounds > 0;
        self.sync.fast_rounds = self.sync.fast_rounds.saturating_sub(1);
        self.sync.next_round_ms = now_ms
            + if fast {
                SYNC_FAST_INTERVAL_MS
            } else {
                SYNC_INTERVAL_MS
            };
        if self.left {
            return;
        }
        if self.table.live() <= 1 {
            let seeds = self.sync.seeds.clone();
            return self.join(&seeds, out);
        }
        let Some(peer) = self
            .prober
            .random_live(&self.table, &mut self.rng, &[self.me])
        else {
            return;
        };
        let after = self.sync.cursor;
        let entries: Vec<_> = self
            .table
            .range(after, None)
            .take(SYNC_RANGE_ENTRIES)
            .collect();
        let last = entries.last().map(|c| c.id);
        // The last range runs to the end of the table: ids this node does
        // not know yet may sort after its own last one.
        let more = self.table.range(last, None).next().is_some();
        let until = if entries.len() == SYNC_RANGE_ENTRIES && more {
            last
        } else {
            None
        };
        let (count, hash) = range_hash(entries.into_iter());
        self.sync.in_flight = Some((peer, until, 0));
        self.send_sync_request(peer, after, until, Some(RangeDigest { count, hash }), out);
    }

    fn send_sync_request(
        &mut self,
        to: NodeId,
        after: Option<NodeId>,
        until: Option<NodeId>,
        digest: Option<RangeDigest>,
        out: &mut Vec<Action>,
    ) {
        let limit = crate::limits::retransmit_limit(self.table.live());
        let gossip = self
            .broadcasts
            .take(&self.table, MAX_PIGGYBACK_CHANGES, limit, None);
        let bytes = Message::SyncRequest {
            after,
            until,
            digest,
            gossip,
        }
        .encode();
        out.push(Action::Send {
            to,
            bytes,
            stream: false,
        });
    }

    /// Answers a sync request: an empty page if the digest matches, else
    /// the first page of this node's entries in the range.
    pub(crate) fn answer_sync(
        &mut self,
        from: NodeId,
        after: Option<NodeId>,
        until: Option<NodeId>,
        digest: Option<RangeDigest>,
        out: &mut Vec<Action>,
    ) {
        if let Some(d) = digest {
            // Bounded work: a range longer than the digest's differs anyway.
            let within = self.table.range(after, until).take(d.count as usize + 1);
            if range_hash(within) == (d.count, d.hash) {
                let bytes = Message::SyncResponse {
                    until,
                    entries: Vec::new(),
                    next: None,
                }
                .encode();
                return out.push(Action::Send {
                    to: from,
                    bytes,
                    stream: false,
                });
            }
        }
        let mut page: Vec<_> = self
            .table
            .range(after, until)
            .take(SYNC_PAGE_ENTRIES + 1)
            .collect();
        let next = (page.len() > SYNC_PAGE_ENTRIES).then(|| page[SYNC_PAGE_ENTRIES - 1].id);
        page.truncate(SYNC_PAGE_ENTRIES);
        self.stats.sync_pages += 1;
        let bytes = Message::SyncResponse {
            until,
            entries: page,
            next,
        }
        .encode();
        out.push(Action::Send {
            to: from,
            bytes,
            stream: true,
        });
    }

    /// After a page was merged: asks for the rest of the range, or ends
    /// the round and moves the cursor on.
    pub(crate) fn on_sync_page(
        &mut self,
        from: NodeId,
        until: Option<NodeId>,
        next: Option<NodeId>,
        learned: usize,
        now_ms: u64,
        out: &mut Vec<Action>,
    ) {
        if learned > 0 {
            // The fleet is changing (a cold start, a partition healing):
            // pull again soon, and through every range of the table, since
            // what is missing may sit in any of them.
            self.sync.next_round_ms = self.sync.next_round_ms.min(now_ms + SYNC_FAST_INTERVAL_MS);
            self.sync.fast_rounds = self.table.len() / SYNC_RANGE_ENTRIES + 1;
        }
        let Some((peer, round_until, pages)) = self.sync.in_flight else {
            return;
        };
        if peer != from || round_until != until {
            return;
        }
        match next {
            Some(after) if pages + 1 < MAX_SYNC_PAGES_PER_ROUND => {
                self.sync.in_flight = Some((peer, until, pages + 1));
                self.send_sync_request(peer, Some(after), until, None, out);
            }
            _ => {
                self.sync.in_flight = None;
                self.sync.cursor = until;
            }
        }
    }
}
