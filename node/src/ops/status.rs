//! `meshnode status`: the report, assembled in the event loop from the
//! node's state, and the judgement of the node's health (docs/guide.md,
//! "Watching a fleet", defines *unhealthy* from the bounds here).

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::control::{
    DiskUse, MemoryUse, StatusMember, StatusReport, StatusVesselLine, VesselInfo,
};

use super::{Link, MeshVessel, OpsBook, Snapshot};
use crate::mesh::peers::Membership;
use crate::mesh::state::NodeState;
use crate::sync::lock;

/// The event loop is unhealthy when an ops tick came this much later than
/// due: failure detection calls a peer unreachable after 3 s of silence,
/// so a loop 2 s late is about to make its peers suspect it, and it
/// answers no control request meanwhile.
pub const LOOP_LAG_UNHEALTHY_MS: u64 = 2_000;

/// A lag worth a warning: a quarter-second stall delays pings and gossip
/// visibly but breaks nothing yet.
pub const LOOP_LAG_WARN_MS: u64 = 250;

/// A vessel this node owns is stuck when it stayed this long in a state
/// that should pass (migrating, waiting, prepared, held by its lease): a
/// migration takes seconds and a lease is renewed within 2 s, so two
/// minutes is no slow network any more.
pub const STUCK_AFTER: Duration = Duration::from_secs(120);

/// States that should pass; a vessel in one for [`STUCK_AFTER`] is stuck.
const PASSING_STATES: [&str; 4] = ["migrating", "waiting", "prepared", "held"];

/// Events a report carries (the ring keeps more): a screen's worth in
/// `status`, and a timeline's in the dashboard.
pub const MAX_REPORT_EVENTS: usize = 32;

/// Below this share of the machine's memory available, a warning.
const LOW_MEMORY_PERCENT: u64 = 10;

/// The report of this node and the mesh, now.
pub fn report(state: &NodeState) -> StatusReport {
    let ops = ops_of(state);
    let members = members(state);
    let (rows, disk, memory) = {
        let mut h = lock(&state.host);
        h.reap();
        let disk = DiskUse {
            store_bytes: h.store.disk_bytes(),
            budget_bytes: h.retention.config.disk_budget_bytes,
        };
        let rows = h.list();
        let vessels_bytes = h
            .vessels
            .values()
            .filter_map(|l| l.runner.as_ref())
            .map(|r| r.memory_bytes())
            .sum();
        let (available_bytes, total_bytes) = {
            let s = crate::mesh::status::sample(Vec::new());
            (s.free_memory_bytes, s.total_memory_bytes)
        };
        let memory = MemoryUse {
            vessels_bytes,
            vessel_budget_bytes: h.dock.memory_limit().bytes,
            available_bytes,
            total_bytes,
        };
        (rows, disk, memory)
    };
    let vessels_here = lines(&ops, state, &rows);
    let running_here = rows.iter().filter(|r| r.state == "running").count() as u64;
    let elsewhere: u64 = members
        .iter()
        .filter(|m| m.state == "up")
        .map(|m| m.vessels as u64)
        .sum();
    let mut events = ops.recent_events();
    let drop = events.len().saturating_sub(MAX_REPORT_EVENTS);
    events.drain(..drop);
    let mut report = StatusReport {
        version: crate::upgrade::running_version().to_string(),
        peer_id: state.identity.peer_id.to_string(),
        name: None,
        uptime_ms: ops.uptime().as_millis() as u64,
        http_addr: lock(&ops.http_addr).map(|a| a.to_string()),
        loop_lag_ms: ops.lag.worst_ms(),
        members,
        vessels_here,
        vessels_in_mesh: running_here + elsewhere,
        disk,
        memory,
        events,
        warnings: Vec::new(),
        unhealthy: Vec::new(),
        upgrade: crate::upgrade::probation::status_line(),
    };
    let own_key = state.identity.public_key();
    let standing = Standing {
        enrolled: state.certificate.is_some(),
        revoked: state.revoked_reason(&own_key),
    };
    judge(&mut report, &standing);
    report
}

fn ops_of(state: &NodeState) -> Arc<OpsBook> {
    lock(&state.host).ops.clone()
}

/// The other members, as failure detection sees them.
fn members(state: &NodeState) -> Vec<StatusMember> {
    state
        .peers
        .iter()
        .filter(|(_, e)| matches!(e.membership, Membership::Member(_)))
        .map(|(p, e)| {
            let status = e.status.as_ref().map(|(s, _)| s);
            StatusMember {
                peer_id: p.to_string(),
                name: None,
                state: crate::mesh::liveness::peer_liveness(&e.liveness)
                    .state
                    .name()
                    .to_string(),
                rtt_us: (e.connections > 0).then(|| e.rtt.srtt_us()).flatten(),
                arch: status.map(|s| s.arch.clone()),
                cpus: status.map(|s| s.cpus),
                load_milli: status.and_then(|s| s.load_milli),
                vessels: status.map_or(0, |s| s.vessels.len() as u32),
            }
        })
        .collect()
}

