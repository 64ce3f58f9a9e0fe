//! `[[event]]`: the timeline's actions, each read by one function.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::sections::{link_change, RawLinkParams};
use super::{Action, Event, LinkChange, MAX_EVENTS};
use crate::fields::{Ck, ScenarioError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEvent {
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
    every: Option<String>,
    until: Option<String>,
}

/// Every action, and the fields it takes.
const ACTIONS: &[(&str, &[&str])] = &[
    (
        "set-link",
        &[
            "between",
            "latency_ms",
            "jitter_ms",
            "loss",
            "bandwidth_kbps",
            "queue_ms",
        ],
    ),
    ("partition", &["groups"]),
    ("heal", &[]),
    ("kill", &["node", "signal"]),
    ("restart", &["node", "env"]),
    ("migrate", &["vessel", "to"]),
    ("move-client", &["client", "to"]),
    ("flap", &["between", "every", "until", "loss"]),
    ("upgrade", &["node"]),
];

/// How short a flap's half period may be: the router applies a link change
/// within a few milliseconds, and a shorter flap is noise, not a link
/// going up and down.
const MIN_FLAP_EVERY: Duration = Duration::from_millis(100);

/// The events, in time order (events at the same time in file order).
pub(super) fn events(ck: &Ck, raw: &[RawEvent]) -> Result<Vec<Event>, ScenarioError> {
    ck.count("event", raw.len(), MAX_EVENTS)?;
    let mut events = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let f = format!("event[{i}]");
        let at = ck.dur(&format!("{f}.at"), &e.at)?;
        fields_apply(ck, &f, e)?;
        if e.action == "flap" {
            events.extend(flap(ck, &f, e, at)?);
            ck.count("event (flaps expanded)", events.len(), MAX_EVENTS)?;
            continue;
        }
        let action = action(ck, &f, e)?;
        events.push(Event { at, action });
    }
    // Stable: events at the same time run in file order.
    events.sort_by_key(|e| e.at);
    Ok(events)
}

/// Every field given is one the action takes.
fn fields_apply(ck: &Ck, f: &str, e: &RawEvent) -> Result<(), ScenarioError> {
    let Some((_, allowed)) = ACTIONS.iter().find(|(name, _)| *name == e.action) else {
        let names: Vec<&str> = ACTIONS.iter().map(|(name, _)| *name).collect();
        return Err(ck.err(
            &format!("{f}.action"),
            format!("{:?} is not an action ({})", e.action, names.join(", ")),
        ));
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
        ("every", e.every.is_some()),
        ("until", e.until.is_some()),
    ];
    match present
        .iter()
        .find(|(field, there)| *there && !allowed.contains(field))
    {
        Some((field, _)) => Err(ck.err(
            &format!("{f}.{field}"),
            format!("does not apply to action {:?}", e.action),
        )),
        None => Ok(()),
    }
}

fn action(ck: &Ck, f: &str, e: &RawEvent) -> Result<Action, ScenarioError> {
    let node = |key: &str, v: &Option<String>, why: &str| -> Result<usize, ScenarioError> {
        let field = format!("{f}.{key}");
        ck.node(&field, ck.need(&field, v, why)?)
    };
    Ok(match e.action.as_str() {
        "set-link" => set_link(ck, f, e)?,
        "partition" => partition(ck, f, e)?,
        "heal" => Action::Heal,
        "kill" => Action::Kill {
            node: node("node", &e.node, "the node to kill")?,
            term: signal(ck, f, e)?,
        },
        "restart" => Action::Restart {
            node: node("node", &e.node, "the node to restart")?,
            env: e
                .env
                .as_ref()
                .map(|v| ck.env(&format!("{f}.env"), v))
                .transpose()?,
        },
        "migrate" => {
            let field = format!("{f}.vessel");
            Action::Migrate {
                vessel: ck.vessel(&field, ck.need(&field, &e.vessel, "the vessel to move")?)?,
                to: node("to", &e.to, "the node to move it to")?,
            }
        }
        "move-client" => {
            let field = format!("{f}.client");
            Action::MoveClient {
                client: ck.client(&field, ck.need(&field, &e.client, "the client to move")?)?,
                to: node("to", &e.to, "the node it moves to")?,
            }
        }
        "upgrade" => Action::Upgrade {
            via: node(
                "node",
                &e.node,
                "the node to publish the release to and roll through",
            )?,
        },
        // "flap" is expanded by `events` before this is asked.
        _ => unreachable!("fields_apply refused it"),
    })
}

