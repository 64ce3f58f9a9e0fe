//! The scenario file: TOML in, a checked [`Scenario`] out.
//!
//! Parsing has two steps. serde reads the file into `Raw*` structs that
//! refuse unknown fields (a typo is an error with a line number, never a
//! silently ignored setting); [`Scenario::from_toml`] then checks every
//! value against the named limits below and resolves names to indices.
//! Every error names the file and the field (`rtt.toml: event[2].node: no
//! node named "x"`). docs/testnet.md describes the format.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// At most this many nodes: addresses are 10.77.0.1 to 10.77.0.N, and every
/// node is a real process on a machine that may have two cores.
pub const MAX_NODES: usize = 16;
/// Load generators.
pub const MAX_CLIENTS: usize = 32;
/// Timed events.
pub const MAX_EVENTS: usize = 512;
/// Assertions.
pub const MAX_ASSERTS: usize = 256;
/// Programs (wasm modules or C sources).
pub const MAX_PROGRAMS: usize = 16;
/// Vessels deployed on the mesh.
pub const MAX_VESSELS: usize = 32;
/// Programs run outside the mesh (`meshnode run --tcplisten`).
pub const MAX_SERVERS: usize = 16;
/// How long a run may last after the mesh is up.
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// How long the nodes may take to start and see each other.
pub const MAX_SETUP_TIMEOUT: Duration = Duration::from_secs(600);
/// One-way latency and jitter of a link, in milliseconds.
pub const MAX_LATENCY_MS: f64 = 10_000.0;
/// Bandwidth of a link (10 Gbit/s; 0 means unlimited).
pub const MAX_BANDWIDTH_KBPS: f64 = 10_000_000.0;
/// The longest a packet may wait for the bandwidth limit before it is dropped.
pub const MAX_QUEUE_MS: f64 = 10_000.0;
/// The scenario file itself.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Names of nodes, clients, programs, vessels.
pub const MAX_NAME: usize = 32;
/// Arguments of a program.
pub const MAX_ARGS: usize = 64;
/// The shortest client interval.
pub const MIN_CLIENT_INTERVAL: Duration = Duration::from_millis(10);
/// The shortest node ping and status intervals testnet passes on.
pub const MIN_NODE_INTERVAL: Duration = Duration::from_millis(10);
/// Environment variables of one node (`[[node]] env`, a restart's `env`).
pub const MAX_ENV: usize = 32;
/// The longest value of such a variable.
pub const MAX_ENV_VALUE: usize = 4096;
/// Variables testnet sets for every node itself: a scenario may not set
/// them (each node has a HOME of its own; the user key is given on the
/// command line).
pub const RESERVED_ENV: &[&str] = &[
    "HOME",
    "XDG_CONFIG_HOME",
    "XDG_DATA_HOME",
    "MESHNODE_USER_KEY",
];

/// The default one-way latency of a link nobody described.
const DEFAULT_LATENCY_MS: f64 = 1.0;
/// The default queue bound of a bandwidth-limited link.
const DEFAULT_QUEUE_MS: f64 = 200.0;

/// A checked scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// The file it came from (for messages).
    pub file: PathBuf,
    pub name: String,
    pub description: String,
    pub seed: u64,
    /// How long the run lasts after the mesh is up (t = 0).
    pub duration: Duration,
    pub setup_timeout: Duration,
    pub discovery: Discovery,
    pub ping_interval: Duration,
    pub status_interval: Duration,
    pub nodes: Vec<NodeSpec>,
    /// Parameters of every pair, `links[i][j]` for i ≠ j (symmetric).
    pub links: Vec<Vec<LinkParams>>,
    pub programs: Vec<Program>,
    pub servers: Vec<Server>,
    pub vessels: Vec<VesselSpec>,
    pub clients: Vec<ClientSpec>,
    pub events: Vec<Event>,
    pub asserts: Vec<Assertion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Discovery {
    /// Every node but the first gets the first as `--peer`; mDNS is off.
    Peer,
    /// mDNS only (over the forwarded multicast).
    Mdns,
    /// Both.
    Both,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Native,
    /// The aarch64 build under qemu-user (`MESHNODE_AARCH64_BIN`).
    Aarch64,
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub arch: Arch,
    /// Extra environment of its `meshnode start` (e.g. `MESHNODE_FAULT`),
    /// sorted by name; a `restart` with `env` replaces it.
    pub env: Vec<(String, String)>,
}

/// One direction of a link. Both directions of a pair get the same
/// parameters; each has its own random stream and its own queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinkParams {
    /// One-way delay (an RTT across the link is twice this).
    pub latency_ms: f64,
    /// Each packet's delay is drawn uniformly from latency ± jitter.
    pub jitter_ms: f64,
    /// Probability that a packet is dropped, 0..=1.
    pub loss: f64,
    /// Token-bucket rate in kilobits per second; 0 is unlimited.
    pub bandwidth_kbps: f64,
    /// A packet that would wait longer than this for the bandwidth limit is
    /// dropped (tail drop).
    pub queue_ms: f64,
}

impl Default for LinkParams {
    fn default() -> Self {
        LinkParams {
            latency_ms: DEFAULT_LATENCY_MS,
            jitter_ms: 0.0,
            loss: 0.0,
            bandwidth_kbps: 0.0,
            queue_ms: DEFAULT_QUEUE_MS,
        }
    }
}

/// A wasm module for servers and vessels.
#[derive(Debug, Clone)]
pub struct Program {
    pub name: String,
    pub source: ProgramSource,
}

#[derive(Debug, Clone)]
pub enum ProgramSource {
    /// A ready module (path resolved against the scenario's directory).
    Wasm(PathBuf),
    /// A C source, compiled with `clang --target=wasm32-wasi`.
    C(PathBuf),
}

/// A program run with `meshnode run --tcplisten ADDR:PORT` inside a node's
/// namespace, outside the mesh: a fixed server for clients to measure
/// against (it does not move).
#[derive(Debug, Clone)]
pub struct Server {
    pub name: String,
    pub program: usize,
    pub node: usize,
    pub port: u16,
    pub args: Vec<String>,
}

/// A vessel deployed with `meshnode deploy` at time `at`.
#[derive(Debug, Clone)]
pub struct VesselSpec {
    pub name: String,
    pub program: usize,
    pub on: usize,
    pub at: Duration,
    /// The service port (`deploy --port`), when the node supports it.
    pub port: Option<u16>,
    /// Deployed pinned (`deploy --pin`): placement never moves it, only the
    /// scenario's `migrate` events do.
    pub pin: bool,
    pub args: Vec<String>,
    pub pending: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClientSpec {
    pub name: String,
    /// The node whose namespace the client starts in.
    pub at: usize,
    pub start: Duration,
    /// When it stops (closes its connection); None: at the end of the run.
    pub stop: Option<Duration>,
    pub interval: Duration,
    pub kind: ClientKind,
    pub pending: Option<String>,
}

#[derive(Debug, Clone)]
pub enum ClientKind {
    /// `meshnode peers --json` in the node's namespace every interval; the
    /// smoothed RTT to each peer becomes a series.
    RttProbe,
    /// One TCP connection speaking kvserver's line protocol, one request
    /// per interval, alternating a SET with a GET that reads back the
    /// client's oldest write (see `KV_KEYS`); latency per request.
    Kv { target: Target, timeout: Duration },
}

#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A fixed node's address.
    Node(usize, u16),
    /// The node the client is attached to (it follows `move-client`).
    Local(u16),
}

