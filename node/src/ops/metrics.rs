//! `/metrics`: the node and its vessels in the OpenMetrics text format
//! (which Prometheus reads), through the `prometheus-client` crate.
//!
//! Counters of things that happen (migrations, placement's judgements,
//! service bytes) live in [`Counters`] for the node's life; gauges are
//! read from the latest [`Snapshot`] and the host at each scrape. Labels
//! are bounded: at most [`MAX_VESSELS_LABELLED`] vessels and
//! [`MAX_PEERS_LABELLED`] peers get a label of their own, the rest share
//! [`OTHER_LABEL`]. No log text and no environment value is ever a
//! label or a value here. docs/guide.md lists every metric.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use protocol::control::MigrationReport;
use protocol::ids::VesselId;

use super::Snapshot;
use crate::sync::lock;
use crate::vessel::Host;

/// Vessels with a label of their own: a Prometheus series costs the
/// server memory for its whole retention, and a small board runs tens of
/// vessels; past this the rest are summed under [`OTHER_LABEL`].
pub const MAX_VESSELS_LABELLED: usize = 64;

/// Peers with an RTT series of their own; the rest report their worst RTT
/// under [`OTHER_LABEL`].
pub const MAX_PEERS_LABELLED: usize = 32;

/// The label of everything past a bound.
pub const OTHER_LABEL: &str = "_other";

/// The reasons placement judges by (`placement::Why`'s kinds, and `move`):
/// a fixed set, so the `reason` label is bounded by construction.
pub const PLACEMENT_REASONS: [&str; 9] = [
    "pinned",
    "no_traffic",
    "cool_down",
    "unknown_rtt",
    "nearest",
    "small_gain",
    "no_room",
    "waiting",
    "move",
];

/// Migration downtime buckets, in seconds: 1 ms to about 4 s, doubling
/// (the goal is well under a second; a failover's is up to 2 s).
fn downtime_histogram() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.001, 2.0, 13,
    ))
}

type Labels = Vec<(String, String)>;

/// The counters the node keeps for its whole life.
pub struct Counters {
    labelled: Mutex<HashSet<VesselId>>,
    placement: Family<Labels, Counter>,
    migrations: Family<Labels, Counter>,
    sent_bytes: Family<Labels, Counter>,
    sent_chunks: Family<Labels, Counter>,
    skipped_chunks: Family<Labels, Counter>,
    downtime: Family<Labels, Histogram, fn() -> Histogram>,
    service_bytes: Family<Labels, Counter>,
}

impl Default for Counters {
    fn default() -> Counters {
        Counters {
            labelled: Mutex::new(HashSet::new()),
            placement: Family::default(),
            migrations: Family::default(),
            sent_bytes: Family::default(),
            sent_chunks: Family::default(),
            skipped_chunks: Family::default(),
            downtime: Family::new_with_constructor(downtime_histogram),
            service_bytes: Family::default(),
        }
    }
}

impl Counters {
    /// The `vessel` label of `id`: its hex id while fewer than
    /// [`MAX_VESSELS_LABELLED`] have one, else [`OTHER_LABEL`].
    pub fn vessel_label(&self, id: VesselId) -> String {
        let mut l = lock(&self.labelled);
        if l.contains(&id) || l.len() < MAX_VESSELS_LABELLED {
            l.insert(id);
            id.to_hex()
        } else {
            OTHER_LABEL.to_string()
        }
    }

    fn of_vessel(&self, id: VesselId) -> Labels {
        vec![("vessel".into(), self.vessel_label(id))]
    }

    /// Placement judged a vessel; `kind` is one of [`PLACEMENT_REASONS`].
    pub fn placement_decision(&self, kind: &'static str) {
        self.placement
            .get_or_create(&vec![("reason".into(), kind.into())])
            .inc();
    }

    /// A migration out of this node ended, done or aborted.
    pub fn migration(&self, id: VesselId, report: &MigrationReport, done: bool) {
        let mut labels = self.of_vessel(id);
        self.sent_bytes
            .get_or_create(&labels)
            .inc_by(report.bytes_sent);
        self.sent_chunks
            .get_or_create(&labels)
            .inc_by(report.chunks_sent);
        self.skipped_chunks
            .get_or_create(&labels)
            .inc_by(report.chunks_skipped);
        if let (true, Some(us)) = (done, report.downtime_us) {
            self.downtime
                .get_or_create(&labels)
                .observe(us as f64 / 1e6);
        }
        let outcome = if done { "done" } else { "aborted" };
        labels.push(("outcome".into(), outcome.into()));
        self.migrations.get_or_create(&labels).inc();
    }