/// The vessels here, each marked stuck when it stayed in a passing state
/// for [`STUCK_AFTER`].
fn lines(ops: &OpsBook, state: &NodeState, rows: &[VesselInfo]) -> Vec<StatusVesselLine> {
    let now = Instant::now();
    let memory: std::collections::HashMap<_, _> = {
        let h = lock(&state.host);
        h.vessels
            .iter()
            .map(|(id, l)| (*id, l.runner.as_ref().map_or(0, |r| r.memory_bytes())))
            .collect()
    };
    let mut since = lock(&ops.state_since);
    since.retain(|id, _| rows.iter().any(|r| r.id == *id));
    rows.iter()
        .map(|r| {
            let entry = since.entry(r.id).or_insert_with(|| (r.state.clone(), now));
            if entry.0 != r.state {
                *entry = (r.state.clone(), now);
            }
            let stuck = PASSING_STATES.contains(&r.state.as_str())
                && now.duration_since(entry.1) >= STUCK_AFTER;
            StatusVesselLine {
                vessel: r.id.to_hex(),
                name: r.name.clone(),
                state: r.state.clone(),
                why: if r.why.is_empty() {
                    r.reason.clone()
                } else {
                    r.why.clone()
                },
                migrations: r.migrations,
                memory_bytes: memory.get(&r.id).copied().unwrap_or(0),
                stuck,
            }
        })
        .collect()
}

/// What the node's membership says about it.
pub struct Standing {
    pub enrolled: bool,
    /// Why its own key is revoked, if it is.
    pub revoked: Option<String>,
}

/// Fills the report's warnings and the reasons it is unhealthy (empty:
/// healthy), by the definition in docs/guide.md.
pub fn judge(report: &mut StatusReport, standing: &Standing) {
    let mut bad = Vec::new();
    let mut warn = Vec::new();
    if report.loop_lag_ms > LOOP_LAG_UNHEALTHY_MS {
        bad.push(format!(
            "the event loop lags: {} ms late (bound {LOOP_LAG_UNHEALTHY_MS} ms)",
            report.loop_lag_ms
        ));
    } else if report.loop_lag_ms > LOOP_LAG_WARN_MS {
        warn.push(format!(
            "the event loop was {} ms late in the last 10 s",
            report.loop_lag_ms
        ));
    }
    if let Some(budget) = report.disk.budget_bytes {
        if report.disk.store_bytes > budget {
            bad.push(format!(
                "the store ({} bytes) exceeds the disk budget ({budget} bytes; disk_budget_bytes in config.toml)",
                report.disk.store_bytes
            ));
        }
    }
    let up = report.members.iter().filter(|m| m.state == "up").count();
    if !report.members.is_empty() && up == 0 {
        bad.push(format!(
            "no member is reachable ({} known)",
            report.members.len()
        ));
    } else if up < report.members.len() {
        warn.push(format!(
            "{} of {} members not up",
            report.members.len() - up,
            report.members.len()
        ));
    }
    for v in report.vessels_here.iter().filter(|v| v.stuck) {
        bad.push(format!(
            "vessel {} ({}) is stuck: {} for more than {} s",
            v.name,
            &v.vessel[..8],
            v.state,
            STUCK_AFTER.as_secs()
        ));
    }
    for v in report.vessels_here.iter().filter(|v| v.state == "fenced") {
        warn.push(format!(
            "vessel {} ({}) was fenced here: it runs elsewhere under a newer epoch",
            v.name,
            &v.vessel[..8]
        ));
    }
    if let Some(why) = &standing.revoked {
        bad.push(format!("this node is revoked: {why}"));
    }
    if !standing.enrolled {
        bad.push("this node is not a member of a mesh (not enrolled)".into());
    }
    if let (Some(avail), Some(total)) = (report.memory.available_bytes, report.memory.total_bytes) {
        if total > 0 && avail * 100 / total < LOW_MEMORY_PERCENT {
            warn.push(format!(
                "the machine has {} MiB of {} MiB memory available",
                avail >> 20,
                total >> 20
            ));
        }
    }
    report.unhealthy = bad;
    report.warnings = warn;
}

