//! The tables of `meshnode ps` and `meshnode peers`, and their JSON.
//!
//! A default table fits within [`MAX_TABLE_COLUMNS`]: nodes are shown by
//! name (or a [`SHORT_ID_CHARS`] PeerId prefix when they have no name of
//! their own), vessel ids by a prefix that `ps`, `logs` and the rest
//! accept, and long cells are cut with `…`. `-o wide` shows full PeerIds,
//! ids and every column, uncut. `ps VESSEL` shows one vessel whole.

use std::collections::BTreeMap;
use std::time::Duration;

use protocol::control::{LivenessState, PeerInfo, VesselInfo};

use super::resolve::{claimed_name, clashes, label, unique_name, SHORT_ID_CHARS};

/// The widest a default table's line may be: a terminal of 100 columns,
/// what a laptop's half screen or a Pi's console gives.
pub const MAX_TABLE_COLUMNS: usize = 100;

/// How much of a vessel id the default `ps` shows: commands accept any
/// unique id prefix, and 8 hex digits (32 bits) are unique on any mesh a
/// user lists by eye.
pub const SHORT_VESSEL_ID_CHARS: usize = 8;

/// The widest a vessel name is shown in the default `ps` (names may be
/// 128 bytes long).
const PS_NAME_COLUMN: usize = 12;

/// `-o wide` or the default table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Within 100 columns: names, short ids, cut cells.
    Table,
    /// Full PeerIds and ids, every column, nothing cut.
    Wide,
}

/// `s` cut to `width` characters, ending in `…` when cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// `{s:<width}` for a cell that may be longer: cut, then padded.
fn cell(s: &str, width: usize) -> String {
    format!("{:<width$}", fit(s, width))
}

/// A duration for messages: `0.4s`, `12.3s`… below 10 s with tenths, then
/// `4m02s`, `1h02m`.
/// Bytes for a person: `512 B`, `3.4 KiB`, `12.0 MiB`, `1.2 GiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

