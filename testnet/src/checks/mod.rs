//! Assertions (`[[assert]]`): each kind of check is one file here, and owns
//! its fields and their parsing, its description (the report's "check"
//! column), how it is judged during a run, and the detail it reports.
//!
//! Adding a check: write `checks/NAME.rs` with a struct that implements
//! [`Check`] (and [`Judge`], or a judge of its own when it keeps state
//! during a run, as `vessel_once` does), a `parse` function and a `KIND`;
//! then add `pub mod NAME;` and `NAME::KIND` to [`KINDS`] below. Nothing
//! else changes: the scenario parser, the run, the report and
//! `testnet check` go through the trait.

pub mod client_clean;
pub mod client_failover;
pub mod client_latency;
pub mod client_latency_drop;
pub mod converged;
pub mod node_traffic;
pub mod node_version;
pub mod rtt;
pub mod sees;
pub mod vessel_fenced;
pub mod vessel_on;
pub mod vessel_once;

use std::fmt::Debug;
use std::time::{Duration, Instant};

use crate::fields::{secs, Ck, KindFields, Names, ScenarioError, Table, MAX_LATENCY_MS};
use crate::view::{ClientStats, View};

/// Every kind of check, in the order the error for an unknown kind lists
/// them.
pub const KINDS: &[Kind] = &[
    rtt::KIND,
    rtt::ESTIMATED_KIND,
    sees::KIND,
    vessel_on::KIND,
    vessel_once::KIND,
    client_clean::KIND,
    client_latency::KIND,
    client_latency_drop::KIND,
    client_failover::KIND,
    vessel_fenced::KIND,
    node_version::KIND,
    node_traffic::KIND,
    converged::KIND,
];

/// Fields of every `[[assert]]`, whatever its kind.
const COMMON: &[&str] = &["kind", "pending"];
/// The default of `tolerance` (relative), for the checks that take one.
const DEFAULT_TOLERANCE: f64 = 0.2;
/// The largest `tolerance`: ten times the expected value either way.
const MAX_TOLERANCE: f64 = 10.0;
/// The default of `slack_ms` (absolute), for the checks that take one.
const DEFAULT_SLACK_MS: f64 = 2.0;
/// How long a windowed check may take to hold by default.
const DEFAULT_WITHIN: Duration = Duration::from_secs(10);

/// A kind of check: its name and fields, and its parser.
pub struct Kind {
    pub fields: KindFields,
    pub parse: fn(&Table) -> Result<Box<dyn Check>, ScenarioError>,
}

/// When a check is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// Judged every CHECK_EVERY from `at` until it holds, failed if it has
    /// not by `at + within`.
    Window,
    /// Judged once, at the end of the run, over what was recorded.
    AtEnd,
}

/// The client or vessel a check is about: when it is pending, the check is
/// pending too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Client(usize),
    Vessel(usize),
}

/// A parsed check.
pub trait Check: Debug + Send + Sync {
    /// What it checks, in one line (without the window).
    fn describe(&self, names: &Names) -> String;
    fn timing(&self) -> Timing;
    fn subject(&self) -> Option<Subject> {
        None
    }
    /// The last scenario time it reads (a window over a client's answers):
    /// the run lasts at least until then.
    fn reads_until(&self) -> Duration {
        Duration::ZERO
    }
    /// Its judge for one run.
    fn begin(&self) -> Box<dyn Judge>;
}

/// A check during a run.
pub trait Judge: Send + Sync {
    /// It samples the run from t = 0 on a thread of its own ([`Judge::sample`]).
    fn samples(&self) -> bool {
        false
    }
    /// Samples until the run stops.
    fn sample(&self, _view: &dyn View, _t0: Instant) {}
    /// (holds, what was seen).
    fn judge(&self, view: &dyn View) -> (bool, String);
}

