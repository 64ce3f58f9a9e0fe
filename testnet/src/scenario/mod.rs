//! The scenario file: TOML in, a checked [`Scenario`] out.
//!
//! Parsing has two steps. serde reads the file into `Raw*` structs that
//! refuse unknown fields (a typo is an error with a line number, never a
//! silently ignored setting); [`Scenario::from_toml`] then checks every
//! value against the named limits below and resolves names to indices,
//! section by section (`sections.rs`, `events.rs`). `[[assert]]` and
//! `[[client]]` tables have fields that depend on their kind: each kind
//! reads its own (`checks/`, `clients/`) and refuses the rest. Every error
//! names the file and the field (`rtt.toml: event[2].node: no node named
//! "x"`). docs/testnet.md describes the format.

mod events;
mod sections;
pub mod wan;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::checks::{Assertion, Check, Subject, Timing};
pub use crate::clients::{ClientSpec, MIN_CLIENT_INTERVAL};
use crate::fields::Ck;
pub use crate::fields::{
    parse_duration, secs, Names, ScenarioError, MAX_ENV, MAX_ENV_VALUE, MAX_LATENCY_MS, MAX_NAME,
    RESERVED_ENV,
};

/// At most this many nodes. Why 128: addresses are 10.77.0.1 to 10.77.0.N
/// in one /24 (.255 is the broadcast), so the hard ceiling is 254; the
/// router keeps a table of n² links (128² = 16,384 directions, about 2 MB)
/// and every node is a real process: 100 idle nodes fit in this 2-core,
/// 24 GiB machine's memory (about 18 MB each), and CPU, not the cap, is
/// what limits a run (docs/benchmarks.md, "100 nodes in testnet").
pub const MAX_NODES: usize = 128;
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
/// Bandwidth of a link (10 Gbit/s; 0 means unlimited).
pub const MAX_BANDWIDTH_KBPS: f64 = 10_000_000.0;
/// The longest a packet may wait for the bandwidth limit before it is dropped.
pub const MAX_QUEUE_MS: f64 = 10_000.0;
/// The scenario file itself.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Arguments of a program.
pub const MAX_ARGS: usize = 64;
/// The shortest node ping and status intervals testnet passes on.
pub const MIN_NODE_INTERVAL: Duration = Duration::from_millis(10);

/// The default one-way latency of a link nobody described.
const DEFAULT_LATENCY_MS: f64 = 1.0;
/// The default queue bound of a bandwidth-limited link.
const DEFAULT_QUEUE_MS: f64 = 200.0;

/// A checked scenario.
#[derive(Debug)]
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
    /// The window of scenario time over which the report gives each node's
    /// traffic (`traffic_window`; default: the whole run after t = 0).
    pub traffic_window: (Duration, Duration),
    /// t = 0 waits until every node sees every other (`wait_for_mesh`,
    /// default true); false: t = 0 comes once every node has started, and
    /// a `converged` check measures the formation.
    pub wait_for_mesh: bool,
    pub nodes: Vec<NodeSpec>,
    /// The geographic WAN model, when the scenario has `[[region]]`s.
    pub wan: Option<wan::Wan>,
    /// Parameters of every pair, `links[i][j]` for i ≠ j (symmetric).
    pub links: Vec<Vec<LinkParams>>,
    pub programs: Vec<Program>,
    pub servers: Vec<Server>,
    pub vessels: Vec<VesselSpec>,
    pub clients: Vec<ClientSpec>,
    pub events: Vec<Event>,
    pub asserts: Vec<Assertion>,
    /// The names of nodes, vessels and clients, as checks describe them.
    pub names: Names,
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
    /// The armv7 build (32-bit Pi OS) under qemu-user (`MESHNODE_ARMV7_BIN`).
    Armhf,
    /// The riscv64 build under qemu-user (`MESHNODE_RISCV64_BIN`).
    Riscv64,
}

impl Arch {
    /// The CPUs that run under qemu-user.
    pub const FOREIGN: [Arch; 3] = [Arch::Aarch64, Arch::Armhf, Arch::Riscv64];