fn set_link(ck: &Ck, f: &str, e: &RawEvent) -> Result<Action, ScenarioError> {
    let field = format!("{f}.between");
    let between = ck.need(&field, &e.between, "the two nodes of the link")?;
    let (a, b) = ck.pair(&field, between)?;
    let params = RawLinkParams {
        latency_ms: e.latency_ms,
        jitter_ms: e.jitter_ms,
        loss: e.loss,
        bandwidth_kbps: e.bandwidth_kbps,
        queue_ms: e.queue_ms,
    };
    let change = link_change(ck, f, &params)?;
    if change == LinkChange::default() {
        return Err(ck.err(f, "set-link changes nothing (give latency_ms, jitter_ms, loss, bandwidth_kbps or queue_ms)"));
    }
    Ok(Action::SetLink { a, b, change })
}

/// `flap`: the link goes down (`loss`, default 1: nothing passes) at `at`,
/// up again (loss 0) `every` later, down again `every` after that, and so
/// on until `until` (a duration after the start, like `at`); it ends up.
/// Expanded here into the `set-link` events it stands for, so the timeline
/// shows each one.
fn flap(ck: &Ck, f: &str, e: &RawEvent, at: Duration) -> Result<Vec<Event>, ScenarioError> {
    let field = format!("{f}.between");
    let between = ck.need(&field, &e.between, "the two nodes of the link")?;
    let (a, b) = ck.pair(&field, between)?;
    let every_field = format!("{f}.every");
    let every = ck.dur(
        &every_field,
        ck.need(
            &every_field,
            &e.every,
            "how long the link stays down, then up",
        )?,
    )?;
    if every < MIN_FLAP_EVERY {
        return Err(ck.err(
            &every_field,
            format!("at least {MIN_FLAP_EVERY:?} (a shorter flap is noise)"),
        ));
    }
    let until_field = format!("{f}.until");
    let until = ck.dur(
        &until_field,
        ck.need(&until_field, &e.until, "when the flapping stops")?,
    )?;
    if until <= at {
        return Err(ck.err(&until_field, "must be after the event's `at`"));
    }
    let down_loss = e.loss.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&down_loss) || down_loss == 0.0 {
        return Err(ck.err(&format!("{f}.loss"), "a loss above 0, at most 1"));
    }
    let link = |loss: f64| Action::SetLink {
        a,
        b,
        change: LinkChange {
            loss: Some(loss),
            ..LinkChange::default()
        },
    };
    let mut out = Vec::new();
    let mut t = at;
    let mut down = true;
    while t < until || !down {
        out.push(Event {
            at: t,
            action: link(if down { down_loss } else { 0.0 }),
        });
        if out.len() > MAX_EVENTS {
            return Err(ck.err(f, format!("flaps into more than {MAX_EVENTS} events")));
        }
        t += every;
        down = !down;
    }
    Ok(out)
}

fn partition(ck: &Ck, f: &str, e: &RawEvent) -> Result<Action, ScenarioError> {
    let field = format!("{f}.groups");
    let groups = ck.need(&field, &e.groups, "e.g. [[\"c\"]] cuts c off from the rest")?;
    if groups.is_empty() {
        return Err(ck.err(&field, "name at least one group"));
    }
    let n = ck.names.nodes.len();
    let mut group = vec![0u32; n];
    let mut seen = vec![false; n];
    for (g, members) in groups.iter().enumerate() {
        for m in members {
            let idx = ck.node(&format!("{f}.groups[{g}]"), m)?;
            if seen[idx] {
                return Err(ck.err(&field, format!("{m:?} is in two groups")));
            }
            seen[idx] = true;
            group[idx] = g as u32 + 1;
        }
    }
    Ok(Action::Partition { group })
}

/// `signal`: true for SIGTERM.
fn signal(ck: &Ck, f: &str, e: &RawEvent) -> Result<bool, ScenarioError> {
    match e.signal.as_deref() {
        None | Some("kill") => Ok(false),
        Some("term") => Ok(true),
        Some(other) => Err(ck.err(
            &format!("{f}.signal"),
            format!("{other:?} is not \"kill\" or \"term\""),
        )),
    }
}
