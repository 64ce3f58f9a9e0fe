//! The stall per move: for every move of a service vessel the watcher saw,
//! the longest request of each of its clients that spans the move (what a
//! client waited while the vessel moved), and that wait in round trips
//! between the vessel's old host and the node the client entered at.

use std::fmt::Write as _;

use crate::ctx::{Ctx, SeenMove};
use crate::view::ClientStats;

/// One client's longest request across one move.
#[derive(Debug, Clone, PartialEq)]
pub struct Stall {
    pub vessel: String,
    pub from: String,
    pub to: String,
    /// The move happened between these (scenario seconds).
    pub before: f64,
    pub after: f64,
    pub client: String,
    /// The node the request entered the mesh at.
    pub entry: String,
    /// When the request was sent, and how long its answer took.
    pub sent_t: f64,
    pub ms: f64,
    /// One round trip between the old host and `entry` (configured); 0
    /// when the client entered at the old host itself.
    pub rtt_ms: f64,
}

impl Stall {
    /// The stall in round trips old host ↔ entry (None without a WAN hop).
    pub fn rtts(&self) -> Option<f64> {
        (self.rtt_ms > 0.0).then(|| self.ms / self.rtt_ms)
    }

    /// One line, for the progress and the report's summary.
    pub fn line(&self) -> String {
        let multiple = match self.rtts() {
            Some(k) => format!(
                "{k:.1} × RTT {}→{} {:.0} ms",
                self.from, self.entry, self.rtt_ms
            ),
            None => format!("the client entered at {}, the old host", self.from),
        };
        format!(
            "stall: {} {} → {}: client {} at {} waited {:.1} ms ({multiple}) for a request sent at {:.2}s",
            self.vessel, self.from, self.to, self.client, self.entry, self.ms, self.sent_t
        )
    }
}

/// The request (t sent, ms) that overlaps the interval (before, after] and
/// took longest: the move's commit lies in that interval, so the request
/// that waited for the move overlaps it.
pub fn longest_spanning(latencies: &[(f64, f64)], before: f64, after: f64) -> Option<(f64, f64)> {
    latencies
        .iter()
        .copied()
        .filter(|&(t, ms)| t <= after && t + ms / 1000.0 > before)
        .max_by(|a, b| a.1.total_cmp(&b.1))
}

/// The node a client's request sent at `t` entered at: that of the last
/// connection opened at or before `t`.
pub fn entry_at(entries: &[(f64, usize)], t: f64) -> Option<usize> {
    entries
        .iter()
        .take_while(|(since, _)| *since <= t)
        .last()
        .map(|(_, node)| *node)
}

/// The stall of one move for one client (None: no request spans it).
/// Returns (t sent, ms, entry node, RTT old host ↔ entry in ms).
pub fn stall_of(m: &SeenMove, stats: &ClientStats) -> Option<(f64, f64, usize, f64)> {
    let (sent_t, ms) = longest_spanning(&stats.latencies, m.before, m.after)?;
    let entry = entry_at(&stats.entries, sent_t)?;
    let rtt_ms = m.rtt_from_ms.get(entry).copied().unwrap_or(0.0);
    Some((sent_t, ms, entry, rtt_ms))
}

/// Every stall of the run: per vessel with a service port, per move, per
/// client of that port.
pub fn stalls(ctx: &Ctx) -> Vec<Stall> {
    let sc = &ctx.sc;
    let name = |i: usize| sc.nodes[i].name.clone();
    let seen = ctx.vessels.lock().unwrap();
    let mut out = Vec::new();
    for (v, s) in sc.vessels.iter().zip(seen.iter()) {
        let Some(port) = v.port else { continue };
        for m in &s.moves {
            for (i, c) in sc.clients.iter().enumerate() {
                if c.load.service_port() != Some(port) || c.pending.is_some() {
                    continue;
                }
                let st = ctx.clients[i].stats.lock().unwrap();
                let Some((sent_t, ms, entry, rtt_ms)) = stall_of(m, &st) else {
                    continue;
                };
                out.push(Stall {
                    vessel: v.name.clone(),
                    from: name(m.from),
                    to: name(m.to),
                    before: m.before,
                    after: m.after,
                    client: c.name.clone(),
                    entry: name(entry),
                    sent_t,
                    ms,
                    rtt_ms,
                });
            }
        }
    }
    out
}