#[derive(Debug, Clone)]
pub struct Event {
    pub at: Duration,
    pub action: Action,
}

/// Changes to one link (fields left out stay as they are).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LinkChange {
    pub latency_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss: Option<f64>,
    pub bandwidth_kbps: Option<f64>,
    pub queue_ms: Option<f64>,
}

impl LinkChange {
    pub fn apply(&self, p: &mut LinkParams) {
        if let Some(v) = self.latency_ms {
            p.latency_ms = v;
        }
        if let Some(v) = self.jitter_ms {
            p.jitter_ms = v;
        }
        if let Some(v) = self.loss {
            p.loss = v;
        }
        if let Some(v) = self.bandwidth_kbps {
            p.bandwidth_kbps = v;
        }
        if let Some(v) = self.queue_ms {
            p.queue_ms = v;
        }
    }
}

#[derive(Debug, Clone)]
pub enum Action {
    SetLink {
        a: usize,
        b: usize,
        change: LinkChange,
    },
    /// `group[i]` is node i's side; nodes on different sides cannot reach
    /// each other.
    Partition {
        group: Vec<u32>,
    },
    Heal,
    Kill {
        node: usize,
        term: bool,
    },
    Restart {
        node: usize,
        /// Replaces the node's environment from this start on (`env = {}`
        /// drops a fault injection); None keeps it.
        env: Option<Vec<(String, String)>>,
    },
    Migrate {
        vessel: usize,
        to: usize,
    },
    MoveClient {
        client: usize,
        to: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Assertion {
    pub check: Check,
    /// When checking starts (windowed checks).
    pub at: Duration,
    /// How long it may take to hold (windowed checks).
    pub within: Duration,
    pub pending: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Check {
    /// `from`'s smoothed RTT to `to` is `expect_ms` (default: twice the
    /// link's latency at the time) within `tolerance` (relative) or
    /// `slack_ms` (absolute), whichever is wider.
    Rtt {
        from: usize,
        to: usize,
        expect_ms: Option<f64>,
        tolerance: f64,
        slack_ms: f64,
    },
    /// `node` sees `peer` as a connected member with fresh status (or, with
    /// `expect = false`, does not).
    Sees {
        node: usize,
        peer: usize,
        expect: bool,
    },
    /// The vessel is running on one of `nodes`.
    VesselOn { vessel: usize, nodes: Vec<usize> },
    /// At the end: the client had no failed request, no reset and no
    /// failed connect.
    ClientClean { client: usize },
    /// Sampled throughout the run, decided at the end: at no sample did two
    /// nodes hold an `Owned` record of the vessel (a node runs a vessel only
    /// under one, docs/protocol.md).
    VesselOnce { vessel: usize },
    /// At the end: the client's median latency over the window.
    ClientLatency {
        client: usize,
        window: (Duration, Duration),
        expect_ms: f64,
        tolerance: f64,
        slack_ms: f64,
    },
    /// At the end: median latency in `before` ≥ `factor` × median in `after`.
    ClientLatencyDrop {
        client: usize,
        before: (Duration, Duration),
        after: (Duration, Duration),
        factor: f64,
    },
}

impl Check {
    /// Checked once, at the end of the run, over the recorded samples.
    pub fn at_end(&self) -> bool {
        matches!(
            self,
            Check::ClientClean { .. }
                | Check::VesselOnce { .. }
                | Check::ClientLatency { .. }
                | Check::ClientLatencyDrop { .. }
        )
    }
}

// ---------------------------------------------------------------- raw input

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    seed: Option<u64>,
    duration: Option<String>,
    setup_timeout: Option<String>,
    discovery: Option<String>,
    ping_interval: Option<String>,
    status_interval: Option<String>,
    #[serde(default, rename = "node")]
    nodes: Vec<RawNode>,
    link_default: Option<RawLinkParams>,
    #[serde(default, rename = "link")]
    links: Vec<RawLink>,
    #[serde(default, rename = "program")]
    programs: Vec<RawProgram>,
    #[serde(default, rename = "server")]
    servers: Vec<RawServer>,
    #[serde(default, rename = "vessel")]
    vessels: Vec<RawVessel>,
    #[serde(default, rename = "client")]
    clients: Vec<RawClient>,
    #[serde(default, rename = "event")]
    events: Vec<RawEvent>,
    #[serde(default, rename = "assert")]
    asserts: Vec<RawAssert>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: String,
    arch: Option<String>,
    env: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLinkParams {
    latency_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss: Option<f64>,
    bandwidth_kbps: Option<f64>,
    queue_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLink {
    between: Vec<String>,
    latency_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss: Option<f64>,
    bandwidth_kbps: Option<f64>,
    queue_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProgram {
    name: String,
    wasm: Option<String>,
    c_source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    name: Option<String>,
    program: String,
    at: String,
    port: u16,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVessel {
    name: String,
    program: String,
    on: String,
    at: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    pin: bool,
    #[serde(default)]
    args: Vec<String>,
    pending: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    name: String,
    kind: String,
    at: String,
    start: Option<String>,
    stop: Option<String>,
    interval: Option<String>,
    target: Option<String>,
    timeout: Option<String>,
    pending: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent {
    at: String,
    action: String,
    between: Option<Vec<String>>,
    latency_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss: Option<f64>,
    bandwidth_kbps: Option<f64>,
    queue_ms: Option<f64>,
    groups: Option<Vec<Vec<String>>>,
    node: Option<String>,
    signal: Option<String>,
    vessel: Option<String>,
    client: Option<String>,
    to: Option<String>,
    env: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAssert {
    kind: String,
    at: Option<String>,
    within: Option<String>,
    pending: Option<String>,
    from: Option<String>,
    to: Option<String>,
    node: Option<String>,
    peer: Option<String>,
    expect: Option<bool>,
    expect_ms: Option<f64>,
    tolerance: Option<f64>,
    slack_ms: Option<f64>,
    vessel: Option<String>,
    nodes: Option<Vec<String>>,
    client: Option<String>,
    window: Option<Vec<String>>,
    before: Option<Vec<String>>,
    after: Option<Vec<String>>,
    factor: Option<f64>,
}

// ------------------------------------------------------------------ checking

/// A scenario error: the file, the field, and what is wrong.
#[derive(Debug)]
pub struct ScenarioError(pub String);

impl std::fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

/// Parses `250ms`, `5s`, `1.5s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad =
        || format!("`{s}` is not a duration (write e.g. \"250ms\", \"5s\", \"1.5s\" or \"2m\")");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !secs.is_finite() || !(0.0..=1e7).contains(&secs) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}

struct Ck<'a> {
    file: &'a str,
    nodes: Vec<String>,
}

impl Ck<'_> {
    fn err(&self, field: &str, msg: impl std::fmt::Display) -> ScenarioError {
        ScenarioError(format!("{}: {field}: {msg}", self.file))
    }

    fn dur(&self, field: &str, s: &str) -> Result<Duration, ScenarioError> {
        parse_duration(s).map_err(|m| self.err(field, m))
    }

    fn opt_dur(
        &self,
        field: &str,
        s: &Option<String>,
        default: Duration,
    ) -> Result<Duration, ScenarioError> {
        match s {
            Some(s) => self.dur(field, s),
            None => Ok(default),
        }
    }

    fn node(&self, field: &str, name: &str) -> Result<usize, ScenarioError> {
        self.nodes.iter().position(|n| n == name).ok_or_else(|| {
            self.err(
                field,
                format!("no node named {name:?} (nodes: {})", self.nodes.join(", ")),
            )
        })
    }

    fn need<'v, T>(
        &self,
        field: &str,
        v: &'v Option<T>,
        why: &str,
    ) -> Result<&'v T, ScenarioError> {
        v.as_ref()
            .ok_or_else(|| self.err(field, format!("missing ({why})")))
    }

    fn name(&self, field: &str, name: &str) -> Result<(), ScenarioError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
            && name.as_bytes()[0].is_ascii_alphanumeric();
        if ok {
            Ok(())
        } else {
            Err(self.err(
                field,
                format!(
                    "{name:?} is not a name (1 to {MAX_NAME} of a-z, 0-9, - and _, starting with a letter or digit)"
                ),
            ))
        }
    }

    fn range(&self, field: &str, v: f64, lo: f64, hi: f64) -> Result<f64, ScenarioError> {
        if v.is_finite() && v >= lo && v <= hi {
            Ok(v)
        } else {
            Err(self.err(field, format!("must be between {lo} and {hi} (got {v})")))
        }
    }

    fn window(
        &self,
        field: &str,
        w: &Option<Vec<String>>,
    ) -> Result<(Duration, Duration), ScenarioError> {
        let w = self.need(field, w, "a window [\"FROM\", \"TO\"]")?;
        if w.len() != 2 {
            return Err(self.err(field, "must be two times, [\"FROM\", \"TO\"]"));
        }
        let a = self.dur(field, &w[0])?;
        let b = self.dur(field, &w[1])?;
        if b <= a {
            return Err(self.err(field, "the window ends before it starts"));
        }
        Ok((a, b))
    }

    fn link_change(
        &self,
        field: &str,
        latency_ms: Option<f64>,
        jitter_ms: Option<f64>,
        loss: Option<f64>,
        bandwidth_kbps: Option<f64>,
        queue_ms: Option<f64>,
    ) -> Result<LinkChange, ScenarioError> {
        let opt = |name: &str, v: Option<f64>, hi: f64| -> Result<Option<f64>, ScenarioError> {
            v.map(|v| self.range(&format!("{field}.{name}"), v, 0.0, hi))
                .transpose()
        };
        Ok(LinkChange {
            latency_ms: opt("latency_ms", latency_ms, MAX_LATENCY_MS)?,
            jitter_ms: opt("jitter_ms", jitter_ms, MAX_LATENCY_MS)?,
            loss: opt("loss", loss, 1.0)?,
            bandwidth_kbps: opt("bandwidth_kbps", bandwidth_kbps, MAX_BANDWIDTH_KBPS)?,
            queue_ms: opt("queue_ms", queue_ms, MAX_QUEUE_MS)?,
        })
    }

    /// An environment table: names a shell would accept, no variable testnet
    /// sets itself, values without NUL, named limits.
    fn env(
        &self,
        field: &str,
        env: &BTreeMap<String, String>,
    ) -> Result<Vec<(String, String)>, ScenarioError> {
        if env.len() > MAX_ENV {
            return Err(self.err(field, format!("{} given, at most {MAX_ENV}", env.len())));
        }
        for (k, v) in env {
            let f = format!("{field}.{k}");
            let ok = !k.is_empty()
                && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !k.as_bytes()[0].is_ascii_digit();
            if !ok {
                return Err(self.err(
                    &f,
                    format!("{k:?} is not a variable name (A-Z, a-z, 0-9 and _, not starting with a digit)"),
                ));
            }
            if RESERVED_ENV.contains(&k.as_str()) {
                return Err(self.err(
                    &f,
                    "testnet sets it for every node (each has a HOME of its own; the user key is on the command line)",
                ));
            }
            if v.len() > MAX_ENV_VALUE || v.contains('\0') {
                return Err(self.err(
                    &f,
                    format!("a value is at most {MAX_ENV_VALUE} bytes, without NUL"),
                ));
            }
        }
        Ok(env.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    fn pair(&self, field: &str, between: &[String]) -> Result<(usize, usize), ScenarioError> {
        if between.len() != 2 {
            return Err(self.err(field, "must name two nodes, [\"a\", \"b\"]"));
        }
        let a = self.node(field, &between[0])?;
        let b = self.node(field, &between[1])?;
        if a == b {
            return Err(self.err(field, "a link joins two different nodes"));
        }
        Ok((a, b))
    }
}

fn count(ck: &Ck, what: &str, n: usize, max: usize) -> Result<(), ScenarioError> {
    if n > max {
        Err(ck.err(what, format!("{n} given, at most {max}")))
    } else {
        Ok(())
    }
}

fn unique(ck: &Ck, what: &str, names: &[&str]) -> Result<(), ScenarioError> {
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(ck.err(&format!("{what}[{i}].name"), format!("{n:?} is used twice")));
        }
    }
    Ok(())
}

fn pending(ck: &Ck, field: &str, p: &Option<String>) -> Result<Option<String>, ScenarioError> {
    match p {
        Some(s) if s.trim().is_empty() => Err(ck.err(field, "say why it is pending")),
        other => Ok(other.clone()),
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path)
            .map_err(|e| ScenarioError(format!("{shown}: cannot read: {e}")))?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(ScenarioError(format!(
                "{shown}: {} bytes, more than the {MAX_FILE_BYTES} a scenario may have",
                meta.len()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError(format!("{shown}: cannot read: {e}")))?;
        Scenario::from_toml(path, &text)
    }

    /// Checks a scenario given as text; `path` names it in errors and
    /// anchors relative paths.
    pub fn from_toml(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let raw: RawScenario =
            toml::from_str(text).map_err(|e| ScenarioError(format!("{shown}: {e}")))?;
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut ck = Ck {
            file: &shown,
            nodes: Vec::new(),
        };

        // Nodes.
        if raw.nodes.is_empty() {
            return Err(ck.err("node", "a scenario needs at least one [[node]]"));
        }
        count(&ck, "node", raw.nodes.len(), MAX_NODES)?;
        let mut nodes = Vec::new();
        for (i, n) in raw.nodes.iter().enumerate() {
            ck.name(&format!("node[{i}].name"), &n.name)?;
            let arch = match n.arch.as_deref() {
                None | Some("native") => Arch::Native,
                Some("aarch64") => Arch::Aarch64,
                Some(other) => {
                    return Err(ck.err(
                        &format!("node[{i}].arch"),
                        format!("{other:?} is not an arch (\"native\" or \"aarch64\")"),
                    ))
                }
            };
            let env = match &n.env {
                Some(e) => ck.env(&format!("node[{i}].env"), e)?,
                None => Vec::new(),
            };
            nodes.push(NodeSpec {
                name: n.name.clone(),
                arch,
                env,
            });
        }
        unique(
            &ck,
            "node",
            &nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        )?;
        ck.nodes = nodes.iter().map(|n| n.name.clone()).collect();
        let n = nodes.len();

        let name = match &raw.name {
            Some(s) => {
                ck.name("name", s)?;
                s.clone()
            }
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "scenario".into()),
        };

        let discovery = match raw.discovery.as_deref() {
            None | Some("both") => Discovery::Both,
            Some("peer") => Discovery::Peer,
            Some("mdns") => Discovery::Mdns,
            Some(other) => {
                return Err(ck.err(
                    "discovery",
                    format!("{other:?} is not a discovery mode (\"peer\", \"mdns\" or \"both\")"),
                ))
            }
        };
        let ping_interval = ck.opt_dur(
            "ping_interval",
            &raw.ping_interval,
            Duration::from_millis(200),
        )?;
        let status_interval = ck.opt_dur(
            "status_interval",
            &raw.status_interval,
            Duration::from_millis(500),
        )?;
        for (f, d) in [
            ("ping_interval", ping_interval),
            ("status_interval", status_interval),
        ] {
            if d < MIN_NODE_INTERVAL {
                return Err(ck.err(f, format!("at least {MIN_NODE_INTERVAL:?}")));
            }
        }
        let setup_timeout =
            ck.opt_dur("setup_timeout", &raw.setup_timeout, Duration::from_secs(60))?;
        if setup_timeout > MAX_SETUP_TIMEOUT || setup_timeout.is_zero() {
            return Err(ck.err(
                "setup_timeout",
                format!("must be above 0 and at most {MAX_SETUP_TIMEOUT:?}"),
            ));
        }

        // Links.
        let d = raw.link_default.unwrap_or_default();
        let dc = ck.link_change(
            "link_default",
            d.latency_ms,
            d.jitter_ms,
            d.loss,
            d.bandwidth_kbps,
            d.queue_ms,
        )?;
        let mut default = LinkParams::default();
        dc.apply(&mut default);
        let mut links = vec![vec![default; n]; n];
        let mut given = vec![vec![false; n]; n];
        for (i, l) in raw.links.iter().enumerate() {
            let f = format!("link[{i}]");
            let (a, b) = ck.pair(&format!("{f}.between"), &l.between)?;
            if given[a][b] {
                return Err(ck.err(
                    &format!("{f}.between"),
                    format!(
                        "the link {}–{} is described twice",
                        nodes[a].name, nodes[b].name
                    ),
                ));
            }
            given[a][b] = true;
            given[b][a] = true;
            let c = ck.link_change(
                &f,
                l.latency_ms,
                l.jitter_ms,
                l.loss,
                l.bandwidth_kbps,
                l.queue_ms,
            )?;
            c.apply(&mut links[a][b]);
            c.apply(&mut links[b][a]);
        }

        // Programs.
        count(&ck, "program", raw.programs.len(), MAX_PROGRAMS)?;
        let mut programs = Vec::new();
        for (i, p) in raw.programs.iter().enumerate() {
            let f = format!("program[{i}]");
            ck.name(&format!("{f}.name"), &p.name)?;
            let source = match (&p.wasm, &p.c_source) {
                (Some(w), None) => ProgramSource::Wasm(dir.join(w)),
                (None, Some(c)) => ProgramSource::C(dir.join(c)),
                _ => return Err(ck.err(&f, "give exactly one of `wasm` and `c_source`")),
            };
            programs.push(Program {
                name: p.name.clone(),
                source,
            });
        }
        unique(
            &ck,
            "program",
            &programs.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        )?;
        let program = |field: &str, name: &str| -> Result<usize, ScenarioError> {
            programs
                .iter()
                .position(|p| p.name == name)
                .ok_or_else(|| ck.err(field, format!("no [[program]] named {name:?}")))
        };

        // Servers.
        count(&ck, "server", raw.servers.len(), MAX_SERVERS)?;
        let mut servers = Vec::new();
        for (i, s) in raw.servers.iter().enumerate() {
            let f = format!("server[{i}]");
            let prog = program(&format!("{f}.program"), &s.program)?;
            let node = ck.node(&format!("{f}.at"), &s.at)?;
            let name = s
                .name
                .clone()
                .unwrap_or_else(|| format!("{}@{}", s.program, s.at));
            if s.port == 0 {
                return Err(ck.err(
                    &format!("{f}.port"),
                    "a server needs a fixed port (1-65535)",
                ));
            }
            if s.args.len() > MAX_ARGS {
                return Err(ck.err(&format!("{f}.args"), format!("at most {MAX_ARGS}")));
            }
            servers.push(Server {
                name,
                program: prog,
                node,
                port: s.port,
                args: s.args.clone(),
            });
        }
        for (i, a) in servers.iter().enumerate() {
            if servers[..i]
                .iter()
                .any(|b| b.node == a.node && b.port == a.port)
            {
                return Err(ck.err(
                    &format!("server[{i}].port"),
                    "two servers on one node and port",
                ));
            }
        }

        // Vessels.
        count(&ck, "vessel", raw.vessels.len(), MAX_VESSELS)?;
        let mut vessels = Vec::new();
        for (i, v) in raw.vessels.iter().enumerate() {
            let f = format!("vessel[{i}]");
            ck.name(&format!("{f}.name"), &v.name)?;
            if v.args.len() > MAX_ARGS {
                return Err(ck.err(&format!("{f}.args"), format!("at most {MAX_ARGS}")));
            }
            vessels.push(VesselSpec {
                name: v.name.clone(),
                program: program(&format!("{f}.program"), &v.program)?,
                on: ck.node(&format!("{f}.on"), &v.on)?,
                at: ck.opt_dur(&format!("{f}.at"), &v.at, Duration::ZERO)?,
                port: v.port,
                pin: v.pin,
                args: v.args.clone(),
                pending: pending(&ck, &format!("{f}.pending"), &v.pending)?,
            });
        }
        unique(
            &ck,
            "vessel",
            &vessels.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(),
        )?;

        // Clients.
        count(&ck, "client", raw.clients.len(), MAX_CLIENTS)?;
        let mut clients = Vec::new();
        for (i, c) in raw.clients.iter().enumerate() {
            let f = format!("client[{i}]");
            ck.name(&format!("{f}.name"), &c.name)?;
            let at = ck.node(&format!("{f}.at"), &c.at)?;
            let kind = match c.kind.as_str() {
                "rtt-probe" => {
                    for (field, v) in [
                        ("target", c.target.is_some()),
                        ("timeout", c.timeout.is_some()),
                    ] {
                        if v {
                            return Err(
                                ck.err(&format!("{f}.{field}"), "does not apply to an rtt-probe")
                            );
                        }
                    }
                    ClientKind::RttProbe
                }
                "kv" => {
                    let t = ck.need(
                        &format!("{f}.target"),
                        &c.target,
                        "\"NODE:PORT\", or \":PORT\" for the node the client is at",
                    )?;
                    let tf = format!("{f}.target");
                    let (host, port) = t.rsplit_once(':').ok_or_else(|| {
                        ck.err(&tf, format!("{t:?} is not \"NODE:PORT\" or \":PORT\""))
                    })?;
                    let port: u16 =
                        port.parse().ok().filter(|p| *p > 0).ok_or_else(|| {
                            ck.err(&tf, format!("{port:?} is not a port (1-65535)"))
                        })?;
                    let target = if host.is_empty() {
                        Target::Local(port)
                    } else {
                        Target::Node(ck.node(&tf, host)?, port)
                    };
                    ClientKind::Kv {
                        target,
                        timeout: ck.opt_dur(
                            &format!("{f}.timeout"),
                            &c.timeout,
                            Duration::from_secs(5),
                        )?,
                    }
                }
                other => {
                    return Err(ck.err(
                        &format!("{f}.kind"),
                        format!("{other:?} is not a client kind (\"rtt-probe\" or \"kv\")"),
                    ))
                }
            };
            let interval = ck.opt_dur(
                &format!("{f}.interval"),
                &c.interval,
                Duration::from_secs(1),
            )?;
            if interval < MIN_CLIENT_INTERVAL {
                return Err(ck.err(
                    &format!("{f}.interval"),
                    format!("at least {MIN_CLIENT_INTERVAL:?}"),
                ));
            }
            let start = ck.opt_dur(&format!("{f}.start"), &c.start, Duration::ZERO)?;
            let stop = c
                .stop
                .as_ref()
                .map(|s| ck.dur(&format!("{f}.stop"), s))
                .transpose()?;
            if stop.is_some_and(|s| s <= start) {
                return Err(ck.err(
                    &format!("{f}.stop"),
                    format!("must be after its start ({})", secs(start)),
                ));
            }
            clients.push(ClientSpec {
                name: c.name.clone(),
                at,
                start,
                stop,
                interval,
                kind,
                pending: pending(&ck, &format!("{f}.pending"), &c.pending)?,
            });
        }
        unique(
            &ck,
            "client",
            &clients.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
        )?;
        let client = |field: &str, name: &str| -> Result<usize, ScenarioError> {
            clients
                .iter()
                .position(|c| c.name == name)
                .ok_or_else(|| ck.err(field, format!("no [[client]] named {name:?}")))
        };
        let vessel = |field: &str, name: &str| -> Result<usize, ScenarioError> {
            vessels
                .iter()
                .position(|v| v.name == name)
                .ok_or_else(|| ck.err(field, format!("no [[vessel]] named {name:?}")))
        };

        // Events.
        count(&ck, "event", raw.events.len(), MAX_EVENTS)?;
        let mut events = Vec::new();
        for (i, e) in raw.events.iter().enumerate() {
            let f = format!("event[{i}]");
            let at = ck.dur(&format!("{f}.at"), &e.at)?;
            let allowed: &[&str] = match e.action.as_str() {
                "set-link" => &["between", "latency_ms", "jitter_ms", "loss", "bandwidth_kbps", "queue_ms"],
                "partition" => &["groups"],
                "heal" => &[],
                "kill" => &["node", "signal"],
                "restart" => &["node", "env"],
                "migrate" => &["vessel", "to"],
                "move-client" => &["client", "to"],
                other => {
                    return Err(ck.err(
                        &format!("{f}.action"),
                        format!(
                            "{other:?} is not an action (set-link, partition, heal, kill, restart, migrate, move-client)"
                        ),
                    ))
                }
            };
            let present = [
                ("between", e.between.is_some()),
                ("latency_ms", e.latency_ms.is_some()),
                ("jitter_ms", e.jitter_ms.is_some()),
                ("loss", e.loss.is_some()),
                ("bandwidth_kbps", e.bandwidth_kbps.is_some()),
                ("queue_ms", e.queue_ms.is_some()),
                ("groups", e.groups.is_some()),
                ("node", e.node.is_some()),
                ("signal", e.signal.is_some()),
                ("vessel", e.vessel.is_some()),
                ("client", e.client.is_some()),
                ("to", e.to.is_some()),
                ("env", e.env.is_some()),
            ];
            for (field, there) in present {
                if there && !allowed.contains(&field) {
                    return Err(ck.err(
                        &format!("{f}.{field}"),
                        format!("does not apply to action {:?}", e.action),
                    ));
                }
            }
            let action = match e.action.as_str() {
                "set-link" => {
                    let between = ck.need(
                        &format!("{f}.between"),
                        &e.between,
                        "the two nodes of the link",
                    )?;
                    let (a, b) = ck.pair(&format!("{f}.between"), between)?;
                    let change = ck.link_change(
                        &f,
                        e.latency_ms,
                        e.jitter_ms,
                        e.loss,
                        e.bandwidth_kbps,
                        e.queue_ms,
                    )?;
                    if change == LinkChange::default() {
                        return Err(ck.err(&f, "set-link changes nothing (give latency_ms, jitter_ms, loss, bandwidth_kbps or queue_ms)"));
                    }
                    Action::SetLink { a, b, change }
                }
                "partition" => {
                    let groups = ck.need(
                        &format!("{f}.groups"),
                        &e.groups,
                        "e.g. [[\"c\"]] cuts c off from the rest",
                    )?;
                    if groups.is_empty() {
                        return Err(ck.err(&format!("{f}.groups"), "name at least one group"));
                    }
                    let mut group = vec![0u32; n];
                    let mut seen = vec![false; n];
                    for (g, members) in groups.iter().enumerate() {
                        for m in members {
                            let idx = ck.node(&format!("{f}.groups[{g}]"), m)?;
                            if seen[idx] {
                                return Err(ck.err(
                                    &format!("{f}.groups"),
                                    format!("{m:?} is in two groups"),
                                ));
                            }
                            seen[idx] = true;
                            group[idx] = g as u32 + 1;
                        }
                    }
                    Action::Partition { group }
                }
                "heal" => Action::Heal,
                "kill" => {
                    let node = ck.node(
                        &format!("{f}.node"),
                        ck.need(&format!("{f}.node"), &e.node, "the node to kill")?,
                    )?;
                    let term = match e.signal.as_deref() {
                        None | Some("kill") => false,
                        Some("term") => true,
                        Some(other) => {
                            return Err(ck.err(
                                &format!("{f}.signal"),
                                format!("{other:?} is not \"kill\" or \"term\""),
                            ))
                        }
                    };
                    Action::Kill { node, term }
                }
                "restart" => Action::Restart {
                    node: ck.node(
                        &format!("{f}.node"),
                        ck.need(&format!("{f}.node"), &e.node, "the node to restart")?,
                    )?,
                    env: e
                        .env
                        .as_ref()
                        .map(|v| ck.env(&format!("{f}.env"), v))
                        .transpose()?,
                },
                "migrate" => Action::Migrate {
                    vessel: vessel(
                        &format!("{f}.vessel"),
                        ck.need(&format!("{f}.vessel"), &e.vessel, "the vessel to move")?,
                    )?,
                    to: ck.node(
                        &format!("{f}.to"),
                        ck.need(&format!("{f}.to"), &e.to, "the node to move it to")?,
                    )?,
                },
                "move-client" => Action::MoveClient {
                    client: client(
                        &format!("{f}.client"),
                        ck.need(&format!("{f}.client"), &e.client, "the client to move")?,
                    )?,
                    to: ck.node(
                        &format!("{f}.to"),
                        ck.need(&format!("{f}.to"), &e.to, "the node it moves to")?,
                    )?,
                },
                _ => unreachable!("checked above"),
            };
            events.push(Event { at, action });
        }
        // Stable: events at the same time run in file order.
        events.sort_by_key(|e| e.at);

        // Assertions.
        count(&ck, "assert", raw.asserts.len(), MAX_ASSERTS)?;
        let mut asserts = Vec::new();
        for (i, a) in raw.asserts.iter().enumerate() {
            let f = format!("assert[{i}]");
            let fld = |name: &str| format!("{f}.{name}");
            let allowed: &[&str] = match a.kind.as_str() {
                "rtt" => &["at", "within", "from", "to", "expect_ms", "tolerance", "slack_ms"],
                "sees" => &["at", "within", "node", "peer", "expect"],
                "vessel-on" => &["at", "within", "vessel", "nodes"],
                "vessel-once" => &["vessel"],
                "client-clean" => &["client"],
                "client-latency" => &["client", "window", "expect_ms", "tolerance", "slack_ms"],
                "client-latency-drop" => &["client", "before", "after", "factor"],
                other => {
                    return Err(ck.err(
                        &fld("kind"),
                        format!(
                            "{other:?} is not an assertion kind (rtt, sees, vessel-on, vessel-once, client-clean, client-latency, client-latency-drop)"
                        ),
                    ))
                }
            };
            let present = [
                ("at", a.at.is_some()),
                ("within", a.within.is_some()),
                ("from", a.from.is_some()),
                ("to", a.to.is_some()),
                ("node", a.node.is_some()),
                ("peer", a.peer.is_some()),
                ("expect", a.expect.is_some()),
                ("expect_ms", a.expect_ms.is_some()),
                ("tolerance", a.tolerance.is_some()),
                ("slack_ms", a.slack_ms.is_some()),
                ("vessel", a.vessel.is_some()),
                ("nodes", a.nodes.is_some()),
                ("client", a.client.is_some()),
                ("window", a.window.is_some()),
                ("before", a.before.is_some()),
                ("after", a.after.is_some()),
                ("factor", a.factor.is_some()),
            ];
            for (field, there) in present {
                if there && !allowed.contains(&field) {
                    return Err(ck.err(&fld(field), format!("does not apply to kind {:?}", a.kind)));
                }
            }
            let tolerance = ck.range(&fld("tolerance"), a.tolerance.unwrap_or(0.2), 0.0, 10.0)?;
            let slack_ms = ck.range(
                &fld("slack_ms"),
                a.slack_ms.unwrap_or(2.0),
                0.0,
                MAX_LATENCY_MS,
            )?;
            let node_of =
                |field: &str, v: &Option<String>, why: &str| -> Result<usize, ScenarioError> {
                    ck.node(&fld(field), ck.need(&fld(field), v, why)?)
                };
            let client_of = || -> Result<usize, ScenarioError> {
                client(
                    &fld("client"),
                    ck.need(&fld("client"), &a.client, "the client's name")?,
                )
            };
            let check = match a.kind.as_str() {
                "rtt" => {
                    let from = node_of("from", &a.from, "the measuring node")?;
                    let to = node_of("to", &a.to, "the measured peer")?;
                    if from == to {
                        return Err(ck.err(&fld("to"), "an RTT is between two different nodes"));
                    }
                    let expect_ms = a
                        .expect_ms
                        .map(|v| ck.range(&fld("expect_ms"), v, 0.0, 2.0 * MAX_LATENCY_MS))
                        .transpose()?;
                    Check::Rtt {
                        from,
                        to,
                        expect_ms,
                        tolerance,
                        slack_ms,
                    }
                }
                "sees" => {
                    let node = node_of("node", &a.node, "the observing node")?;
                    let peer = node_of("peer", &a.peer, "the node it should (not) see")?;
                    if node == peer {
                        return Err(ck.err(&fld("peer"), "a node does not list itself"));
                    }
                    Check::Sees {
                        node,
                        peer,
                        expect: a.expect.unwrap_or(true),
                    }
                }
                "vessel-on" => {
                    let v = vessel(
                        &fld("vessel"),
                        ck.need(&fld("vessel"), &a.vessel, "the vessel's name")?,
                    )?;
                    let list = ck.need(&fld("nodes"), &a.nodes, "the nodes it may run on")?;
                    if list.is_empty() {
                        return Err(ck.err(&fld("nodes"), "name at least one node"));
                    }
                    let nodes = list
                        .iter()
                        .map(|m| ck.node(&fld("nodes"), m))
                        .collect::<Result<Vec<_>, _>>()?;
                    Check::VesselOn { vessel: v, nodes }
                }
                "vessel-once" => Check::VesselOnce {
                    vessel: vessel(
                        &fld("vessel"),
                        ck.need(&fld("vessel"), &a.vessel, "the vessel's name")?,
                    )?,
                },
                "client-clean" => Check::ClientClean {
                    client: client_of()?,
                },
                "client-latency" => {
                    let expect_ms = ck.range(
                        &fld("expect_ms"),
                        *ck.need(&fld("expect_ms"), &a.expect_ms, "the expected median in ms")?,
                        0.0,
                        100.0 * MAX_LATENCY_MS,
                    )?;
                    Check::ClientLatency {
                        client: client_of()?,
                        window: ck.window(&fld("window"), &a.window)?,
                        expect_ms,
                        tolerance,
                        slack_ms,
                    }
                }
                "client-latency-drop" => Check::ClientLatencyDrop {
                    client: client_of()?,
                    before: ck.window(&fld("before"), &a.before)?,
                    after: ck.window(&fld("after"), &a.after)?,
                    factor: ck.range(&fld("factor"), a.factor.unwrap_or(5.0), 1.0, 1e6)?,
                },
                _ => unreachable!("checked above"),
            };
            let mut pend = pending(&ck, &fld("pending"), &a.pending)?;
            // An assertion about a pending client or vessel is pending too.
            let inherited = match &check {
                Check::ClientClean { client }
                | Check::ClientLatency { client, .. }
                | Check::ClientLatencyDrop { client, .. } => clients[*client]
                    .pending
                    .as_ref()
                    .map(|p| format!("client {} is pending: {p}", clients[*client].name)),
                Check::VesselOn { vessel, .. } | Check::VesselOnce { vessel } => vessels[*vessel]
                    .pending
                    .as_ref()
                    .map(|p| format!("vessel {} is pending: {p}", vessels[*vessel].name)),
                _ => None,
            };
            if pend.is_none() {
                pend = inherited;
            }
            asserts.push(Assertion {
                at: ck.opt_dur(&fld("at"), &a.at, Duration::ZERO)?,
                within: ck.opt_dur(&fld("within"), &a.within, Duration::from_secs(10))?,
                check,
                pending: pend,
            });
        }

        // The run's length.
        let mut end = Duration::ZERO;
        for e in &events {
            end = end.max(e.at);
        }
        for a in &asserts {
            if !a.check.at_end() {
                end = end.max(a.at + a.within);
            }
            match &a.check {
                Check::ClientLatency { window, .. } => end = end.max(window.1),
                Check::ClientLatencyDrop { before, after, .. } => {
                    end = end.max(before.1).max(after.1)
                }
                _ => {}
            }
        }
        for v in &vessels {
            end = end.max(v.at);
        }
        for c in &clients {
            end = end.max(c.start).max(c.stop.unwrap_or_default());
        }
        let duration = match &raw.duration {
            Some(s) => {
                let d = ck.dur("duration", s)?;
                if d < end {
                    return Err(ck.err(
                        "duration",
                        format!("{d:?} is shorter than the last event, assertion window or start ({end:?})"),
                    ));
                }
                d
            }
            None => end + Duration::from_secs(1),
        };
        if duration > MAX_DURATION {
            return Err(ck.err(
                "duration",
                format!("{duration:?} is longer than the {MAX_DURATION:?} a run may last"),
            ));
        }

        Ok(Scenario {
            file: path.to_path_buf(),
            name,
            description: raw.description.unwrap_or_default(),
            seed: raw.seed.unwrap_or(1),
            duration,
            setup_timeout,
            discovery,
            ping_interval,
            status_interval,
            nodes,
            links,
            programs,
            servers,
            vessels,
            clients,
            events,
            asserts,
        })
    }

    /// A node's address in its namespace.
    pub fn addr(index: usize) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 77, 0, index as u8 + 1)
    }