/// One `[[assert]]`.
#[derive(Debug)]
pub struct Assertion {
    pub check: Box<dyn Check>,
    /// When checking starts (windowed checks).
    pub at: Duration,
    /// How long it may take to hold (windowed checks).
    pub within: Duration,
    pub pending: Option<String>,
}

impl Assertion {
    /// Reads `assert[i]`.
    pub fn parse(ck: &Ck, i: usize, map: toml::Table) -> Result<Assertion, ScenarioError> {
        let at = format!("assert[{i}]");
        let kind = kind_of(ck, &at, &map)?;
        let all: Vec<&KindFields> = KINDS.iter().map(|k| &k.fields).collect();
        let t = Table::new(ck, at, map, COMMON, &kind.fields, &all)?;
        let check = (kind.parse)(&t)?;
        Ok(Assertion {
            check,
            at: t.dur_or("at", Duration::ZERO)?,
            within: t.dur_or("within", DEFAULT_WITHIN)?,
            pending: t.pending()?,
        })
    }

    /// One line that says what it checks.
    pub fn describe(&self, names: &Names) -> String {
        let body = self.check.describe(names);
        match self.check.timing() {
            Timing::AtEnd => body,
            Timing::Window => format!(
                "{body}, from {} within {}",
                secs(self.at),
                secs(self.within)
            ),
        }
    }

    /// The last scenario time it looks at.
    pub fn end(&self) -> Duration {
        match self.check.timing() {
            Timing::Window => self.at + self.within,
            Timing::AtEnd => self.check.reads_until(),
        }
    }
}

fn kind_of(ck: &Ck, at: &str, map: &toml::Table) -> Result<&'static Kind, ScenarioError> {
    let field = format!("{at}.kind");
    let name = match map.get("kind") {
        Some(toml::Value::String(s)) => s.as_str(),
        Some(v) => return Err(ck.err(&field, format!("must be a string (got {v})"))),
        None => return Err(ck.err(&field, "missing (what to check)")),
    };
    KINDS.iter().find(|k| k.fields.name == name).ok_or_else(|| {
        let names: Vec<&str> = KINDS.iter().map(|k| k.fields.name).collect();
        ck.err(
            &field,
            format!("{name:?} is not an assertion kind ({})", names.join(", ")),
        )
    })
}

/// `tolerance`: relative, 0 to 10, default 0.2.
pub fn tolerance(t: &Table) -> Result<f64, ScenarioError> {
    t.f64_in("tolerance", DEFAULT_TOLERANCE, 0.0, MAX_TOLERANCE)
}

/// `slack_ms`: absolute, default 2 ms.
pub fn slack_ms(t: &Table) -> Result<f64, ScenarioError> {
    t.f64_in("slack_ms", DEFAULT_SLACK_MS, 0.0, MAX_LATENCY_MS)
}

/// `1s–5s`
pub fn window_words(w: &(Duration, Duration)) -> String {
    format!("{}–{}", secs(w.0), secs(w.1))
}

/// The latencies (ms) of a client's answers in a window of scenario time.
pub fn latencies_in(stats: &ClientStats, w: &(Duration, Duration)) -> Vec<f64> {
    let (from, to) = (w.0.as_secs_f64(), w.1.as_secs_f64());
    stats
        .latencies
        .iter()
        .filter(|(t, _)| *t >= from && *t < to)
        .map(|(_, ms)| *ms)
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    NotRun,
    Pass,
    Fail,
    Pending,
}

/// An assertion's result.
#[derive(Debug, Clone)]
pub struct AssertResult {
    pub verdict: Verdict,
    /// When it was decided (seconds since t = 0).
    pub t: Option<f64>,
    pub detail: String,
}

