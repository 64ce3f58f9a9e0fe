//! Output commit for `--durability sync` vessels (issue 15, item 3;
//! docs/protocol.md, "Output commit"): the one rule for what a sync
//! vessel's host may let out. The hub (`ingress::IngressHub`) and the log
//! (`vessel::log::VesselLog`) consult it; nothing else decides.
//!
//! The rule: a sync vessel's host releases output, and confirms input,
//! only up to what the newest checkpoint that *every* replica acknowledged
//! contains. That checkpoint is what a takeover resumes from (or a newer
//! one), so nothing a client or a log reader was shown, and nothing an
//! entry was told it may forget, can be undone by the host's death.
//!
//! - vessel → client: bytes below the connection's `out_end` in that
//!   checkpoint's hub (and its FIN or close, once every byte before it is
//!   out);
//! - client → vessel: a confirmation (`Taken`) up to the connection's
//!   `in_end` in that checkpoint's hub;
//! - log: records below the log's end in that checkpoint.
//!
//! Marks only rise: an acknowledgement of an older checkpoint that arrives
//! late never takes back what a newer one released.

use std::collections::HashMap;

use protocol::ingress::HubImage;
use protocol::vessel::VesselImage;

use super::{ConnId, Outbound};

/// What one connection's streams may release, from one checkpoint's hub.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnMark {
    /// Client bytes inside the checkpoint: the host may confirm up to here.
    pub in_end: u64,
    /// Vessel bytes inside the checkpoint: the host may send up to here.
    pub out_end: u64,
    /// The vessel had shut its writing side in the checkpoint.
    pub out_fin: bool,
    /// The vessel had closed the connection in the checkpoint.
    pub closed: bool,
    /// The connection was reset in the checkpoint.
    pub reset: bool,
}

/// What a sync vessel's host may let out: the marks of the newest
/// checkpoint every replica acknowledged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleasedMarks {
    conns: HashMap<ConnId, ConnMark>,
    /// The log's end offset in that checkpoint.
    pub log_end: u64,
}

impl ReleasedMarks {
    /// The marks a checkpoint's image holds.
    pub fn of_image(image: &VesselImage) -> ReleasedMarks {
        let mut marks = Self::of_hub(&image.hub);
        marks.log_end = image.log.start_offset + image.log.content.size_bytes;
        marks
    }

    /// The marks of a checkpoint's hub (the log's end left at 0).
    pub fn of_hub(hub: &HubImage) -> ReleasedMarks {
        let conns = hub
            .conns
            .iter()
            .map(|c| {
                let mark = ConnMark {
                    in_end: c.in_base + c.inbound.len() as u64,
                    out_end: c.out_base + c.outbound.len() as u64,
                    out_fin: c.out_fin,
                    closed: c.vessel_closed,
                    reset: c.reset,
                };
                (c.id, mark)
            })
            .collect();
        ReleasedMarks { conns, log_end: 0 }
    }

    /// Takes a newer acknowledged checkpoint's marks; each only rises.
    /// A connection the newer checkpoint no longer holds (the vessel closed
    /// it and its entry confirmed all) keeps its mark: nothing is sent on
    /// it any more.
    pub fn advance(&mut self, newer: ReleasedMarks) {
        for (id, m) in newer.conns {
            let e = self.conns.entry(id).or_default();
            e.in_end = e.in_end.max(m.in_end);
            e.out_end = e.out_end.max(m.out_end);
            e.out_fin |= m.out_fin;
            e.closed |= m.closed;
            e.reset |= m.reset;
        }
        self.log_end = self.log_end.max(newer.log_end);
    }

    /// How far the host may confirm the client's stream of `conn`: up to
    /// what the hub holds (`held`) and the checkpoint holds, but never
    /// below the entry's own offset `at` when the hub holds that much (a
    /// new host confirms what an earlier one did: it resumed from a
    /// checkpoint that holds it). A hub behind `at` answers what it holds,
    /// so the entry sees the loss and resets its client.
    pub fn confirmable(&self, conn: ConnId, at: u64, held: u64) -> u64 {
        if held < at {
            return held;
        }
        let mark = self.conns.get(&conn).map_or(0, |m| m.in_end);
        held.min(mark).max(at)
    }

    /// The part of `out` (the vessel's unconfirmed bytes of `conn`) the
    /// host may send now: the bytes below the mark, and FIN or close only
    /// once the checkpoint had them and every byte is inside it. `None`:
    /// nothing to send yet.
    pub fn releasable(&self, conn: ConnId, mut out: Outbound) -> Option<Outbound> {
        let mark = self.conns.get(&conn).copied().unwrap_or_default();
        let allowed = mark.out_end.saturating_sub(out.at) as usize;
        let whole = allowed >= out.data.len();
        out.data.truncate(allowed);
        out.fin &= whole && mark.out_fin;
        out.closed &= whole && mark.closed;
        (!out.data.is_empty() || out.fin || out.closed).then_some(out)
    }