    /// One line that says what an assertion checks.
    pub fn describe(&self, a: &Assertion) -> String {
        let nm = |i: usize| self.nodes[i].name.as_str();
        let w = |d: &(Duration, Duration)| format!("{}–{}", secs(d.0), secs(d.1));
        let body = match &a.check {
            Check::Rtt {
                from,
                to,
                expect_ms,
                tolerance,
                slack_ms,
            } => {
                let e = match expect_ms {
                    Some(e) => format!("{e} ms"),
                    None => "2×latency".into(),
                };
                format!(
                    "rtt({},{}) ≈ {e} (±{:.0}% or {slack_ms} ms)",
                    nm(*from),
                    nm(*to),
                    tolerance * 100.0
                )
            }
            Check::Sees { node, peer, expect } => {
                format!(
                    "{} {} {}",
                    nm(*node),
                    if *expect { "sees" } else { "does not see" },
                    nm(*peer)
                )
            }
            Check::VesselOn { vessel, nodes } => format!(
                "vessel {} runs on {}",
                self.vessels[*vessel].name,
                nodes
                    .iter()
                    .map(|i| nm(*i))
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
            Check::VesselOnce { vessel } => format!(
                "vessel {} never runs on two nodes (an Owned record on at most one node at every sample)",
                self.vessels[*vessel].name
            ),
            Check::ClientClean { client } => format!(
                "client {}: no failed request, no lost write, no reset, no failed connect",
                self.clients[*client].name
            ),
            Check::ClientLatency {
                client,
                window,
                expect_ms,
                tolerance,
                slack_ms,
            } => format!(
                "client {} median latency in {} ≈ {expect_ms} ms (±{:.0}% or {slack_ms} ms)",
                self.clients[*client].name,
                w(window),
                tolerance * 100.0
            ),
            Check::ClientLatencyDrop {
                client,
                before,
                after,
                factor,
            } => format!(
                "client {} median latency falls ≥{factor}× from {} to {}",
                self.clients[*client].name,
                w(before),
                w(after)
            ),
        };
        if a.check.at_end() {
            body
        } else {
            format!("{body}, from {} within {}", secs(a.at), secs(a.within))
        }
    }
}

/// `5s`, `1.5s`, `250ms`.
pub fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, String> {
        Scenario::from_toml(Path::new("t.toml"), text).map_err(|e| e.0)
    }