pub fn human_ms(ms: u64) -> String {
    match ms {
        ms if ms < 10_000 => format!("{:.1}s", ms as f64 / 1000.0),
        ms if ms < 3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        ms => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// An uptime, in one format at every scale: the two largest whole units
/// (`7s`, `4m02s`, `3h07m`, `2d05h`).
pub fn uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        s => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

/// A vessel's uptime: the time it has run since it was deployed, across
/// its moves; `-` on the row of a host that does not answer (its state is
/// the host's, `unreachable` or `down`, and WHY says since when).
fn uptime_column(v: &VesselInfo) -> String {
    if crate::mesh::silent::from_gossip(v) {
        "-".to_string()
    } else {
        uptime(v.run_ms)
    }
}

/// Why a vessel is where it is; a node older than placement says only how
/// it got there.
pub fn why_of(v: &VesselInfo) -> &str {
    if v.why.is_empty() {
        &v.reason
    } else {
        &v.why
    }
}

/// A vessel's state, short: `running`, `exited 0`, `trapped`, `failed 3`.
/// A failure's whole message (a trap names the wasm function) stays in
/// `ps VESSEL` and `--json`.
/// Whether a vessel has ended (stopped, exited, trapped, failed): `ps`
/// hides it unless `-a`, and only such a vessel can be `rm`-ed.
pub fn is_ended(state: &str) -> bool {
    matches!(state, "stopped" | "exited") || state.starts_with("failed")
}

/// The line under a `ps` table that hid ended vessels, if it hid any.
pub fn hidden_footer(hidden: usize) -> Option<String> {
    (hidden > 0).then(|| {
        format!(
            "({hidden} ended vessel{} hidden: `meshnode ps -a` lists them, `meshnode rm VESSEL` removes one)",
            if hidden == 1 { "" } else { "s" }
        )
    })
}

pub fn short_state(v: &VesselInfo) -> String {
    let Some(message) = v.state.strip_prefix("failed") else {
        return match (v.state.as_str(), v.exit_code) {
            ("exited", Some(code)) => format!("exited {code}"),
            (state, _) => state.to_string(),
        };
    };
    let word = if message.to_ascii_lowercase().contains("trap") {
        "trapped"
    } else {
        "failed"
    };
    match v.exit_code {
        Some(code) => format!("{word} {code}"),
        None => word.to_string(),
    }
}

/// `ps`'s REPLICAS column: how many replicas hold a checkpoint of the
/// vessel out of those it asks for, and how old the oldest of them is (what
/// a failover would lose now); `off` for `--replicas 0`, `-` where the
/// vessel does not run.
fn replicas_column(v: &VesselInfo) -> String {
    match v.replicas_wanted {
        None => "-".into(),
        Some(0) => "off".into(),
        Some(wanted) => {
            let holding = v.replicas.iter().filter(|r| r.age_ms.is_some()).count();
            match v.replica_age_ms {
                Some(age) => format!("{holding}/{wanted} {}", human_ms(age)),
                None => format!("{holding}/{wanted}"),
            }
        }
    }
}

/// How tables name nodes: PeerId → its name, or its short id.
pub struct NodeLabels {
    labels: BTreeMap<String, String>,
    names: BTreeMap<String, String>,
}

impl NodeLabels {
    /// From a `peers` answer (empty: every node is shown by short id).
    pub fn new(peers: &[PeerInfo]) -> NodeLabels {
        let clashes = clashes(peers);
        NodeLabels {
            labels: peers
                .iter()
                .map(|p| (p.peer_id.clone(), label(p, &clashes)))
                .collect(),
            names: peers
                .iter()
                .filter_map(|p| Some((p.peer_id.clone(), unique_name(p, &clashes)?.to_string())))
                .collect(),
        }
    }

    /// Its name, or its short id.
    pub fn label(&self, peer_id: &str) -> String {
        self.labels
            .get(peer_id)
            .cloned()
            .unwrap_or_else(|| super::resolve::short_id(peer_id).to_string())
    }

    /// Its name, when it has one of its own.
    pub fn name(&self, peer_id: &str) -> Option<&str> {
        self.names.get(peer_id).map(String::as_str)
    }

    /// `text` with every PeerId it knows replaced by its label: WHY and the
    /// lease name nodes by PeerId, which alone would fill a default line.
    pub fn shorten(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (id, label) in &self.labels {
            if text.contains(id.as_str()) {
                text = text.replace(id.as_str(), label);
            }
        }
        text
    }

    /// `kitchen-pi (12D3KooW…)` with the whole PeerId.
    pub fn full(&self, peer_id: &str) -> String {
        match self.name(peer_id) {
            Some(n) => format!("{n} ({peer_id})"),
            None => peer_id.to_string(),
        }
    }
}

/// The `ps` table, one string per line.
pub fn ps_table(rows: &[VesselInfo], nodes: &NodeLabels, output: Output) -> Vec<String> {
    let wide = output == Output::Wide;
    let mut lines = vec![if wide {
        format!(
            "{:<16} {:<16} {:<52} {:<24} {:<11} {:>7} {:>4} {:>6} {:>10}  WHY",
            "ID", "NAME", "NODE", "NODE NAME", "STATE", "UPTIME", "MIGR", "CKPT", "REPLICAS"
        )
    } else {
        format!(
            "{:<8} {:<12} {:<16} {:<11} {:>7} {:>10}  WHY",
            "ID", "NAME", "NODE", "STATE", "UPTIME", "REPLICAS"
        )
    }];
    for v in rows {
        lines.push(if wide {
            format!(
                "{:<16} {:<16} {:<52} {:<24} {:<11} {:>7} {:>4} {:>6} {:>10}  {}",
                v.id,
                v.name,
                v.node,
                nodes.name(&v.node).unwrap_or("-"),
                short_state(v),
                uptime_column(v),
                v.migrations,
                v.checkpoint_age_ms.map_or("-".to_string(), human_ms),
                replicas_column(v),
                why_of(v)
            )
        } else {
            format!(
                "{:<8} {} {} {:<11} {:>7} {:>10}  {}",
                &v.id.to_hex()[..SHORT_VESSEL_ID_CHARS],
                cell(&v.name, PS_NAME_COLUMN),
                cell(&nodes.label(&v.node), SHORT_ID_CHARS),
                short_state(v),
                uptime_column(v),
                replicas_column(v),
                nodes.shorten(why_of(v))
            )
        });
        lines.extend(ps_details(v, nodes, output));
    }
    if wide {
        lines
    } else {
        lines.iter().map(|l| fit(l, MAX_TABLE_COLUMNS)).collect()
    }
}

/// The lines under a vessel's row: a skipped checkpoint, its lease, its
/// durability and its replicas.
fn ps_details(v: &VesselInfo, nodes: &NodeLabels, output: Output) -> Vec<String> {
    let indent = match output {
        Output::Wide => 16,
        Output::Table => SHORT_VESSEL_ID_CHARS,
    };
    let mut lines = Vec::new();
    let mut line = |text: String| {
        let text = match output {
            Output::Wide => text,
            Output::Table => nodes.shorten(&text),
        };
        lines.push(format!("{:<indent$} {text}", ""))
    };
    if let Some(problem) = &v.checkpoint_problem {
        line(format!("checkpoint skipped: {problem}"));
    }
    if let Some(lease) = &v.lease {
        line(format!("lease: {lease}"));
    }
    if let Some(durability) = &v.durability {
        line(format!(
            "durability: {durability} (output waits for every replica)"
        ));
    }
    for r in &v.replicas {
        let state = match (&r.problem, r.age_ms) {
            (Some(p), _) => format!("failing: {p}"),
            (None, Some(age)) => format!("holds a checkpoint {} old", human_ms(age)),
            (None, None) => "nothing shipped yet".to_string(),
        };
        let node = match output {
            Output::Wide => r.node.clone(),
            Output::Table => nodes.label(&r.node),
        };
        line(format!("replica {node}: {state}"));
    }
    if let Some(problem) = &v.replication_problem {
        line(format!("replicas: {problem}"));
    }
    lines
}

/// `ps VESSEL`: one vessel, whole, one fact a line.
pub fn vessel_details(v: &VesselInfo, nodes: &NodeLabels) -> Vec<String> {
    let mut lines = vec![
        format!("id:          {}", v.id),
        format!("name:        {}", v.name),
        format!("node:        {}", nodes.full(&v.node)),
        format!("state:       {}", v.state),
        format!(
            "exit code:   {}",
            v.exit_code.map_or("-".to_string(), |c| c.to_string())
        ),
        format!("uptime:      {}", uptime_column(v)),
        format!("epoch:       {}", v.epoch),
        format!("migrations:  {}", v.migrations),
        format!("pinned:      {}", if v.pinned { "yes" } else { "no" }),
        format!("why:         {}", why_of(v)),
        format!("how it came: {}", v.reason),
        format!(
            "checkpoint:  {}",
            v.checkpoint_age_ms
                .map_or("none here".to_string(), |ms| format!(
                    "{} old",
                    human_ms(ms)
                ))
        ),
        format!("replicas:    {}", replicas_column(v)),
        format!(
            "max memory:  {}",
            v.max_memory_bytes
                .map_or("the node's limit".to_string(), human_bytes)
        ),
        format!(
            "restart:     {}{}",
            v.restart.as_deref().unwrap_or("never"),
            match v.restarts {
                0 => String::new(),
                n => format!(
                    " (restarted {n} time{} here)",
                    if n == 1 { "" } else { "s" }
                ),
            }
        ),
    ];
    lines.extend(ps_details(v, nodes, Output::Wide).iter().map(|l| {
        let text = l.trim_start();
        format!("  {text}")
    }));
    lines
}

/// Up, or from a node older than failure detection (it does not say).
pub fn is_up(p: &PeerInfo) -> bool {
    p.liveness
        .as_ref()
        .is_none_or(|l| l.state == LivenessState::Up)
}

/// `self` for the node talked to, `up`, `unreachable 4.2s`, `down 41s`
/// (how long it has been silent).
/// The membership protocol's view in `-o wide`: `alive/3` (state and
/// incarnation), `-` when it does not know the peer.
pub fn member_column(p: &PeerInfo) -> String {
    p.member_state
        .map_or("-".into(), |m| format!("{}/{}", m.state, m.incarnation))
}

pub fn state_column(p: &PeerInfo) -> String {
    match &p.liveness {
        _ if p.is_self => "self".to_string(),
        None => "-".to_string(),
        Some(l) if l.state == LivenessState::Up => "up".to_string(),
        Some(l) => format!("{} {}", l.state, human_silence(l.silent_ms)),
    }
}

fn human_silence(ms: u64) -> String {
    if ms < 10_000 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else {
        format!("{}s", ms / 1000)
    }
}

/// For a peer that is not up: when it was last heard from, and its last
/// status, marked stale with its age (a line each).
pub fn stale_status_lines(p: &PeerInfo) -> Vec<String> {
    let Some(l) = p.liveness.as_ref().filter(|_| !is_up(p)) else {
        return Vec::new();
    };
    let heard = std::time::UNIX_EPOCH + Duration::from_millis(l.last_heard_unix_ms);
    let mut lines = vec![format!(
        "last heard from at {} UTC",
        crate::mesh::liveness::clock_utc(heard)
    )];
    if let (Some(s), Some(age)) = (&p.status, p.status_age_ms) {
        lines.push(format!(
            "its last status is stale ({} old): load {}, {} free, {} vessel(s)",
            human_silence(age),
            load(p),
            s.free_memory_bytes
                .map_or("-".into(), |b| format!("{}MiB", b / (1024 * 1024))),
            s.vessels.len()
        ));
    }
    lines
}

fn load(p: &PeerInfo) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.load_milli)
        .map_or("-".into(), |l| format!("{:.2}", l as f64 / 1000.0))
}

