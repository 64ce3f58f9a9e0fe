//! The dashboard's live streams (server-sent events): `/events` sends the
//! node's snapshot each time the event loop publishes one (once a second),
//! `/logs` follows a vessel's log. The browser keeps one connection open
//! for each: no polling.
//!
//! What a page without a session gets is what `/metrics` has (nodes,
//! links, where each vessel runs, moves and their downtime); a session
//! also gets placement's reasons and the logs.

use std::sync::Arc;

use protocol::ids::VesselId;
use serde_json::{json, Value};

use super::http::{sse, HttpContext};
use super::Snapshot;
use crate::sync::lock;

/// A log stream without new records sends a comment this often, so that a
/// closed browser tab is noticed and its stream ends.
const KEEPALIVE_POLLS: u32 = 30;

/// The `/events` stream.
pub fn events(ctx: &HttpContext, authed: bool) -> hyper::Response<super::http::Body> {
    let rx = ctx.ops.snapshot.subscribe();
    let stream = futures::stream::unfold((rx, true), move |(mut rx, first)| async move {
        if !first && rx.changed().await.is_err() {
            return None;
        }
        let snap = rx.borrow_and_update().clone();
        let data = view(&snap, authed);
        Some((format!("event: snapshot\ndata: {data}\n\n"), (rx, false)))
    });
    sse(stream)
}

fn short(peer: &str) -> String {
    peer.get(peer.len().saturating_sub(8)..)
        .unwrap_or(peer)
        .to_string()
}

/// The snapshot as the page sees it.
pub fn view(snap: &Snapshot, authed: bool) -> Value {
    let Some(rep) = &snap.report else {
        return json!({ "authed": authed, "nodes": [], "vessels": [], "links": [], "events": [] });
    };
    let mut nodes = vec![json!({
        "peer_id": rep.peer_id, "short": short(&rep.peer_id), "name": rep.name,
        "arch": snap.arch, "cpus": snap.cpus, "load_milli": snap.load_milli,
        "state": "up", "rtt_us": null, "self": true,
    })];
    nodes.extend(rep.members.iter().map(|m| {
        json!({
            "peer_id": m.peer_id, "short": short(&m.peer_id), "name": m.name,
            "arch": m.arch, "cpus": m.cpus, "load_milli": m.load_milli,
            "state": m.state, "rtt_us": m.rtt_us, "self": false,
        })
    }));
    let vessels: Vec<Value> =
        snap.mesh_vessels
            .iter()
            .map(|v| {
                let here = rep.vessels_here.iter().find(|h| {
                    h.vessel == v.vessel && (h.state == "running" || h.state == "migrating")
                });
                let why = here.filter(|_| authed).map(|h| h.why.clone());
                json!({
                    "vessel": v.vessel, "name": v.name, "node": v.node,
                    "node_short": short(&v.node), "why": why,
                })
            })
            .collect();
    let events: Vec<Value> = rep
        .events
        .iter()
        .filter(|e| authed || e.kind != protocol::control::OpsEventKind::Placement)
        .map(|e| {
            json!({
                "at_unix_ms": e.at_unix_ms, "vessel": e.vessel, "name": e.name,
                "kind": format!("{:?}", e.kind), "from": e.from.as_deref().map(short),
                "to": e.to.as_deref().map(short), "downtime_us": e.downtime_us,
                "reason": if authed { Some(&e.reason) } else { None },
            })
        })
        .collect();
    let links: Vec<Value> = snap
        .links
        .iter()
        .map(|l| json!({ "a": short(&l.a), "b": short(&l.b), "rtt_us": l.rtt_us }))
        .collect();
    json!({
        "authed": authed, "self": rep.peer_id, "version": rep.version,
        "uptime_ms": rep.uptime_ms, "unhealthy": rep.unhealthy, "warnings": rep.warnings,
        "nodes": nodes, "links": links, "vessels": vessels, "events": events,
    })
}

/// The `/logs?vessel=ID` stream (a session's only): the vessel's log here,
/// from what is kept, then live. A vessel that runs elsewhere gets one
/// `away` event; the stream goes on in case it comes back.
pub fn logs(ctx: &HttpContext, vessel: &str) -> hyper::Response<super::http::Body> {
    let Some(id) = VesselId::from_hex(vessel) else {
        return super::http::text_response(
            hyper::StatusCode::BAD_REQUEST,
            format!("`{vessel}` is not a vessel id (16 hex digits)\n"),
        );
    };
    let Ok(permit) = ctx.log_streams.clone().try_acquire_owned() else {
        return super::http::text_response(
            hyper::StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "{} logs are followed already; close one\n",
                super::http::MAX_LOG_STREAMS
            ),
        );
    };
    let host = ctx.host.clone();
    let follow = Follow {
        host,
        id,
        from: 0,
        away: false,
        _permit: Arc::new(permit),
    };
    let stream = futures::stream::unfold(follow, |mut f| async move {
        let mut quiet = 0;
        loop {
            if let Some(out) = f.next() {
                return Some((out, f));
            }
            quiet += 1;
            if quiet >= KEEPALIVE_POLLS {
                return Some((": keepalive\n\n".to_string(), f));
            }
            tokio::time::sleep(super::http::LOG_POLL).await;
        }
    });
    sse(stream)
}

/// Where a log stream stands.
struct Follow {
    host: Arc<std::sync::Mutex<crate::vessel::Host>>,
    id: VesselId,
    from: u64,
    away: bool,
    _permit: Arc<tokio::sync::OwnedSemaphorePermit>,
}

impl Follow {
    /// The events for what is new, if anything.
    fn next(&mut self) -> Option<String> {
        let log = {
            let h = lock(&self.host);
            h.vessels
                .get(&self.id)
                .filter(|l| {
                    matches!(l.record, crate::vessel::Record::Owned { .. }) || l.ended().is_some()
                })
                .map(|l| l.log.clone())
        };
        let Some(log) = log else {
            if self.away {
                return None;
            }
            self.away = true;
            return Some("event: away\ndata: {}\n\n".to_string());
        };
        self.away = false;
        let page = lock(&log).page(self.from);
        if page.next == self.from || page.records.is_empty() {
            self.from = page.next.max(self.from);
            return None;
        }
        self.from = page.next;
        let mut out = String::new();
        for (stream, data) in protocol::vessel::log_records(&page.records) {
            let line = json!({ "stream": stream, "text": String::from_utf8_lossy(data) });
            out.push_str(&format!("event: log\ndata: {line}\n\n"));
        }
        Some(out)
    }
}