    /// Its name in a scenario file (`arch = "..."`) and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Native => "native",
            Arch::Aarch64 => "aarch64",
            Arch::Armhf => "armhf",
            Arch::Riscv64 => "riscv64",
        }
    }

    pub fn from_name(name: &str) -> Option<Arch> {
        [Arch::Native]
            .into_iter()
            .chain(Arch::FOREIGN)
            .find(|a| a.name() == name)
    }

    /// The variable naming its meshnode (what `scripts/build-cross.sh`
    /// prints), and the qemu-user that runs it. None for native.
    pub fn foreign(self) -> Option<Foreign> {
        let (bin_env, qemu_env, qemu, qemu_args): (_, _, _, &'static [&'static str]) = match self {
            Arch::Native => return None,
            Arch::Aarch64 => ("MESHNODE_AARCH64_BIN", "QEMU_AARCH64", "qemu-aarch64", &[]),
            Arch::Armhf => ("MESHNODE_ARMV7_BIN", "QEMU_ARM", "qemu-arm", &[]),
            // Debian 12 has no multiarch riscv64 libc6, only the cross one.
            // aarch64 and armhf must not get -L: it mixes the cross ld.so
            // with the multiarch libc6 and threads hang (DESIGN.md §8).
            Arch::Riscv64 => (
                "MESHNODE_RISCV64_BIN",
                "QEMU_RISCV64",
                "qemu-riscv64",
                &["-L", "/usr/riscv64-linux-gnu"],
            ),
        };
        Some(Foreign {
            bin_env,
            qemu_env,
            qemu,
            qemu_args,
        })
    }
}

/// How a foreign CPU's node is run.
#[derive(Debug, Clone, Copy)]
pub struct Foreign {
    /// The variable naming its meshnode.
    pub bin_env: &'static str,
    /// The variable that may name its qemu.
    pub qemu_env: &'static str,
    /// qemu-user's name (tried with `-static` first).
    pub qemu: &'static str,
    pub qemu_args: &'static [&'static str],
}