/// The snapshot the event loop publishes for `/metrics` and the dashboard.
pub fn snapshot(state: &NodeState) -> Snapshot {
    let report = report(state);
    let me = state.identity.peer_id.to_string();
    let mut mesh_vessels: Vec<MeshVessel> = report
        .vessels_here
        .iter()
        .filter(|v| v.state == "running" || v.state == "migrating")
        .map(|v| MeshVessel {
            vessel: v.vessel.clone(),
            name: v.name.clone(),
            node: me.clone(),
        })
        .collect();
    let mut links = Vec::new();
    for (p, e) in &state.peers {
        if !matches!(e.membership, Membership::Member(_)) {
            continue;
        }
        let peer = p.to_string();
        if let Some(rtt) = (e.connections > 0).then(|| e.rtt.srtt_us()).flatten() {
            links.push(Link {
                a: me.clone(),
                b: peer.clone(),
                rtt_us: rtt,
            });
        }
        let Some((status, _)) = &e.status else {
            continue;
        };
        let up = crate::mesh::liveness::peer_liveness(&e.liveness)
            .state
            .name()
            == "up";
        if up {
            mesh_vessels.extend(status.named.iter().map(|v| MeshVessel {
                vessel: v.id.to_hex(),
                name: v.name.clone(),
                node: peer.clone(),
            }));
        }
        for r in &status.rtts {
            if r.peer != me && !links.iter().any(|l| l.a == r.peer && l.b == peer) {
                links.push(Link {
                    a: peer.clone(),
                    b: r.peer.clone(),
                    rtt_us: r.rtt_us,
                });
            }
        }
    }
    // A vessel mid-move may be listed by both nodes for a moment: keep
    // the first (this node's own view).
    let mut seen = std::collections::HashSet::new();
    mesh_vessels.retain(|v| seen.insert(v.vessel.clone()));
    let own = crate::mesh::status::sample(Vec::new());
    Snapshot {
        report: Some(report),
        mesh_vessels,
        links,
        cpus: own.cpus,
        load_milli: own.load_milli,
        arch: own.arch,
        membership: state.swim.traffic,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> StatusReport {
        StatusReport {
            version: "0".into(),
            peer_id: "p".into(),
            name: None,
            uptime_ms: 1,
            http_addr: None,
            loop_lag_ms: 0,
            members: vec![member("up")],
            vessels_here: Vec::new(),
            vessels_in_mesh: 0,
            disk: DiskUse {
                store_bytes: 10,
                budget_bytes: Some(100),
            },
            memory: MemoryUse {
                vessels_bytes: 0,
                vessel_budget_bytes: 1,
                available_bytes: Some(50),
                total_bytes: Some(100),
            },
            events: Vec::new(),
            warnings: Vec::new(),
            unhealthy: Vec::new(),
            upgrade: None,
        }
    }

    fn member(state: &str) -> StatusMember {
        StatusMember {
            peer_id: "m".into(),
            name: None,
            state: state.into(),
            rtt_us: None,
            arch: None,
            cpus: None,
            load_milli: None,
            vessels: 0,
        }
    }

    fn ok() -> Standing {
        Standing {
            enrolled: true,
            revoked: None,
        }
    }

    fn judged(mut r: StatusReport, s: &Standing) -> StatusReport {
        judge(&mut r, s);
        r
    }

    #[test]
    fn a_quiet_node_is_healthy() {
        let r = judged(healthy(), &ok());
        assert!(r.unhealthy.is_empty(), "{:?}", r.unhealthy);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        // Alone (no member known) is healthy too.
        let mut alone = healthy();
        alone.members.clear();
        assert!(judged(alone, &ok()).unhealthy.is_empty());
    }

    #[test]
    fn each_unhealthy_condition_is_named() {
        let mut r = healthy();
        r.loop_lag_ms = LOOP_LAG_UNHEALTHY_MS + 1;
        assert!(judged(r, &ok()).unhealthy[0].contains("event loop lags"));
        let mut r = healthy();
        r.disk.store_bytes = 101;
        assert!(judged(r, &ok()).unhealthy[0].contains("disk budget"));
        let mut r = healthy();
        r.members = vec![member("unreachable"), member("down")];
        assert!(judged(r, &ok()).unhealthy[0].contains("no member is reachable"));
        let mut r = healthy();
        r.vessels_here.push(StatusVesselLine {
            vessel: "0123456789abcdef".into(),
            name: "kv".into(),
            state: "migrating".into(),
            why: String::new(),
            migrations: 0,
            memory_bytes: 0,
            stuck: true,
        });
        assert!(judged(r, &ok()).unhealthy[0].contains("kv (01234567) is stuck"));
        let revoked = Standing {
            enrolled: true,
            revoked: Some("revoked by you".into()),
        };
        assert!(judged(healthy(), &revoked).unhealthy[0].contains("revoked"));
        let alone = Standing {
            enrolled: false,
            revoked: None,
        };
        assert!(judged(healthy(), &alone).unhealthy[0].contains("not enrolled"));
    }

    #[test]
    fn a_late_loop_below_the_bound_and_a_member_down_only_warn() {
        let mut r = healthy();
        r.loop_lag_ms = LOOP_LAG_WARN_MS + 1;
        r.members.push(member("down"));
        let r = judged(r, &ok());
        assert!(r.unhealthy.is_empty(), "{:?}", r.unhealthy);
        assert_eq!(r.warnings.len(), 2, "{:?}", r.warnings);
    }
}