/// The report's section: one row per move and client.
pub fn section(m: &mut String, stalls: &[Stall]) {
    if stalls.is_empty() {
        return;
    }
    let _ = writeln!(m, "\n## Stall per move\n");
    let _ = writeln!(
        m,
        "Per move of a service vessel (seen by the `ps` watcher between the two times) and per client of its port: \
         the longest request that overlaps the move, and that wait in round trips between the old host and the node \
         the request entered at (configured RTT when the move was seen).\n"
    );
    let _ = writeln!(
        m,
        "| vessel | move | between | client | entry | request sent | stall ms | RTT old host↔entry ms | RTTs |\n|---|---|---|---|---|---|---|---|---|"
    );
    for s in stalls {
        let _ = writeln!(
            m,
            "| {} | {} → {} | {:.2}–{:.2}s | {} | {} | {:.2}s | {:.1} | {} | {} |",
            s.vessel,
            s.from,
            s.to,
            s.before,
            s.after,
            s.client,
            s.entry,
            s.sent_t,
            s.ms,
            if s.rtt_ms > 0.0 {
                format!("{:.0}", s.rtt_ms)
            } else {
                "–".into()
            },
            s.rtts()
                .map(|k| format!("{k:.1}"))
                .unwrap_or_else(|| "–".into())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_request_overlapping_the_move_is_its_stall() {
        // Requests every 100 ms; the one sent at 10.25 s waited 685 ms and
        // ended at 10.935 s, inside the watcher's (10.4, 11.4] interval;
        // a slower one before the interval does not count.
        let lat = vec![
            (9.0, 900.0),
            (10.1, 80.0),
            (10.25, 685.0),
            (11.0, 0.4),
            (11.5, 2000.0),
        ];
        assert_eq!(longest_spanning(&lat, 10.4, 11.4), Some((10.25, 685.0)));
        // A request that ended before the interval began does not span it.
        assert_eq!(longest_spanning(&lat[..2], 10.4, 11.4), None);
    }

    #[test]
    fn a_request_enters_at_the_node_of_its_connection() {
        let entries = vec![(3.0, 4), (20.1, 1)];
        assert_eq!(entry_at(&entries, 2.0), None);
        assert_eq!(entry_at(&entries, 5.0), Some(4));
        assert_eq!(entry_at(&entries, 20.1), Some(1));
        assert_eq!(entry_at(&entries, 25.0), Some(1));
    }

    #[test]
    fn a_stall_is_counted_in_round_trips_between_the_old_host_and_the_entry() {
        let m = SeenMove {
            from: 0,
            to: 4,
            before: 10.4,
            after: 11.4,
            rtt_from_ms: vec![0.0, 16.0, 40.0, 76.0, 80.0],
        };
        let stats = ClientStats {
            latencies: vec![(10.1, 80.0), (10.25, 685.0), (11.0, 0.4)],
            entries: vec![(3.0, 4)],
            ..ClientStats::default()
        };
        let (sent_t, ms, entry, rtt) = stall_of(&m, &stats).unwrap();
        assert_eq!((sent_t, ms, entry, rtt), (10.25, 685.0, 4, 80.0));
        let s = Stall {
            vessel: "svc".into(),
            from: "a".into(),
            to: "e".into(),
            before: 10.4,
            after: 11.4,
            client: "shopper".into(),
            entry: "e".into(),
            sent_t,
            ms,
            rtt_ms: rtt,
        };
        assert!((s.rtts().unwrap() - 8.5625).abs() < 1e-9);
        assert!(s.line().contains("8.6 × RTT a→e 80 ms"), "{}", s.line());
        // A client that entered at the old host has no WAN round trip.
        let local = Stall { rtt_ms: 0.0, ..s };
        assert_eq!(local.rtts(), None);
    }
}