#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub arch: Arch,
    /// It starts on the frozen older build (`build = "frozen"`), not this
    /// one: the rolling-upgrade scenario rolls it forward.
    pub frozen: bool,
    /// Extra environment of its `meshnode start` (e.g. `MESHNODE_FAULT`),
    /// sorted by name; a `restart` with `env` replaces it.
    pub env: Vec<(String, String)>,
    /// Its region in the WAN model (`Scenario::wan`).
    pub region: Option<usize>,
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
    /// `deploy --replicas N` (None: the node's default, 1).
    pub replicas: Option<u32>,
    /// `deploy --durability sync` (false: the default, async).
    pub sync: bool,
    pub args: Vec<String>,
    pub pending: Option<String>,
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
    /// `meshnode upgrade publish` of this run's meshnode (stripped), then
    /// `meshnode upgrade roll`, both through node `via`.
    Upgrade {
        via: usize,
    },
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        Scenario::load_seeded(path, None)
    }

    /// Reads and checks a scenario file, with `seed` (`--seed`) in place of
    /// the file's: the WAN model's access links are drawn from it.
    pub fn load_seeded(path: &Path, seed: Option<u64>) -> Result<Scenario, ScenarioError> {
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
        Scenario::from_toml_seeded(path, &text, seed)
    }

    /// Checks a scenario given as text; `path` names it in errors and
    /// anchors relative paths.
    pub fn from_toml(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::from_toml_seeded(path, text, None)
    }

    /// [`Scenario::from_toml`] with `seed` in place of the file's.
    pub fn from_toml_seeded(
        path: &Path,
        text: &str,
        seed: Option<u64>,
    ) -> Result<Scenario, ScenarioError> {
        let shown = path.display().to_string();
        let mut raw: sections::RawScenario =
            toml::from_str(text).map_err(|e| ScenarioError(format!("{shown}: {e}")))?;
        if seed.is_some() {
            raw.seed = seed;
        }
        let seed = raw.seed.unwrap_or(1);
        let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        let mut ck = Ck {
            file: shown,
            names: Names::default(),
        };
        let regions = wan::regions(&ck, &raw.regions)?;
        let wan = wan::wan(&ck, regions, &raw.wan)?;
        let mut raw_nodes = std::mem::take(&mut raw.nodes);
        raw_nodes.extend(wan::expand_groups(&ck, &raw.node_groups)?);
        let node_regions = wan::node_regions(&ck, wan.as_ref(), &raw_nodes)?;
        let nodes = sections::nodes(&ck, &raw_nodes, &node_regions)?;
        ck.names.nodes = nodes.iter().map(|n| n.name.clone()).collect();
        let g = sections::globals(&ck, path, &raw)?;
        let model = wan.as_ref().map(|w| (w, seed, node_regions.as_slice()));
        let links = sections::links(&ck, &raw.link_default, model, &raw.links)?;
        let programs = sections::programs(&ck, &dir, &raw.programs)?;
        let servers = sections::servers(&ck, &programs, &raw.servers)?;
        let vessels = sections::vessels(&ck, &programs, &raw.vessels)?;
        ck.names.vessels = vessels.iter().map(|v| v.name.clone()).collect();
        let clients = sections::clients(&ck, raw.clients)?;
        ck.names.clients = clients.iter().map(|c| c.name.clone()).collect();
        let events = events::events(&ck, &raw.events)?;
        let asserts = sections::asserts(&ck, raw.asserts, &clients, &vessels)?;
        let end = sections::last_time(&events, &asserts, &vessels, &clients);
        let duration = sections::duration(&ck, &raw.duration, end)?;
        let traffic_window = sections::traffic_window(&ck, &raw.traffic_window, duration)?;
        Ok(Scenario {
            file: path.to_path_buf(),
            name: g.name,
            description: raw.description.unwrap_or_default(),
            seed,
            duration,
            setup_timeout: g.setup_timeout,
            discovery: g.discovery,
            ping_interval: g.ping_interval,
            status_interval: g.status_interval,
            traffic_window,
            wait_for_mesh: raw.wait_for_mesh.unwrap_or(true),
            nodes,
            wan,
            links,
            programs,
            servers,
            vessels,
            clients,
            events,
            asserts,
            names: ck.names,
        })
    }

    /// A node's address in its namespace.
    pub fn addr(index: usize) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::new(10, 77, 0, index as u8 + 1)
    }

    /// One line that says what an assertion checks.
    pub fn describe(&self, a: &Assertion) -> String {
        a.describe(&self.names)
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
            "{BASE}\n[[event]]\nat = \"5 days\"\naction = \"heal\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("event[0].at: `5 days` is not a duration"), "{e}");
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
        assert!(e.contains("node: 129 given, at most 128"), "{e}");
        let e = parse(&format!("duration = \"2h\"\n{BASE}")).unwrap_err();
        assert!(e.contains("duration:"), "{e}");
        let e = parse("[[node]]\nname = \"A b\"\n").unwrap_err();
        assert!(e.contains("node[0].name"), "{e}");
    }

    #[test]
    fn a_flap_expands_into_link_changes_that_end_up() {
        let s = parse(&format!(
            "{BASE}\n[[event]]\nat = \"10s\"\naction = \"flap\"\nbetween = [\"a\", \"b\"]\n\
             every = \"3s\"\nuntil = \"20s\"\n"
        ))
        .unwrap();
        let got: Vec<(u64, f64)> = s
            .events
            .iter()
            .map(|e| match &e.action {
                Action::SetLink { a: 0, b: 1, change } => (e.at.as_secs(), change.loss.unwrap()),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            vec![(10, 1.0), (13, 0.0), (16, 1.0), (19, 0.0)],
            "down, up, down, up: it ends up"
        );
        let e = parse(&format!(
            "{BASE}\n[[event]]\nat = \"1s\"\naction = \"flap\"\nbetween = [\"a\", \"b\"]\n\
             every = \"100ms\"\nuntil = \"10h\"\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("event[0]: flaps into more than 512 events"),
            "{e}"
        );
        let e = parse(&format!(
            "{BASE}\n[[event]]\nat = \"1s\"\naction = \"flap\"\nbetween = [\"a\", \"b\"]\n\
             every = \"10ms\"\nuntil = \"10s\"\n"
        ))
        .unwrap_err();
        assert!(e.contains("event[0].every: at least 100ms"), "{e}");
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
        assert_eq!(
            format!("{:?}", s.asserts[0].check),
            "VesselOnce { vessel: 0, max_owner_changes: None }"
        );
        assert_eq!(s.asserts[0].check.timing(), Timing::AtEnd);
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