impl AssertResult {
    /// Before the run: pending, or not run yet.
    pub fn before(a: &Assertion) -> AssertResult {
        AssertResult {
            verdict: if a.pending.is_some() {
                Verdict::Pending
            } else {
                Verdict::NotRun
            },
            t: None,
            detail: a
                .pending
                .as_ref()
                .map(|p| format!("pending: {p}"))
                .unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::record::Recorder;
    use crate::view::ClientRt;

    /// A made-up mesh of two nodes, a and b: what `peers` and `ps` answer
    /// is set by the test.
    struct Fake {
        rec: Recorder,
        peers: Vec<serde_json::Value>,
        ps: Vec<serde_json::Value>,
        latency_ms: f64,
        clients: Vec<ClientRt>,
        traffic: crate::traffic::TrafficLog,
        converged: Vec<Option<f64>>,
    }

    impl Fake {
        fn new() -> Fake {
            Fake {
                rec: Recorder::new(true),
                peers: Vec::new(),
                ps: Vec::new(),
                latency_ms: 10.0,
                clients: vec![ClientRt::new(0)],
                traffic: Default::default(),
                converged: Vec::new(),
            }
        }
    }

    const NAMES: [&str; 2] = ["a", "b"];

    impl View for Fake {
        fn rec(&self) -> &Recorder {
            &self.rec
        }
        fn sleep_until(&self, _: Instant, _: Duration) -> bool {
            false
        }
        fn stopping(&self) -> bool {
            true
        }
        fn duration(&self) -> Duration {
            Duration::from_secs(10)
        }
        fn stale_ms(&self) -> u64 {
            2000
        }
        fn node_name(&self, node: usize) -> &str {
            NAMES[node]
        }
        fn node_count(&self) -> usize {
            NAMES.len()
        }
        fn node_up(&self, _: usize) -> bool {
            true
        }
        fn node_addr(&self, node: usize) -> Ipv4Addr {
            Ipv4Addr::new(10, 77, 0, node as u8 + 1)
        }
        fn node_peer_id(&self, node: usize) -> Option<String> {
            Some(format!("ID-{}", NAMES[node]))
        }
        fn node_data_dir(&self, _: usize) -> &Path {
            Path::new("/nonexistent")
        }
        fn enter_node(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn name_of(&self, peer_id: &str) -> Option<String> {
            peer_id.strip_prefix("ID-").map(str::to_string)
        }
        fn peers(&self, _: usize) -> Result<Vec<serde_json::Value>, String> {
            Ok(self.peers.clone())
        }
        fn ps(&self, _: Option<usize>) -> Result<Vec<serde_json::Value>, String> {
            Ok(self.ps.clone())
        }
        fn node_version(&self, node: usize) -> Result<String, String> {
            Ok(["0.2.0", "0.1.0"][node].to_string())
        }
        fn build_version(&self, frozen: bool) -> Option<String> {
            Some(if frozen { "0.1.0" } else { "0.2.0" }.to_string())
        }
        fn link_latency_ms(&self, _: usize, _: usize) -> f64 {
            self.latency_ms
        }
        fn vessel_name(&self, _: usize) -> &str {
            "svc"
        }
        fn vessel_id(&self, _: usize) -> Option<String> {
            None
        }
        fn client(&self, client: usize) -> &ClientRt {
            &self.clients[client]
        }
        fn traffic_rates(&self, w: (Duration, Duration)) -> Option<crate::traffic::Rates> {
            self.traffic.rates(w.0.as_secs_f64(), w.1.as_secs_f64())
        }
        fn converged(&self) -> Vec<Option<f64>> {
            self.converged.clone()
        }
        fn since_cold_start(&self) -> f64 {
            7.0
        }
    }

    fn row(rtt_ms: f64, status_age_ms: u64) -> serde_json::Value {
        serde_json::json!({"peer_id": "ID-b", "member": true, "rtt_ms": rtt_ms, "status_age_ms": status_age_ms})
    }

    #[test]
    fn rtt_counts_only_a_peer_seen_now_within_its_margin() {
        let check = rtt::Rtt {
            from: 0,
            to: 1,
            expect_ms: None,
            tolerance: 0.2,
            slack_ms: 2.0,
            estimated: false,
        };
        let mut view = Fake::new();
        view.peers = vec![row(23.0, 100)];
        let (ok, detail) = check.begin().judge(&view);
        assert!(ok, "{detail}");
        assert_eq!(detail, "measured 23.00 ms, expected 20.00 ± 4.00 ms");
        view.peers = vec![row(25.0, 100)];
        assert!(!check.begin().judge(&view).0, "outside 20 ± 4");
        // A stale status: the RTT is what a dead connection last carried.
        view.peers = vec![row(20.0, 5000)];
        let (ok, detail) = check.begin().judge(&view);
        assert!(!ok);
        assert_eq!(detail, "a does not see b (no RTT, or no fresh status)");
    }

    /// `estimated_rtt` judges the coordinates' estimate, not the measured
    /// RTT, and says how far off it is.
    #[test]
    fn estimated_rtt_judges_the_estimate() {
        let check = rtt::Rtt {
            from: 0,
            to: 1,
            expect_ms: None,
            tolerance: 0.25,
            slack_ms: 2.0,
            estimated: true,
        };
        let mut view = Fake::new();
        let mut r = row(20.0, 100);
        r["estimated_rtt_ms"] = serde_json::json!(23.0);
        view.peers = vec![r.clone()];
        let (ok, detail) = check.begin().judge(&view);
        assert!(ok, "{detail}");
        assert_eq!(
            detail,
            "estimated 23.00 ms (+15%), expected 20.00 ± 5.00 ms"
        );
        r["estimated_rtt_ms"] = serde_json::json!(26.0);
        view.peers = vec![r.clone()];
        assert!(!check.begin().judge(&view).0, "outside 20 ± 5");
        // Measured but not estimated (coordinates not settled): not yet.
        view.peers = vec![row(20.0, 100)];
        let (ok, detail) = check.begin().judge(&view);
        assert!(!ok);
        assert_eq!(
            detail,
            "a does not see b (no settled estimate, or no fresh status)"
        );
        let names = Names {
            nodes: vec!["a".into(), "b".into()],
            ..Names::default()
        };
        assert!(check.describe(&names).starts_with("estimated_rtt(a,b)"));
    }

    #[test]
    fn vessel_on_wants_it_running_on_one_of_the_nodes() {
        let check = vessel_on::VesselOn {
            vessel: 0,
            nodes: vec![1],
            through: None,
        };
        let mut view = Fake::new();
        view.ps = vec![serde_json::json!({"name": "svc", "node": "ID-b", "state": "running"})];
        assert_eq!(check.judge(&view), (true, "svc is running on b".into()));
        view.ps = vec![serde_json::json!({"name": "svc", "node": "ID-b", "state": "migrating"})];
        assert!(!check.judge(&view).0);
        view.ps = vec![serde_json::json!({"name": "svc", "node": "ID-a", "state": "running"})];
        assert!(!check.judge(&view).0);
        view.ps = Vec::new();
        assert_eq!(check.judge(&view), (false, "svc is not in `ps`".into()));
    }

    #[test]
    fn client_checks_read_what_the_client_counted() {
        let view = Fake::new();
        let clean = client_clean::ClientClean { client: 0 };
        assert!(!clean.judge(&view).0, "no answer at all is not clean");
        {
            let mut st = view.clients[0].stats.lock().unwrap();
            st.requests = 4;
            st.ok = 4;
            st.latencies = vec![(1.0, 80.0), (2.0, 82.0), (11.0, 4.0), (12.0, 5.0)];
        }
        assert!(clean.judge(&view).0);
        let secs = Duration::from_secs;
        let drop = client_latency_drop::ClientLatencyDrop {
            client: 0,
            before: (secs(0), secs(5)),
            after: (secs(10), secs(15)),
            factor: 5.0,
        };
        assert_eq!(
            drop.judge(&view),
            (true, "median 80.00 ms before, 4.00 ms after: 20.0×".into())
        );
        view.clients[0].stats.lock().unwrap().lost = 1;
        view.clients[0].stats.lock().unwrap().wrong = 1;
        assert!(!clean.judge(&view).0, "a lost write is not clean");
    }

    #[test]
    fn node_traffic_fails_when_any_node_is_over_the_budget() {
        use crate::traffic::NodeTraffic;
        let view = Fake::new();
        let bytes = |b: u64| NodeTraffic {
            bytes_in: b,
            bytes_out: b,
            packets_in: 0,
            packets_out: 0,
        };
        view.traffic.push(0.0, vec![bytes(0), bytes(0)]);
        view.traffic.push(10.0, vec![bytes(10_000), bytes(25_000)]);
        let secs = Duration::from_secs;
        let check = |max| node_traffic::NodeTrafficCheck {
            window: (secs(0), secs(10)),
            max_kb_per_s: max,
        };
        // a: 2 KB/s in + out, b: 5 KB/s.
        let (ok, detail) = check(4.0).judge(&view);
        assert!(!ok);
        assert_eq!(
            detail,
            "max 5.00 KB/s (b: in 2.50 KB/s, out 2.50 KB/s), mean 3.50 KB/s over 2 nodes, 0.0–10.0s; 1 over 4 KB/s"
        );
        assert!(check(5.0).judge(&view).0);
        let none = node_traffic::NodeTrafficCheck {
            window: (secs(20), secs(30)),
            max_kb_per_s: 4.0,
        };
        assert_eq!(
            none.judge(&view),
            (false, "no traffic snapshots in the window".into())
        );
    }

    /// `converged` takes the setup's notes, asks the nodes that had not
    /// converged, and passes only when every node did, within the bound.
    #[test]
    fn converged_needs_every_node_within_the_bound() {
        let check = converged::Converged {
            within: Duration::from_secs(30),
        };
        let mut view = Fake::new();
        // a converged during the setup; b lists a as up now.
        view.converged = vec![Some(4.0), None];
        view.peers = vec![serde_json::json!({"peer_id": "ID-a", "member": true, "state": "up"})];
        let j = check.begin();
        j.sample(&view, Instant::now());
        let (ok, detail) = j.judge(&view);
        assert!(ok, "{detail}");
        assert!(
            detail.starts_with("converged 7.0s after the cold start (first node 4.0s, last b)"),
            "{detail}"
        );
        // b lists a, but unreachable: b never converges.
        view.peers =
            vec![serde_json::json!({"peer_id": "ID-a", "member": true, "state": "unreachable"})];
        let j = check.begin();
        j.sample(&view, Instant::now());
        let (ok, detail) = j.judge(&view);
        assert!(!ok);
        assert!(
            detail.starts_with("1 of 2 nodes never listed every other as an up member (b)"),
            "{detail}"
        );
        // Both converged, but later than the bound.
        view.converged = vec![Some(4.0), Some(31.0)];
        let j = check.begin();
        j.sample(&view, Instant::now());
        assert!(!j.judge(&view).0);
    }

    #[test]
    fn every_kind_has_a_name_of_its_own_and_refuses_the_others_fields() {
        let names: Vec<&str> = KINDS.iter().map(|k| k.fields.name).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!names[..i].contains(n), "{n} twice");
        }
        let ck = Ck {
            file: "t.toml".into(),
            names: Names {
                nodes: vec!["a".into(), "b".into()],
                ..Names::default()
            },
        };
        let map: toml::Table =
            toml::from_str("kind = \"sees\"\nnode = \"a\"\npeer = \"b\"\nfactor = 3").unwrap();
        let e = Assertion::parse(&ck, 0, map).unwrap_err().0;
        assert_eq!(
            e,
            "t.toml: assert[0].factor: does not apply to kind \"sees\""
        );
    }
}