    /// Whether the host may tell the entry that `conn` was reset: only
    /// once a checkpoint holds the reset (a vessel that resets a client is
    /// output like any other; one that resumes from before it would not).
    pub fn reset_released(&self, conn: ConnId) -> bool {
        self.conns.get(&conn).is_some_and(|m| m.reset)
    }

    /// The log's end a reader may see, of a log whose end is `end`.
    pub fn log_visible(&self, end: u64) -> u64 {
        end.min(self.log_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::control::PeerIdBytes;
    use protocol::ingress::ConnImage;

    fn conn(id: u64, inb: (u64, &[u8]), out: (u64, &[u8]), fin: bool) -> ConnImage {
        ConnImage {
            id,
            service: "7000".into(),
            entry: PeerIdBytes(b"E".to_vec()),
            waiting: false,
            in_base: inb.0,
            inbound: inb.1.to_vec(),
            in_end: None,
            in_discard: false,
            out_base: out.0,
            outbound: out.1.to_vec(),
            out_fin: fin,
            vessel_closed: false,
            reset: false,
        }
    }

    fn hub(conns: Vec<ConnImage>) -> HubImage {
        HubImage {
            services: vec![("7000".into(), false)],
            conns,
        }
    }

    fn out(at: u64, data: &[u8], fin: bool) -> Outbound {
        Outbound {
            at,
            data: data.to_vec(),
            fin,
            closed: false,
        }
    }

    #[test]
    fn nothing_is_released_before_a_checkpoint_holds_it() {
        let none = ReleasedMarks::default();
        assert_eq!(none.releasable(1, out(0, b"reply", false)), None);
        // Client bytes the hub holds are not confirmed yet.
        assert_eq!(none.confirmable(1, 0, 5), 0);
        assert_eq!(none.log_visible(100), 0);
    }

    #[test]
    fn output_and_confirmations_stop_at_the_acknowledged_checkpoint() {
        let mut marks = ReleasedMarks::default();
        // The checkpoint held "GET a\n" from the client (4 taken by the
        // vessel, 2 still in the hub) and "VAL" of the reply.
        marks.advance(ReleasedMarks::of_hub(&hub(vec![conn(
            1,
            (4, b"a\n"),
            (0, b"VAL"),
            true,
        )])));
        // The vessel wrote on since: only the checkpoint's bytes go, and
        // not the FIN, which comes after bytes it does not hold.
        let sent = marks.releasable(1, out(0, b"VAL 1\n", true)).unwrap();
        assert_eq!((sent.data.as_slice(), sent.fin), (&b"VAL"[..], false));
        // From offset 3 on nothing is released yet.
        assert_eq!(marks.releasable(1, out(3, b" 1\n", true)), None);
        // The hub holds 9 client bytes; 6 are inside the checkpoint.
        assert_eq!(marks.confirmable(1, 0, 9), 6);
        // A connection the checkpoint did not hold releases nothing.
        assert_eq!(marks.releasable(2, out(0, b"x", false)), None);
    }

    #[test]
    fn marks_only_rise_and_the_end_goes_once_every_byte_is_inside() {
        let mut marks = ReleasedMarks::default();
        let newer = hub(vec![conn(1, (6, b""), (0, b"VAL 1\n"), true)]);
        let older = hub(vec![conn(1, (4, b""), (0, b"VAL"), false)]);
        marks.advance(ReleasedMarks::of_hub(&newer));
        // A late acknowledgement of an older checkpoint takes nothing back.
        marks.advance(ReleasedMarks::of_hub(&older));
        let sent = marks.releasable(1, out(0, b"VAL 1\n", true)).unwrap();
        assert_eq!((sent.data.len(), sent.fin), (6, true));
        // A FIN alone (every byte confirmed) goes too.
        let fin = marks.releasable(1, out(6, b"", true)).unwrap();
        assert!(fin.fin && fin.data.is_empty());
        assert_eq!(marks.confirmable(1, 0, 9), 6);
        // A reset is told only once a checkpoint holds it.
        assert!(!marks.reset_released(1));
        let mut reset = conn(1, (6, b""), (6, b""), true);
        reset.reset = true;
        marks.advance(ReleasedMarks::of_hub(&hub(vec![reset])));
        assert!(marks.reset_released(1));
    }

    #[test]
    fn a_new_host_confirms_what_the_entry_had_confirmed_and_a_loss_shows() {
        let marks = ReleasedMarks::default();
        // An entry whose old host confirmed 6 resends from 6 to a new host
        // whose image holds 8: it is told 6, never less (which would read
        // as lost bytes), until its own checkpoint holds more.
        assert_eq!(marks.confirmable(1, 6, 8), 6);
        // A hub behind the entry's offset says so: the entry resets.
        assert_eq!(marks.confirmable(1, 6, 4), 4);
    }
}
