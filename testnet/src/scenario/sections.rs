//! The sections of a scenario file, each read and checked by one function:
//! the nodes, the settings of the whole run, links, programs, servers,
//! vessels, clients, assertions, and the run's length. (`events.rs` reads
//! the events.)

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::wan::Wan;
use super::{
    Arch, Discovery, Event, LinkChange, LinkParams, NodeSpec, Program, ProgramSource, Server,
    VesselSpec, MAX_ARGS, MAX_ASSERTS, MAX_BANDWIDTH_KBPS, MAX_CLIENTS, MAX_DURATION, MAX_NODES,
    MAX_PROGRAMS, MAX_QUEUE_MS, MAX_SERVERS, MAX_SETUP_TIMEOUT, MAX_VESSELS, MIN_NODE_INTERVAL,
};
use crate::checks::{Assertion, Subject};
use crate::clients::ClientSpec;
use crate::fields::{Ck, ScenarioError, MAX_LATENCY_MS};

/// The default ping interval passed to the nodes.
const DEFAULT_PING_INTERVAL: Duration = Duration::from_millis(200);
/// The default status interval passed to the nodes.
const DEFAULT_STATUS_INTERVAL: Duration = Duration::from_millis(500);
/// The default bound of the setup (start and mesh formation).
const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// What a run lasts after its last event or window, when `duration` is
/// not given.
const DEFAULT_TAIL: Duration = Duration::from_secs(1);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    pub(super) seed: Option<u64>,
    pub(super) duration: Option<String>,
    pub(super) setup_timeout: Option<String>,
    pub(super) discovery: Option<String>,
    pub(super) ping_interval: Option<String>,
    pub(super) status_interval: Option<String>,
    pub(super) traffic_window: Option<Vec<String>>,
    pub(super) wait_for_mesh: Option<bool>,
    #[serde(default, rename = "node")]
    pub(super) nodes: Vec<RawNode>,
    #[serde(default, rename = "node_group")]
    pub(super) node_groups: Vec<super::wan::RawNodeGroup>,
    #[serde(default, rename = "region")]
    pub(super) regions: Vec<super::wan::RawRegion>,
    pub(super) wan: Option<super::wan::RawWan>,
    pub(super) link_default: Option<RawLinkParams>,
    #[serde(default, rename = "link")]
    pub(super) links: Vec<RawLink>,
    #[serde(default, rename = "program")]
    pub(super) programs: Vec<RawProgram>,
    #[serde(default, rename = "server")]
    pub(super) servers: Vec<RawServer>,
    #[serde(default, rename = "vessel")]
    pub(super) vessels: Vec<RawVessel>,
    #[serde(default, rename = "client")]
    pub(super) clients: Vec<toml::Table>,
    #[serde(default, rename = "event")]
    pub(super) events: Vec<super::events::RawEvent>,
    #[serde(default, rename = "assert")]
    pub(super) asserts: Vec<toml::Table>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNode {
    pub(super) name: String,
    pub(super) arch: Option<String>,
    pub(super) build: Option<String>,
    pub(super) env: Option<BTreeMap<String, String>>,
    pub(super) region: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLinkParams {
    pub(super) latency_ms: Option<f64>,
    pub(super) jitter_ms: Option<f64>,
    pub(super) loss: Option<f64>,
    pub(super) bandwidth_kbps: Option<f64>,
    pub(super) queue_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLink {
    between: Vec<String>,
    latency_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss: Option<f64>,
    bandwidth_kbps: Option<f64>,
    queue_ms: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProgram {
    name: String,
    wasm: Option<String>,
    c_source: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    name: Option<String>,
    program: String,
    at: String,
    port: u16,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVessel {
    name: String,
    program: String,
    on: String,
    at: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    pin: bool,
    replicas: Option<u32>,
    durability: Option<String>,
    #[serde(default)]
    args: Vec<String>,
    pending: Option<String>,
}

/// `durability`: "async" (the default) or "sync"; true for sync.
fn durability(ck: &Ck, field: &str, d: &Option<String>) -> Result<bool, ScenarioError> {
    match d.as_deref() {
        None | Some("async") => Ok(false),
        Some("sync") => Ok(true),
        Some(other) => Err(ck.err(field, format!("{other:?} is not \"async\" or \"sync\""))),
    }
}

/// The nodes: 1 to MAX_NODES, named once each.
pub(super) fn nodes(
    ck: &Ck,
    raw: &[RawNode],
    regions: &[Option<usize>],
) -> Result<Vec<NodeSpec>, ScenarioError> {
    if raw.is_empty() {
        return Err(ck.err("node", "a scenario needs at least one [[node]]"));
    }
    ck.count("node", raw.len(), MAX_NODES)?;
    let mut nodes = Vec::new();
    for (i, n) in raw.iter().enumerate() {
        ck.name(&format!("node[{i}].name"), &n.name)?;
        let arch = match n
            .arch
            .as_deref()
            .map_or(Some(Arch::Native), Arch::from_name)
        {
            Some(a) => a,
            None => {
                return Err(ck.err(
                    &format!("node[{i}].arch"),
                    format!(
                        "{:?} is not an arch (\"native\", \"aarch64\", \"armhf\" or \"riscv64\")",
                        n.arch.as_deref().unwrap_or_default()
                    ),
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
            frozen: frozen(ck, i, n, arch)?,
            env,
            region: regions[i],
        });
    }
    let names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    ck.unique("node", &names)?;
    Ok(nodes)
}

/// `build = "frozen"`: the node starts on the frozen older build
/// (`MESHNODE_FROZEN_BIN`, scripts/build-frozen.sh), which is x86_64.
fn frozen(ck: &Ck, i: usize, n: &RawNode, arch: Arch) -> Result<bool, ScenarioError> {
    let field = format!("node[{i}].build");
    match n.build.as_deref() {
        None | Some("current") => Ok(false),
        Some("frozen") if arch == Arch::Native => Ok(true),
        Some("frozen") => Err(ck.err(
            &field,
            "the frozen build is x86_64: it cannot run on a node with another arch",
        )),
        Some(other) => Err(ck.err(
            &field,
            format!("{other:?} is not a build (\"current\" or \"frozen\")"),
        )),
    }
}

/// The settings of the whole run.
pub(super) struct Globals {
    pub(super) name: String,
    pub(super) discovery: Discovery,
    pub(super) ping_interval: Duration,
    pub(super) status_interval: Duration,
    pub(super) setup_timeout: Duration,
}

pub(super) fn globals(ck: &Ck, path: &Path, raw: &RawScenario) -> Result<Globals, ScenarioError> {
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
    let ping_interval = ck.opt_dur("ping_interval", &raw.ping_interval, DEFAULT_PING_INTERVAL)?;
    let status_interval = ck.opt_dur(
        "status_interval",
        &raw.status_interval,
        DEFAULT_STATUS_INTERVAL,
    )?;
    for (f, d) in [
        ("ping_interval", ping_interval),
        ("status_interval", status_interval),
    ] {
        if d < MIN_NODE_INTERVAL {
            return Err(ck.err(f, format!("at least {MIN_NODE_INTERVAL:?}")));
        }
    }
    let setup_timeout = ck.opt_dur("setup_timeout", &raw.setup_timeout, DEFAULT_SETUP_TIMEOUT)?;
    if setup_timeout > MAX_SETUP_TIMEOUT || setup_timeout.is_zero() {
        return Err(ck.err(
            "setup_timeout",
            format!("must be above 0 and at most {MAX_SETUP_TIMEOUT:?}"),
        ));
    }
    Ok(Globals {
        name,
        discovery,
        ping_interval,
        status_interval,
        setup_timeout,
    })
}

/// Changes to a link (`link_default`, a `[[link]]`, a `set-link` event),
/// each value in its range.
pub(super) fn link_change(
    ck: &Ck,
    field: &str,
    p: &RawLinkParams,
) -> Result<LinkChange, ScenarioError> {
    let opt = |name: &str, v: Option<f64>, hi: f64| -> Result<Option<f64>, ScenarioError> {
        v.map(|v| ck.range(&format!("{field}.{name}"), v, 0.0, hi))
            .transpose()
    };
    Ok(LinkChange {
        latency_ms: opt("latency_ms", p.latency_ms, MAX_LATENCY_MS)?,
        jitter_ms: opt("jitter_ms", p.jitter_ms, MAX_LATENCY_MS)?,
        loss: opt("loss", p.loss, 1.0)?,
        bandwidth_kbps: opt("bandwidth_kbps", p.bandwidth_kbps, MAX_BANDWIDTH_KBPS)?,
        queue_ms: opt("queue_ms", p.queue_ms, MAX_QUEUE_MS)?,
    })
}

/// Every pair's parameters: `link_default`, then the WAN model's latency
/// and jitter (`wan`: the model, the seed and each node's region), then
/// each `[[link]]` (both directions, once per pair).
pub(super) fn links(
    ck: &Ck,
    default: &Option<RawLinkParams>,
    wan: Option<(&Wan, u64, &[Option<usize>])>,
    raw: &[RawLink],
) -> Result<Vec<Vec<LinkParams>>, ScenarioError> {
    let n = ck.names.nodes.len();
    let dc = link_change(
        ck,
        "link_default",
        default.as_ref().unwrap_or(&RawLinkParams::default()),
    )?;
    let mut default = LinkParams::default();
    dc.apply(&mut default);
    let mut links = vec![vec![default; n]; n];
    if let Some((w, seed, regions)) = wan {
        w.apply(seed, &ck.names.nodes, regions, &mut links);
    }
    let mut given = vec![vec![false; n]; n];
    for (i, l) in raw.iter().enumerate() {
        let f = format!("link[{i}]");
        let (a, b) = ck.pair(&format!("{f}.between"), &l.between)?;
        if given[a][b] {
            let names = &ck.names.nodes;
            return Err(ck.err(
                &format!("{f}.between"),
                format!("the link {}–{} is described twice", names[a], names[b]),
            ));
        }
        given[a][b] = true;
        given[b][a] = true;
        let params = RawLinkParams {
            latency_ms: l.latency_ms,
            jitter_ms: l.jitter_ms,
            loss: l.loss,
            bandwidth_kbps: l.bandwidth_kbps,
            queue_ms: l.queue_ms,
        };
        let c = link_change(ck, &f, &params)?;
        c.apply(&mut links[a][b]);
        c.apply(&mut links[b][a]);
    }
    Ok(links)
}

pub(super) fn programs(
    ck: &Ck,
    dir: &Path,
    raw: &[RawProgram],
) -> Result<Vec<Program>, ScenarioError> {
    ck.count("program", raw.len(), MAX_PROGRAMS)?;
    let mut programs = Vec::new();
    for (i, p) in raw.iter().enumerate() {
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
    let names: Vec<&str> = programs.iter().map(|p| p.name.as_str()).collect();
    ck.unique("program", &names)?;
    Ok(programs)
}

fn program(ck: &Ck, programs: &[Program], field: &str, name: &str) -> Result<usize, ScenarioError> {
    programs
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| ck.err(field, format!("no [[program]] named {name:?}")))
}

pub(super) fn servers(
    ck: &Ck,
    programs: &[Program],
    raw: &[RawServer],
) -> Result<Vec<Server>, ScenarioError> {
    ck.count("server", raw.len(), MAX_SERVERS)?;
    let mut servers: Vec<Server> = Vec::new();
    for (i, s) in raw.iter().enumerate() {
        let f = format!("server[{i}]");
        let prog = program(ck, programs, &format!("{f}.program"), &s.program)?;
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
        if servers.iter().any(|b| b.node == node && b.port == s.port) {
            return Err(ck.err(&format!("{f}.port"), "two servers on one node and port"));
        }
        servers.push(Server {
            name,
            program: prog,
            node,
            port: s.port,
            args: s.args.clone(),
        });
    }
    Ok(servers)
}

pub(super) fn vessels(
    ck: &Ck,
    programs: &[Program],
    raw: &[RawVessel],
) -> Result<Vec<VesselSpec>, ScenarioError> {
    ck.count("vessel", raw.len(), MAX_VESSELS)?;
    let mut vessels = Vec::new();
    for (i, v) in raw.iter().enumerate() {
        let f = format!("vessel[{i}]");
        ck.name(&format!("{f}.name"), &v.name)?;
        if v.args.len() > MAX_ARGS {
            return Err(ck.err(&format!("{f}.args"), format!("at most {MAX_ARGS}")));
        }
        vessels.push(VesselSpec {
            name: v.name.clone(),
            program: program(ck, programs, &format!("{f}.program"), &v.program)?,
            on: ck.node(&format!("{f}.on"), &v.on)?,
            at: ck.opt_dur(&format!("{f}.at"), &v.at, Duration::ZERO)?,
            port: v.port,
            pin: v.pin,
            replicas: v.replicas,
            sync: durability(ck, &format!("{f}.durability"), &v.durability)?,
            args: v.args.clone(),
            pending: ck.pending(&format!("{f}.pending"), &v.pending)?,
        });
    }
    let names: Vec<&str> = vessels.iter().map(|v| v.name.as_str()).collect();
    ck.unique("vessel", &names)?;
    Ok(vessels)
}

pub(super) fn clients(ck: &Ck, raw: Vec<toml::Table>) -> Result<Vec<ClientSpec>, ScenarioError> {
    ck.count("client", raw.len(), MAX_CLIENTS)?;
    let clients = raw
        .into_iter()
        .enumerate()
        .map(|(i, t)| ClientSpec::parse(ck, i, t))
        .collect::<Result<Vec<_>, _>>()?;
    let names: Vec<&str> = clients.iter().map(|c| c.name.as_str()).collect();
    ck.unique("client", &names)?;
    Ok(clients)
}

/// The assertions; one about a pending client or vessel is pending too.
pub(super) fn asserts(
    ck: &Ck,
    raw: Vec<toml::Table>,
    clients: &[ClientSpec],
    vessels: &[VesselSpec],
) -> Result<Vec<Assertion>, ScenarioError> {
    ck.count("assert", raw.len(), MAX_ASSERTS)?;
    let mut asserts = Vec::new();
    for (i, t) in raw.into_iter().enumerate() {
        let mut a = Assertion::parse(ck, i, t)?;
        if a.pending.is_none() {
            a.pending = match a.check.subject() {
                Some(Subject::Client(c)) => clients[c]
                    .pending
                    .as_ref()
                    .map(|p| format!("client {} is pending: {p}", clients[c].name)),
                Some(Subject::Vessel(v)) => vessels[v]
                    .pending
                    .as_ref()
                    .map(|p| format!("vessel {} is pending: {p}", vessels[v].name)),
                None => None,
            };
        }
        asserts.push(a);
    }
    Ok(asserts)
}

/// The last time anything in the scenario happens or is looked at.
pub(super) fn last_time(
    events: &[Event],
    asserts: &[Assertion],
    vessels: &[VesselSpec],
    clients: &[ClientSpec],
) -> Duration {
    let events = events.iter().map(|e| e.at);
    let asserts = asserts.iter().map(Assertion::end);
    let vessels = vessels.iter().map(|v| v.at);
    let clients = clients
        .iter()
        .map(|c| c.start.max(c.stop.unwrap_or_default()));
    events
        .chain(asserts)
        .chain(vessels)
        .chain(clients)
        .max()
        .unwrap_or_default()
}

/// `duration`: at least until `end`, at most MAX_DURATION.
pub(super) fn duration(
    ck: &Ck,
    raw: &Option<String>,
    end: Duration,
) -> Result<Duration, ScenarioError> {
    let duration = match raw {
        Some(s) => {
            let d = ck.dur("duration", s)?;
            if d < end {
                return Err(ck.err(
                    "duration",
                    format!(
                        "{d:?} is shorter than the last event, assertion window or start ({end:?})"
                    ),
                ));
            }
            d
        }
        None => end + DEFAULT_TAIL,
    };
    if duration > MAX_DURATION {
        return Err(ck.err(
            "duration",
            format!("{duration:?} is longer than the {MAX_DURATION:?} a run may last"),
        ));
    }
    Ok(duration)
}

/// `traffic_window`: within the run; default the whole run after t = 0.
pub(super) fn traffic_window(
    ck: &Ck,
    raw: &Option<Vec<String>>,
    duration: Duration,
) -> Result<(Duration, Duration), ScenarioError> {
    if raw.is_none() {
        return Ok((Duration::ZERO, duration));
    }
    let w = ck.window("traffic_window", raw)?;
    if w.1 > duration {
        return Err(ck.err(
            "traffic_window",
            format!("ends after the run ({})", crate::fields::secs(duration)),
        ));
    }
    Ok(w)
}
