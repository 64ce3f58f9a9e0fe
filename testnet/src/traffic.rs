//! Per-node traffic: what the router counts for each node (bytes and
//! packets it sent into the router, and that the router wrote to it), the
//! snapshots a run takes of those counts, and rates over a window.
//!
//! "Out" is every packet read from the node's TUN device (whatever becomes
//! of it: a multicast counts once, however many copies the router makes);
//! "in" is every packet written to its TUN device. Both are IP packets,
//! headers included, as a NIC would count them.

use std::sync::Mutex;

/// A node's counts since the router started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeTraffic {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub packets_out: u64,
}

impl NodeTraffic {
    pub fn add(&mut self, o: &NodeTraffic) {
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.packets_in += o.packets_in;
        self.packets_out += o.packets_out;
    }
}

/// A node's rates over a window, in bytes per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct NodeRate {
    pub in_bytes_per_s: f64,
    pub out_bytes_per_s: f64,
    pub packets_per_s: f64,
}

impl NodeRate {
    /// In + out: the figure the budget is about.
    pub fn total(&self) -> f64 {
        self.in_bytes_per_s + self.out_bytes_per_s
    }
}

/// The rates of every node over a window: how long it really was (between
/// the snapshots that bound it), and each node's rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Rates {
    pub from_s: f64,
    pub to_s: f64,
    pub nodes: Vec<NodeRate>,
}

impl Rates {
    /// The mean over nodes of in + out, bytes/s.
    pub fn mean(&self) -> f64 {
        let n = self.nodes.len().max(1) as f64;
        self.nodes.iter().map(NodeRate::total).sum::<f64>() / n
    }

    /// The node with the most in + out, and that rate.
    pub fn max(&self) -> Option<(usize, f64)> {
        self.nodes
            .iter()
            .map(NodeRate::total)
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(&b.1))
    }
}

/// Snapshots of every node's counts, at scenario times (seconds since
/// t = 0), in time order.
#[derive(Default)]
pub struct TrafficLog {
    snaps: Mutex<Vec<(f64, Vec<NodeTraffic>)>>,
}

impl TrafficLog {
    pub fn push(&self, t: f64, counts: Vec<NodeTraffic>) {
        self.snaps.lock().unwrap().push((t, counts));
    }

    /// Rates over [from, to] (scenario seconds): between the first snapshot
    /// at or after `from` and the last at or before `to`. None without two
    /// such snapshots.
    pub fn rates(&self, from: f64, to: f64) -> Option<Rates> {
        let snaps = self.snaps.lock().unwrap();
        let a = snaps.iter().find(|(t, _)| *t >= from)?;
        let b = snaps.iter().rev().find(|(t, _)| *t <= to)?;
        let dt = b.0 - a.0;
        if dt <= 0.0 {
            return None;
        }
        let nodes =
            a.1.iter()
                .zip(&b.1)
                .map(|(x, y)| NodeRate {
                    in_bytes_per_s: y.bytes_in.saturating_sub(x.bytes_in) as f64 / dt,
                    out_bytes_per_s: y.bytes_out.saturating_sub(x.bytes_out) as f64 / dt,
                    packets_per_s: (y.packets_in + y.packets_out)
                        .saturating_sub(x.packets_in + x.packets_out)
                        as f64
                        / dt,
                })
                .collect();
        Some(Rates {
            from_s: a.0,
            to_s: b.0,
            nodes,
        })
    }
}

/// `12.3 KB/s` (KB: 1000 bytes).
pub fn kb_words(bytes_per_s: f64) -> String {
    format!("{:.2} KB/s", bytes_per_s / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(bytes_in: u64, bytes_out: u64) -> NodeTraffic {
        NodeTraffic {
            bytes_in,
            bytes_out,
            packets_in: bytes_in / 100,
            packets_out: bytes_out / 100,
        }
    }

    #[test]
    fn rates_are_differences_over_the_snapshots_inside_the_window() {
        let log = TrafficLog::default();
        log.push(0.0, vec![counts(0, 0), counts(0, 0)]);
        log.push(1.0, vec![counts(1000, 500), counts(0, 0)]);
        log.push(3.0, vec![counts(5000, 2500), counts(300, 100)]);
        log.push(4.0, vec![counts(9000, 9000), counts(400, 400)]);
        // [0.5, 3.5] is bounded by the snapshots at 1 and 3.
        let r = log.rates(0.5, 3.5).unwrap();
        assert_eq!((r.from_s, r.to_s), (1.0, 3.0));
        assert_eq!(r.nodes[0].in_bytes_per_s, 2000.0);
        assert_eq!(r.nodes[0].out_bytes_per_s, 1000.0);
        assert_eq!(r.nodes[0].total(), 3000.0);
        assert_eq!(r.nodes[1].total(), 200.0);
        assert_eq!(r.max(), Some((0, 3000.0)));
        assert_eq!(r.mean(), 1600.0);
        assert_eq!(r.nodes[0].packets_per_s, 30.0);
        // No two snapshots inside: no rate.
        assert_eq!(log.rates(1.5, 2.5), None);
        assert_eq!(log.rates(5.0, 9.0), None);
    }
}
