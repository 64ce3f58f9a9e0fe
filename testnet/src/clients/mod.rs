//! Load clients (`[[client]]`): threads in testnet that act as users of
//! the mesh. Each kind is one file here, and owns its fields and their
//! parsing and its loop; what it counts goes to the client's
//! [`ClientStats`](crate::view::ClientStats), which the `client-*` checks
//! and the report read.
//!
//! Adding a load client: write `clients/NAME.rs` with a struct that
//! implements [`Load`], a `parse` function and a `KIND`; then add
//! `pub mod NAME;` and `NAME::KIND` to [`KINDS`] below. Nothing else
//! changes.

pub mod kv;
pub mod rtt_probe;

use std::fmt::Debug;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::fields::{Ck, KindFields, ScenarioError, Table};
use crate::view::View;

/// Every kind of client, in the order the error for an unknown kind lists
/// them.
pub const KINDS: &[Kind] = &[rtt_probe::KIND, kv::KIND];

/// The shortest client interval.
pub const MIN_CLIENT_INTERVAL: Duration = Duration::from_millis(10);
/// Fields of every `[[client]]`, whatever its kind.
const COMMON: &[&str] = &["name", "kind", "at", "start", "stop", "interval", "pending"];
/// The default interval between requests.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);

/// A kind of client: its name and fields, and its parser.
pub struct Kind {
    pub fields: KindFields,
    pub parse: fn(&Table) -> Result<Box<dyn Load>, ScenarioError>,
}

/// What a client does.
pub trait Load: Debug + Send + Sync {
    /// Its `kind` in the scenario.
    fn kind(&self) -> &'static str;
    /// It sends requests and counts them: the report shows its request
    /// counts and latencies, and the progress summary its recent ones.
    fn counts_requests(&self) -> bool;
    /// The service port its requests go to, when it is a client of a
    /// service (the report's stall per move finds a vessel's clients by
    /// the vessel's `port`).
    fn service_port(&self) -> Option<u16> {
        None
    }
    /// Runs from its start until its stop or the end of the run.
    fn run(&self, view: &dyn View, spec: &ClientSpec, client: usize, t0: Instant);
}

/// One `[[client]]`.
#[derive(Debug)]
pub struct ClientSpec {
    pub name: String,
    /// The node whose namespace the client starts in.
    pub at: usize,
    pub start: Duration,
    /// When it stops (closes its connection); None: at the end of the run.
    pub stop: Option<Duration>,
    pub interval: Duration,
    pub load: Box<dyn Load>,
    pub pending: Option<String>,
}

impl ClientSpec {
    /// Reads `client[i]`.
    pub fn parse(ck: &Ck, i: usize, map: toml::Table) -> Result<ClientSpec, ScenarioError> {
        let at = format!("client[{i}]");
        let kind = kind_of(ck, &at, &map)?;
        let all: Vec<&KindFields> = KINDS.iter().map(|k| &k.fields).collect();
        let t = Table::new(ck, at, map, COMMON, &kind.fields, &all)?;
        let name = t.str("name", "the client's name")?;
        ck.name(&t.field("name"), &name)?;
        let node = t.node("at", "the node it starts at")?;
        let load = (kind.parse)(&t)?;
        let (interval, start, stop) = schedule(&t)?;
        Ok(ClientSpec {
            name,
            at: node,
            start,
            stop,
            interval,
            load,
            pending: t.pending()?,
        })
    }
}

fn kind_of(ck: &Ck, at: &str, map: &toml::Table) -> Result<&'static Kind, ScenarioError> {
    let field = format!("{at}.kind");
    let name = match map.get("kind") {
        Some(toml::Value::String(s)) => s.as_str(),
        Some(v) => return Err(ck.err(&field, format!("must be a string (got {v})"))),
        None => return Err(ck.err(&field, "missing (what the client does)")),
    };
    KINDS.iter().find(|k| k.fields.name == name).ok_or_else(|| {
        let names: Vec<String> = KINDS
            .iter()
            .map(|k| format!("{:?}", k.fields.name))
            .collect();
        ck.err(
            &field,
            format!("{name:?} is not a client kind ({})", names.join(" or ")),
        )
    })
}

/// (interval, start, stop) of a client.
fn schedule(t: &Table) -> Result<(Duration, Duration, Option<Duration>), ScenarioError> {
    let interval = t.dur_or("interval", DEFAULT_INTERVAL)?;
    if interval < MIN_CLIENT_INTERVAL {
        return Err(t.err("interval", format!("at least {MIN_CLIENT_INTERVAL:?}")));
    }
    let start = t.dur_or("start", Duration::ZERO)?;
    let stop = t.opt_dur("stop")?;
    if stop.is_some_and(|s| s <= start) {
        return Err(t.err(
            "stop",
            format!("must be after its start ({})", crate::fields::secs(start)),
        ));
    }
    Ok((interval, start, stop))
}

/// A client's thread: waits for its start, says so, and runs its loop.
pub fn run(view: &dyn View, spec: &ClientSpec, client: usize, t0: Instant) {
    if !view.sleep_until(t0, spec.start) {
        return;
    }
    let at = view.client(client).node.load(Ordering::SeqCst);
    view.rec().say(format!(
        "client {} ({}) starts at {}",
        spec.name,
        spec.load.kind(),
        view.node_name(at)
    ));
    spec.load.run(view, spec, client, t0);
}