/// The `peers` table, one string per line: the node talked to first,
/// marked `self`; a name that several nodes claim is shown on a line of its
/// own, since it names none of them.
pub fn peers_table(peers: &[PeerInfo], output: Output) -> Vec<String> {
    let wide = output == Output::Wide;
    let clashes = clashes(peers);
    let mut lines = vec![if wide {
        format!(
            "{:<24} {:<52} {:<17} {:<12} {:>9} {:>9} {:<8} {:<7} {:>6} {:>9} {:<7} ADDRESS",
            "NAME",
            "PEER",
            "STATE",
            "MEMBER",
            "RTT",
            "EST RTT",
            "ARCH",
            "OS",
            "LOAD",
            "FREE MEM",
            "VESSELS"
        )
    } else {
        format!(
            "{:<24} {:<16} {:<16} {:>8} {:<7} {:>5} {:>8} {:>7}",
            "NAME", "PEER", "STATE", "RTT", "ARCH", "LOAD", "FREE MEM", "VESSELS"
        )
    }];
    let mut ordered: Vec<&PeerInfo> = peers.iter().filter(|p| p.is_self).collect();
    ordered.extend(peers.iter().filter(|p| !p.is_self));
    for p in ordered {
        // The load of a node that does not answer is stale: shown below,
        // with its age, not in the columns.
        let s = p.status.as_ref().filter(|_| is_up(p));
        let name = claimed_name(p).unwrap_or("-");
        let est = p
            .estimated_rtt_us
            .map_or("-".into(), |us| format!("~{:.1}ms", us as f64 / 1000.0));
        let measured = p.rtt_us.map(|us| format!("{:.2}ms", us as f64 / 1000.0));
        // The default table has room for one RTT: the measured one, else
        // the estimate (marked `~`); the wide one shows both.
        let rtt = match (&measured, p.estimated_rtt_us, wide) {
            (Some(m), _, _) => m.clone(),
            (None, Some(_), false) => est.clone(),
            _ => "-".into(),
        };
        let arch = s.map_or("-", |s| s.arch.as_str());
        let load = s.map_or("-".into(), |_| load(p));
        let free = s
            .and_then(|s| s.free_memory_bytes)
            .map_or("-".into(), |b| format!("{}MiB", b / (1024 * 1024)));
        let vessels = s.map_or("-".into(), |s| s.vessels.len().to_string());
        lines.push(if wide {
            format!(
                "{:<24} {:<52} {:<17} {:<12} {:>9} {:>9} {:<8} {:<7} {:>6} {:>9} {:<7} {}",
                name,
                p.peer_id,
                state_column(p),
                member_column(p),
                rtt,
                est,
                arch,
                s.map_or("-", |s| s.os.as_str()),
                load,
                free,
                vessels,
                p.addrs.first().map_or("-", |a| a.as_str()),
            )
        } else {
            format!(
                "{} {:<16} {:<16} {:>8} {} {:>5} {:>8} {:>7}",
                cell(name, 24),
                super::resolve::short_id(&p.peer_id),
                state_column(p),
                rtt,
                cell(arch, 7),
                load,
                free,
                vessels,
            )
        });
        let mut below = Vec::new();
        if let Some(others) = claimed_name(p).and_then(|n| clashes.get(n)) {
            below.push(format!(
                "name `{}` is claimed by {} nodes, so it names none of them: give each its own (`start --name`)",
                claimed_name(p).unwrap_or_default(),
                others.len()
            ));
        }
        if let Some(r) = &p.refused {
            below.push(format!("not a member: {r}"));
        }
        below.extend(stale_status_lines(p));
        lines.extend(below.into_iter().map(|l| format!("    {l}")));
    }
    if wide {
        lines
    } else {
        lines.iter().map(|l| fit(l, MAX_TABLE_COLUMNS)).collect()
    }
}