    /// `bytes` of client traffic reached vessel `id` here.
    pub fn service_bytes(&self, id: VesselId, bytes: u64) {
        self.service_bytes
            .get_or_create(&self.of_vessel(id))
            .inc_by(bytes);
    }

    fn register(&self, r: &mut Registry) {
        r.register(
            "placement_decisions",
            "Placement's judgements of the vessels here, by reason",
            self.placement.clone(),
        );
        r.register(
            "migrations",
            "Migrations out of this node, by vessel and outcome",
            self.migrations.clone(),
        );
        r.register(
            "migration_sent_bytes",
            "Bytes sent by migrations out of this node",
            self.sent_bytes.clone(),
        );
        r.register(
            "migration_sent_chunks",
            "Memory chunks sent by migrations out of this node",
            self.sent_chunks.clone(),
        );
        r.register(
            "migration_skipped_chunks",
            "Memory chunks migrations did not send (the destination had them)",
            self.skipped_chunks.clone(),
        );
        r.register(
            "migration_downtime_seconds",
            "How long a vessel was paused by a migration out of this node",
            self.downtime.clone(),
        );
        r.register(
            "vessel_service_received_bytes",
            "Client bytes that reached a service vessel here",
            self.service_bytes.clone(),
        );
    }
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

fn gauge_f(v: f64) -> Gauge<f64, AtomicU64> {
    let g = Gauge::<f64, AtomicU64>::default();
    g.set(v);
    g
}

/// The whole exposition: the node's gauges from `snap`, the vessels' from
/// `host`, and the counters.
pub fn render(counters: &Counters, snap: &Snapshot, host: &std::sync::Mutex<Host>) -> String {
    let mut r = Registry::with_prefix("meshnode");
    node_gauges(&mut r, snap);
    vessel_gauges(&mut r, counters, host);
    membership_counters(&mut r, &snap.membership);
    counters.register(&mut r);
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &r);
    out
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

/// The membership protocol's traffic (issue 19): what one node spends on
/// it in the background, and what it dropped, by reason.
fn membership_counters(r: &mut Registry, t: &crate::mesh::swim::Traffic) {
    let rows = [
        (
            "membership_sent_messages",
            "Membership protocol messages sent",
            t.sent_messages,
        ),
        (
            "membership_sent_bytes",
            "Membership protocol bytes sent (its messages' own, without libp2p framing)",
            t.sent_bytes,
        ),
        (
            "membership_received_messages",
            "Membership protocol messages received, dropped ones included",
            t.received_messages,
        ),
        (
            "membership_received_bytes",
            "Membership protocol bytes received (its messages' own)",
            t.received_bytes,
        ),
        (
            "membership_send_failures",
            "Membership protocol messages not delivered (no connection, a timeout)",
            t.send_failures,
        ),
    ];
    for (name, help, v) in rows {
        r.register(name, help, counter(v));
    }
    let dropped: Family<Labels, Counter> = Family::default();
    for (reason, v) in [
        ("not_member", t.dropped_not_member),
        ("malformed", t.dropped_malformed),
        ("oversized", t.dropped_oversized),
    ] {
        dropped
            .get_or_create(&vec![("reason".into(), reason.into())])
            .inc_by(v);
    }
    r.register(
        "membership_dropped_messages",
        "Membership protocol messages dropped: from a non-member, malformed or oversized",
        dropped,
    );
}

fn node_gauges(r: &mut Registry, snap: &Snapshot) {
    let info: Family<Labels, Gauge> = Family::default();
    info.get_or_create(&vec![(
        "version".into(),
        crate::upgrade::running_version().to_string(),
    )])
    .set(1);
    r.register("build_info", "meshnode's version (always 1)", info);
    let Some(rep) = &snap.report else {
        return;
    };
    r.register(
        "uptime_seconds",
        "Time since the node started",
        gauge_f(rep.uptime_ms as f64 / 1e3),
    );
    r.register(
        "healthy",
        "1 when `meshnode status` finds the node healthy, else 0",
        gauge(rep.unhealthy.is_empty() as i64),
    );
    r.register(
        "event_loop_lag_seconds",
        "The event loop's worst lateness over the last 10 s",
        gauge_f(rep.loop_lag_ms as f64 / 1e3),
    );
    let members: Family<Labels, Gauge> = Family::default();
    for state in ["up", "unreachable", "down"] {
        let n = rep.members.iter().filter(|m| m.state == state).count();
        members
            .get_or_create(&vec![("state".into(), state.into())])
            .set(n as i64);
    }
    r.register("members", "Other members, by liveness state", members);
    let rtt: Family<Labels, Gauge<f64, AtomicU64>> = Family::default();
    let mut with_rtt: Vec<(&str, u64)> = rep
        .members
        .iter()
        .filter_map(|m| m.rtt_us.map(|us| (m.peer_id.as_str(), us)))
        .collect();
    with_rtt.sort();
    let rest_worst = with_rtt.iter().skip(MAX_PEERS_LABELLED).map(|p| p.1).max();
    for (peer, us) in with_rtt.iter().take(MAX_PEERS_LABELLED) {
        rtt.get_or_create(&vec![("peer".into(), peer.to_string())])
            .set(*us as f64 / 1e6);
    }
    if let Some(us) = rest_worst {
        rtt.get_or_create(&vec![("peer".into(), OTHER_LABEL.into())])
            .set(us as f64 / 1e6);
    }
    r.register("peer_rtt_seconds", "Smoothed ping RTT to each member", rtt);
    if let Some(l) = snap.load_milli {
        r.register(
            "load1",
            "The machine's one-minute load average",
            gauge_f(l as f64 / 1e3),
        );
    }
    r.register("cpus", "The machine's CPUs", gauge(snap.cpus as i64));
    machine_gauges(r, rep);
}

fn machine_gauges(r: &mut Registry, rep: &protocol::control::StatusReport) {
    if let Some(b) = rep.memory.available_bytes {
        r.register(
            "memory_available_bytes",
            "The machine's available memory",
            gauge(b as i64),
        );
    }
    if let Some(b) = rep.memory.total_bytes {
        r.register(
            "memory_total_bytes",
            "The machine's memory",
            gauge(b as i64),
        );
    }
    r.register(
        "vessel_memory_limit_bytes",
        "Most linear memory one vessel may have",
        gauge(rep.memory.vessel_budget_bytes as i64),
    );
    r.register(
        "store_bytes",
        "The chunk store's size on disk",
        gauge(rep.disk.store_bytes as i64),
    );
    if let Some(b) = rep.disk.budget_bytes {
        r.register(
            "disk_budget_bytes",
            "The store's disk budget",
            gauge(b as i64),
        );
    }
    r.register(
        "vessels_in_mesh",
        "Vessels running in the mesh, as this node knows",
        gauge(rep.vessels_in_mesh as i64),
    );
}

/// The per-vessel gauges and counters read from the host.
fn vessel_gauges(r: &mut Registry, counters: &Counters, host: &std::sync::Mutex<Host>) {
    let state: Family<Labels, Gauge> = Family::default();
    let memory: Family<Labels, Gauge> = Family::default();
    let fuel: Family<Labels, Counter> = Family::default();
    let migrations: Family<Labels, Counter> = Family::default();
    let conns: Family<Labels, Gauge> = Family::default();
    {
        let h = lock(host);
        let rows = h.list();
        for row in rows {
            let label = counters.vessel_label(row.id);
            let l = h.vessels.get(&row.id);
            let runner = l.and_then(|l| l.runner.as_ref());
            let v = vec![("vessel".to_string(), label.clone())];
            // The name only on the state series (one per vessel): a join
            // gives it to the others.
            let name = if label == OTHER_LABEL {
                OTHER_LABEL.to_string()
            } else {
                row.name.clone()
            };
            let kind = row.state.split(':').next().unwrap_or("").to_string();
            state
                .get_or_create(&vec![
                    ("vessel".into(), label.clone()),
                    ("name".into(), name),
                    ("state".into(), kind),
                ])
                .inc();
            memory
                .get_or_create(&v)
                .inc_by(runner.map_or(0, |r| r.memory_bytes()) as i64);
            fuel.get_or_create(&v)
                .inc_by(runner.map_or(0, |r| r.fuel_used()));
            migrations
                .get_or_create(&v)
                .inc_by(l.map_or(0, |l| l.migrations as u64));
            conns
                .get_or_create(&v)
                .inc_by(h.hubs.get(&row.id).map_or(0, |hub| hub.connections()) as i64);
        }
    }
    r.register(
        "vessel_state",
        "1 for each vessel here, labelled with its state (running, migrating, exited, failed, …)",
        state,
    );
    r.register("vessel_memory_bytes", "A vessel's linear memory", memory);
    r.register(
        "vessel_fuel_used",
        "Fuel (wasm instructions, roughly) a vessel used on this node",
        fuel,
    );
    r.register(
        "vessel_migrations",
        "Migrations in a vessel's life",
        migrations,
    );
    r.register(
        "vessel_service_connections",
        "Client connections a service vessel holds here",
        conns,
    );
}

/// The `reason` label of a placement judgement.
pub fn why_kind(w: &crate::placement::Why) -> &'static str {
    use crate::placement::Why;
    match w {
        Why::Pinned => "pinned",
        Why::NoTraffic { .. } => "no_traffic",
        Why::CoolDown { .. } => "cool_down",
        Why::UnknownRtt { .. } => "unknown_rtt",
        Why::Nearest { .. } => "nearest",
        Why::SmallGain { .. } => "small_gain",
        Why::NoRoom { .. } => "no_room",
        Why::Waiting { .. } => "waiting",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vessel_labels_are_bounded() {
        let c = Counters::default();
        let ids: Vec<VesselId> = (0..MAX_VESSELS_LABELLED as u64 + 5)
            .map(|n| VesselId(n.to_be_bytes()))
            .collect();
        let labels: Vec<String> = ids.iter().map(|id| c.vessel_label(*id)).collect();
        assert_eq!(labels[0], ids[0].to_hex());
        assert_eq!(
            labels[MAX_VESSELS_LABELLED - 1],
            ids[MAX_VESSELS_LABELLED - 1].to_hex()
        );
        assert_eq!(labels[MAX_VESSELS_LABELLED], OTHER_LABEL);
        // A labelled vessel keeps its label.
        assert_eq!(c.vessel_label(ids[3]), ids[3].to_hex());
    }

    #[test]
    fn placement_reasons_cover_every_kind() {
        use crate::placement::Why;
        let to = libp2p::PeerId::random();
        let every = [
            Why::Pinned,
            Why::NoTraffic {
                reason: String::new(),
            },
            Why::CoolDown {
                left: std::time::Duration::ZERO,
                after: String::new(),
            },
            Why::UnknownRtt { entry: to },
            Why::Nearest {
                here_ms: 1.0,
                next: None,
            },
            Why::SmallGain {
                to,
                here_ms: 1.0,
                there_ms: 1.0,
            },
            Why::NoRoom {
                to,
                here_ms: 1.0,
                there_ms: 1.0,
                lack: String::new(),
            },
            Why::Waiting {
                to,
                here_ms: 1.0,
                there_ms: 1.0,
                streak: 1,
                needed: 3,
            },
        ];
        let kinds: HashSet<&str> = every.iter().map(why_kind).collect();
        assert_eq!(kinds.len(), every.len(), "one kind each");
        for k in &kinds {
            assert!(PLACEMENT_REASONS.contains(k), "{k}");
        }
        assert!(PLACEMENT_REASONS.contains(&"move"));
    }

    /// The membership protocol's counters are on `/metrics` with their
    /// values, drops by reason.
    #[test]
    fn membership_traffic_is_exposed_as_counters() {
        let t = crate::mesh::swim::Traffic {
            sent_messages: 7,
            sent_bytes: 1_234,
            dropped_not_member: 3,
            dropped_oversized: 1,
            ..Default::default()
        };
        let mut r = Registry::with_prefix("meshnode");
        membership_counters(&mut r, &t);
        let mut text = String::new();
        encode(&mut text, &r).unwrap();
        for line in [
            "meshnode_membership_sent_messages_total 7",
            "meshnode_membership_sent_bytes_total 1234",
            "meshnode_membership_received_bytes_total 0",
            "meshnode_membership_dropped_messages_total{reason=\"not_member\"} 3",
            "meshnode_membership_dropped_messages_total{reason=\"oversized\"} 1",
            "meshnode_membership_dropped_messages_total{reason=\"malformed\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in:\n{text}");
        }
    }
}