    const BASE: &str = r#"
        seed = 7
        [[node]]
        name = "a"
        [[node]]
        name = "b"
        [[node]]
        name = "c"
        [link_default]
        latency_ms = 5
    "#;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("5h").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn links_default_and_override_symmetrically() {
        let s = parse(&format!(
            "{BASE}\n[[link]]\nbetween = [\"a\", \"c\"]\nlatency_ms = 40\njitter_ms = 2.5\n"
        ))
        .unwrap();
        assert_eq!(s.links[0][1].latency_ms, 5.0);
        assert_eq!(s.links[0][2].latency_ms, 40.0);
        assert_eq!(s.links[2][0].latency_ms, 40.0);
        assert_eq!(s.links[2][0].jitter_ms, 2.5);
        assert_eq!(s.seed, 7);
        assert_eq!(s.name, "t");
    }

    #[test]
    fn errors_name_the_file_and_field() {
        let e = parse(&format!("{BASE}\n[[link]]\nbetween = [\"a\", \"x\"]\n")).unwrap_err();
        assert!(
            e.starts_with("t.toml: link[0].between: no node named \"x\""),
            "{e}"
        );
        let e = parse(&format!(
            "{BASE}\n[[link]]\nbetween = [\"a\", \"b\"]\nloss = 1.5\n"
        ))
        .unwrap_err();
        assert!(e.contains("link[0].loss: must be between 0 and 1"), "{e}");
        let e = parse(&format!(
            "{BASE}\n[[event]]\nat = \"5\"\naction = \"heal\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("event[0].at: `5` is not a duration"), "{e}");
        let e = parse(&format!(
            "{BASE}\n[[event]]\nat = \"5s\"\naction = \"heal\"\nnode = \"a\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("event[0].node: does not apply to action \"heal\""),
            "{e}"
        );
        let e = parse(&format!(
            "{BASE}\n[[assert]]\nkind = \"rtt\"\nfrom = \"a\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("assert[0].to: missing"), "{e}");
        let e = parse(&format!("latncy = 3\n{BASE}")).unwrap_err();
        assert!(e.contains("unknown field `latncy`"), "{e}");
    }

    #[test]
    fn limits_are_enforced() {
        let mut text = String::new();
        for i in 0..=MAX_NODES {
            text.push_str(&format!("[[node]]\nname = \"n{i}\"\n"));
        }
        let e = parse(&text).unwrap_err();
        assert!(e.contains("node: 17 given, at most 16"), "{e}");
        let e = parse(&format!("duration = \"2h\"\n{BASE}")).unwrap_err();
        assert!(e.contains("duration:"), "{e}");
        let e = parse("[[node]]\nname = \"A b\"\n").unwrap_err();
        assert!(e.contains("node[0].name"), "{e}");
    }

    #[test]
    fn partition_groups_and_run_length() {
        let s = parse(&format!(
            "{BASE}\n[[event]]\nat = \"10s\"\naction = \"partition\"\ngroups = [[\"c\"]]\n\
             [[assert]]\nkind = \"sees\"\nnode = \"a\"\npeer = \"c\"\nexpect = false\nat = \"10s\"\nwithin = \"8s\"\n"
        ))
        .unwrap();
        match &s.events[0].action {
            Action::Partition { group } => assert_eq!(group, &vec![0, 0, 1]),
            other => panic!("{other:?}"),
        }
        assert_eq!(s.duration, Duration::from_secs(19));
        assert!(s.describe(&s.asserts[0]).starts_with("a does not see c"));
    }

    #[test]
    fn pending_client_makes_its_assertions_pending() {
        let s = parse(&format!(
            "{BASE}\n[[client]]\nname = \"k\"\nkind = \"kv\"\nat = \"a\"\ntarget = \":7000\"\npending = \"needs services\"\n\
             [[assert]]\nkind = \"client-clean\"\nclient = \"k\"\n"
        ))
        .unwrap();
        assert_eq!(
            s.asserts[0].pending.as_deref(),
            Some("client k is pending: needs services")
        );
    }

    #[test]
    fn node_env_and_a_restart_that_replaces_it() {
        let s = parse(&format!(
            "{BASE}\n[[node]]\nname = \"d\"\nenv = {{ MESHNODE_FAULT = \"dest-prepare\" }}\n\
             [[event]]\nat = \"5s\"\naction = \"restart\"\nnode = \"d\"\nenv = {{}}\n\
             [[event]]\nat = \"9s\"\naction = \"restart\"\nnode = \"d\"\n"
        ))
        .unwrap();
        assert_eq!(
            s.nodes[3].env,
            vec![("MESHNODE_FAULT".to_string(), "dest-prepare".to_string())]
        );
        assert!(s.nodes[0].env.is_empty());
        match &s.events[0].action {
            Action::Restart { node: 3, env } => assert_eq!(env, &Some(vec![])),
            other => panic!("{other:?}"),
        }
        match &s.events[1].action {
            Action::Restart { node: 3, env } => assert_eq!(env, &None),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_env_is_refused_naming_the_variable() {
        let node = |env: &str| format!("{BASE}\n[[node]]\nname = \"d\"\nenv = {{ {env} }}\n");
        let e = parse(&node("HOME = \"/tmp\"")).unwrap_err();
        assert!(
            e.contains("t.toml: node[3].env.HOME: testnet sets it"),
            "{e}"
        );
        let e = parse(&node("\"1X\" = \"a\"")).unwrap_err();
        assert!(
            e.contains("node[3].env.1X: \"1X\" is not a variable name"),
            "{e}"
        );
        let e = parse(&node("A = 3")).unwrap_err();
        assert!(e.contains("t.toml") && e.contains("invalid type"), "{e}");
        let e = parse(&format!(
            "{BASE}\n[[event]]\nat = \"5s\"\naction = \"kill\"\nnode = \"a\"\nenv = {{}}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("event[0].env: does not apply to action \"kill\""),
            "{e}"
        );
        let e = parse(&format!(
            "{BASE}\n[[event]]\nat = \"5s\"\naction = \"restart\"\nnode = \"a\"\nenv = {{ \"X-Y\" = \"1\" }}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("event[0].env.X-Y: \"X-Y\" is not a variable name"),
            "{e}"
        );
    }

    #[test]
    fn a_client_stops_after_it_starts() {
        let client = |extra: &str| {
            format!("{BASE}\n[[client]]\nname = \"k\"\nkind = \"kv\"\nat = \"a\"\ntarget = \":7000\"\nstart = \"3s\"\n{extra}\n")
        };
        let s = parse(&client("stop = \"20s\"")).unwrap();
        assert_eq!(s.clients[0].stop, Some(Duration::from_secs(20)));
        assert_eq!(s.duration, Duration::from_secs(21));
        let e = parse(&client("stop = \"3s\"")).unwrap_err();
        assert!(
            e.contains("client[0].stop: must be after its start (3s)"),
            "{e}"
        );
    }

    #[test]
    fn vessel_once_names_a_vessel() {
        let v = "[[program]]\nname = \"p\"\nwasm = \"p.wasm\"\n[[vessel]]\nname = \"v\"\nprogram = \"p\"\non = \"a\"\n";
        let s = parse(&format!(
            "{BASE}\n{v}[[assert]]\nkind = \"vessel-once\"\nvessel = \"v\"\n"
        ))
        .unwrap();
        assert!(matches!(
            s.asserts[0].check,
            Check::VesselOnce { vessel: 0 }
        ));
        assert!(s.asserts[0].check.at_end());
        assert!(s
            .describe(&s.asserts[0])
            .contains("never runs on two nodes"));
        let e = parse(&format!(
            "{BASE}\n{v}[[assert]]\nkind = \"vessel-once\"\nvessel = \"w\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("assert[0].vessel: no [[vessel]] named \"w\""),
            "{e}"
        );
        let e = parse(&format!(
            "{BASE}\n{v}[[assert]]\nkind = \"vessel-once\"\nvessel = \"v\"\nwithin = \"5s\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("assert[0].within: does not apply to kind \"vessel-once\""),
            "{e}"
        );
    }

    #[test]
    fn the_repository_scenarios_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let mut seen = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                Scenario::load(&p).unwrap_or_else(|e| panic!("{e}"));
                seen += 1;
            }
        }
        assert!(seen >= 3, "expected the scenarios in {}", dir.display());
    }
}