/// The JSON shape of `peers --json`: one object per peer (the node talked
/// to first, with `"self": true`).
pub fn peers_json(peers: &[PeerInfo]) -> serde_json::Value {
    let clashes = clashes(peers);
    serde_json::Value::Array(
        peers
            .iter()
            .map(|p| {
                let s = p.status.as_ref();
                serde_json::json!({
                    "peer_id": p.peer_id,
                    "addresses": p.addrs,
                    "member": p.member,
                    "refused": p.refused,
                    "user_key": p.user_key.map(|k| k.to_hex()),
                    "rtt_ms": p.rtt_us.map(|us| us as f64 / 1000.0),
                    "estimated_rtt_ms": p.estimated_rtt_us.map(|us| us as f64 / 1000.0),
                    "arch": s.map(|s| s.arch.clone()),
                    "os": s.map(|s| s.os.clone()),
                    "cpus": s.map(|s| s.cpus),
                    "load": s.and_then(|s| s.load_milli).map(|l| l as f64 / 1000.0),
                    "free_memory_bytes": s.and_then(|s| s.free_memory_bytes),
                    "total_memory_bytes": s.and_then(|s| s.total_memory_bytes),
                    "vessels": s.map(|s| s.vessels.clone()).unwrap_or_default(),
                    "status_age_ms": p.status_age_ms,
                    "rtt_age_ms": p.rtt_age_ms,
                    "state": p.liveness.as_ref().map(|l| l.state.name()),
                    "member_state": p.member_state.map(|m| m.state.name()),
                    "incarnation": p.member_state.map(|m| m.incarnation),
                    "silent_ms": p.liveness.as_ref().map(|l| l.silent_ms),
                    "last_heard_unix_ms": p.liveness.as_ref().map(|l| l.last_heard_unix_ms),
                    "status_stale": !is_up(p),
                    "name": claimed_name(p),
                    "self": p.is_self,
                    "name_clash": claimed_name(p).and_then(|n| clashes.get(n)),
                    "version": s.and_then(|s| s.software.as_ref()).map(|v| v.version.clone()),
                    "draining": s.map(|s| s.draining),
                })
            })
            .collect(),
    )
}

/// The JSON shape of `ps --json`.
pub fn ps_json(rows: &[VesselInfo], nodes: &NodeLabels) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .map(|v| {
                serde_json::json!({
                    "id": v.id.to_hex(),
                    "name": v.name,
                    "node": v.node,
                    "state": v.state,
                    "epoch": v.epoch,
                    "uptime_ms": v.run_ms,
                    "migrations": v.migrations,
                    "exit_code": v.exit_code,
                    "reason": v.reason,
                    "why": why_of(v),
                    "pinned": v.pinned,
                    "checkpoint_age_ms": v.checkpoint_age_ms,
                    "checkpoint_problem": v.checkpoint_problem,
                    "lease": v.lease,
                    "replicas_wanted": v.replicas_wanted,
                    "replicas": v.replicas.iter().map(|r| serde_json::json!({
                        "node": r.node,
                        "image": r.image,
                        "age_ms": r.age_ms,
                        "problem": r.problem,
                    })).collect::<Vec<_>>(),
                    "replica_age_ms": v.replica_age_ms,
                    "replication_problem": v.replication_problem,
                    "replica_bytes_sent": v.replica_bytes_sent,
                    "replica_chunks_sent": v.replica_chunks_sent,
                    "durability": v.durability.as_deref().unwrap_or("async"),
                    "node_name": nodes.name(&v.node),
                    "state_short": short_state(v),
                    "ports": v.ports,
                    "max_memory_bytes": v.max_memory_bytes,
                    "restart": v.restart.as_deref().unwrap_or("never"),
                    "restarts": v.restarts,
                })
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::control::PeerLiveness;
    use protocol::vessel::VesselId;

    pub(crate) fn peer(seed: u8, name: Option<&str>, state: LivenessState) -> PeerInfo {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let id = crate::identity::NodeIdentity::from_signing_key(key).peer_id;
        let mut status = crate::mesh::status::sample(vec!["v1".into()]);
        status.name = name.map(str::to_string);
        PeerInfo {
            peer_id: id.to_string(),
            addrs: vec![format!("/ip4/192.0.2.7/udp/7646/quic-v1/p2p/{id}")],
            rtt_us: Some(1_234),
            estimated_rtt_us: None,
            member: true,
            refused: None,
            user_key: None,
            status: Some(status),
            status_age_ms: Some(12_300),
            rtt_age_ms: None,
            liveness: Some(PeerLiveness {
                state,
                silent_ms: 4_210,
                // 07:41:02 UTC.
                last_heard_unix_ms: (1_796_601_600 + 7 * 3600 + 41 * 60 + 2) * 1000,
            }),
            is_self: false,
            member_state: None,
        }
    }

    fn vessel(seed: u8, name: &str, node: &str, state: &str) -> VesselInfo {
        VesselInfo {
            id: VesselId([seed; 8]),
            name: name.into(),
            node: node.into(),
            state: state.into(),
            epoch: 1,
            run_ms: 242_000,
            migrations: 2,
            exit_code: None,
            reason: "deployed here".into(),
            why: "nearest to its clients: 5 ms here vs 80 ms at somewhere far away".into(),
            pinned: false,
            checkpoint_age_ms: Some(400),
            checkpoint_problem: Some("over the disk budget of the node, and more words".into()),
            lease: Some("held at epoch 2 by 3 voters, 1.2 s left".into()),
            replicas_wanted: Some(2),
            replicas: vec![protocol::control::ReplicaInfo {
                node: node.into(),
                image: None,
                age_ms: Some(300),
                problem: None,
            }],
            replica_age_ms: Some(300),
            replication_problem: Some("1 of 2 replicas: only 1 other member".into()),
            replica_bytes_sent: 0,
            replica_chunks_sent: 0,
            durability: Some("sync 50ms".into()),
            ports: vec![7000],
            max_memory_bytes: None,
            restart: None,
            restarts: 0,
        }
    }

    #[test]
    fn default_tables_fit_100_columns_with_long_names_and_wide_ones_show_everything() {
        let long = "n".repeat(protocol::control::MAX_NODE_NAME_BYTES);
        let mut peers = vec![
            peer(1, Some(&long), LivenessState::Up),
            peer(2, None, LivenessState::Unreachable),
            peer(3, Some("kitchen-pi"), LivenessState::Up),
        ];
        peers[0].is_self = true;
        peers[1].refused = Some("a very long reason ".repeat(10));
        let table = peers_table(&peers, Output::Table);
        for l in &table {
            assert!(
                l.chars().count() <= MAX_TABLE_COLUMNS,
                "{} columns: {l}",
                l.len()
            );
        }
        assert!(
            table[1].starts_with(&long) && table[1].contains(" self "),
            "{table:?}"
        );
        assert!(table
            .iter()
            .any(|l| l.contains("last heard from at 07:41:02 UTC")));
        let wide = peers_table(&peers, Output::Wide).join("\n");
        assert!(
            wide.contains(&peers[1].peer_id) && wide.contains("192.0.2.7"),
            "{wide}"
        );

        let nodes = NodeLabels::new(&peers);
        let rows: Vec<VesselInfo> = (0..40)
            .map(|i| {
                vessel(
                    i,
                    &"v".repeat(128),
                    &peers[(i % 3) as usize].peer_id,
                    "running",
                )
            })
            .collect();
        let table = ps_table(&rows, &nodes, Output::Table);
        for l in &table {
            assert!(
                l.chars().count() <= MAX_TABLE_COLUMNS,
                "{} columns: {l}",
                l.len()
            );
        }
        // Nodes by name, else by short id, in WHY too.
        assert!(
            table.iter().any(|l| l.contains(" kitchen-pi ")),
            "{table:?}"
        );
        let mut why = vessel(99, "w", &peers[0].peer_id, "running");
        why.why = format!("deployed here through {}", peers[2].peer_id);
        let line = &ps_table(&[why], &nodes, Output::Table)[1];
        assert!(line.contains("deployed here through kitche"), "{line}");
        let short = super::super::resolve::short_id(&peers[1].peer_id);
        assert!(table.iter().any(|l| l.contains(short)), "{table:?}");
        assert!(
            !table.iter().any(|l| l.contains(&peers[1].peer_id)),
            "{table:?}"
        );
        let wide = ps_table(&rows, &nodes, Output::Wide).join("\n");
        assert!(wide.contains(&peers[1].peer_id) && wide.contains(&"v".repeat(128)));
    }

    #[test]
    fn a_failed_vessel_is_short_in_the_table_and_whole_in_its_details() {
        let message = "failed: trap: unreachable executed in function `crash_here` at offset 0x1234 with a long tail";
        let mut v = vessel(1, "crashy", "12D3KooWnode", message);
        assert_eq!(short_state(&v), "trapped");
        let nodes = NodeLabels::new(&[]);
        let table = ps_table(std::slice::from_ref(&v), &nodes, Output::Table);
        assert!(table[1].contains(" trapped "), "{table:?}");
        assert!(!table[1].contains("crash_here"), "{table:?}");
        assert!(vessel_details(&v, &nodes)
            .iter()
            .any(|l| l.ends_with(message)));
        v.state = "failed: proc_exit with a message".into();
        v.exit_code = Some(3);
        assert_eq!(short_state(&v), "failed 3");
        v.state = "exited".into();
        v.exit_code = Some(0);
        assert_eq!(short_state(&v), "exited 0");
    }

    #[test]
    fn uptime_has_one_format() {
        assert_eq!(uptime(0), "0s");
        assert_eq!(uptime(7_900), "7s");
        assert_eq!(uptime(242_000), "4m02s");
        assert_eq!(uptime(3 * 3_600_000 + 7 * 60_000), "3h07m");
        assert_eq!(uptime(2 * 86_400_000 + 5 * 3_600_000), "2d05h");
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }

    #[test]
    fn a_peer_that_is_not_up_shows_its_state_and_its_status_as_stale() {
        let up = peer(2, None, LivenessState::Up);
        assert_eq!(state_column(&up), "up");
        assert!(stale_status_lines(&up).is_empty());
        let gone = peer(2, None, LivenessState::Unreachable);
        assert_eq!(state_column(&gone), "unreachable 4.2s");
        let lines = stale_status_lines(&gone);
        assert_eq!(lines[0], "last heard from at 07:41:02 UTC");
        assert!(
            lines[1].starts_with("its last status is stale (12s old): load "),
            "{lines:?}"
        );
        assert!(lines[1].ends_with(", 1 vessel(s)"), "{lines:?}");
        let mut down = peer(2, None, LivenessState::Down);
        down.liveness.as_mut().unwrap().silent_ms = 41_900;
        assert_eq!(state_column(&down), "down 41s");
        let json = peers_json(&[gone]);
        assert_eq!(json[0]["state"], "unreachable");
        assert_eq!(json[0]["silent_ms"], 4210);
        assert_eq!(json[0]["status_stale"], true);
        assert_eq!(json[0]["self"], false);
        // A node older than failure detection says nothing: not stale.
        let old = PeerInfo {
            liveness: None,
            ..peer(2, None, LivenessState::Up)
        };
        assert_eq!(state_column(&old), "-");
        assert!(stale_status_lines(&old).is_empty());
    }

    /// `peers` shows the coordinates' estimate beside the measured RTT:
    /// both in the wide table and the JSON; in the default table, the
    /// measured one, else the estimate marked `~`.
    #[test]
    fn peers_show_the_estimated_rtt_beside_the_measured_one() {
        let mut both = peer(1, Some("both"), LivenessState::Up);
        both.estimated_rtt_us = Some(41_700);
        let mut only_est = peer(2, Some("only-est"), LivenessState::Up);
        only_est.rtt_us = None;
        only_est.estimated_rtt_us = Some(88_250);
        let neither = PeerInfo {
            rtt_us: None,
            ..peer(3, Some("neither"), LivenessState::Up)
        };
        let peers = [both, only_est, neither];
        let table = peers_table(&peers, Output::Table);
        let row = |name: &str| table.iter().find(|l| l.starts_with(name)).unwrap().clone();
        assert!(row("both ").contains(" 1.23ms "), "{table:?}");
        assert!(!row("both ").contains("~41.7ms"), "{table:?}");
        assert!(row("only-est ").contains(" ~88.2ms "), "{table:?}");
        assert!(!row("neither ").contains("ms "), "{table:?}");
        let wide = peers_table(&peers, Output::Wide);
        assert!(
            wide[0].contains(" RTT ") && wide[0].contains(" EST RTT "),
            "{wide:?}"
        );
        let row = wide.iter().find(|l| l.starts_with("both ")).unwrap();
        assert!(
            row.contains(" 1.23ms ") && row.contains(" ~41.7ms "),
            "{row}"
        );
        let json = peers_json(&peers);
        assert_eq!(json[0]["rtt_ms"], 1.234);
        assert_eq!(json[0]["estimated_rtt_ms"], 41.7);
        assert_eq!(json[1]["rtt_ms"], serde_json::Value::Null);
        assert_eq!(json[1]["estimated_rtt_ms"], 88.25);
        assert_eq!(json[2]["estimated_rtt_ms"], serde_json::Value::Null);
    }

    /// The membership protocol's view: a column of `-o wide`, two fields
    /// of the JSON; absent (an older node, a peer it does not know) as `-`
    /// and null.
    #[test]
    fn peers_show_the_membership_view_with_its_incarnation() {
        use protocol::control::{SwimState, SwimView};
        let mut suspect = peer(1, Some("sus"), LivenessState::Up);
        suspect.member_state = Some(SwimView {
            state: SwimState::Suspect,
            incarnation: 3,
        });
        let unknown = peer(2, Some("unk"), LivenessState::Up);
        let peers = [suspect, unknown];
        let wide = peers_table(&peers, Output::Wide);
        assert!(wide[0].contains(" MEMBER "), "{wide:?}");
        let at = wide[0].find(" MEMBER ").unwrap() + 1;
        let cell = |name: &str| {
            let row = wide.iter().find(|l| l.starts_with(name)).unwrap();
            row[at..].split(' ').next().unwrap().to_string()
        };
        assert_eq!(cell("sus "), "suspect/3", "{wide:?}");
        assert_eq!(cell("unk "), "-", "{wide:?}");
        let json = peers_json(&peers);
        assert_eq!(json[0]["member_state"], "suspect");
        assert_eq!(json[0]["incarnation"], 3);
        assert_eq!(json[1]["member_state"], serde_json::Value::Null);
        // A state from a newer node decodes, as unknown.
        let newer: SwimState = serde_json::from_str("\"quarantined\"").unwrap();
        assert_eq!(newer, SwimState::Unknown);
    }

    #[test]
    fn a_clash_is_reported_under_each_claimant() {
        let peers = [
            peer(1, Some("pi"), LivenessState::Up),
            peer(2, Some("pi"), LivenessState::Up),
        ];
        let table = peers_table(&peers, Output::Table).join("\n");
        assert_eq!(
            table.matches("name `pi` is claimed by 2 nodes").count(),
            2,
            "{table}"
        );
        let json = peers_json(&peers);
        assert_eq!(json[0]["name_clash"].as_array().unwrap().len(), 2);
        let nodes = NodeLabels::new(&peers);
        assert_eq!(nodes.name(&peers[0].peer_id), None);
    }
}
