//! Control commands and a host that failure detection suspects
//! (`mesh::liveness`): nothing waits on it.
//!
//! - A command forwarded to a suspected node is refused at once, with
//!   `unreachable` and why ([`host_gone`]); one already waiting for its
//!   answer gives up the moment the node becomes suspected
//!   ([`forward_while_alive`]). A live node that is only slow is waited for
//!   (the CLI's own `--timeout` bounds that), a silent one never longer
//!   than detection takes: [`super::liveness::UNREACHABLE_AFTER`].
//! - `ps` lists the vessels of a suspected host on that host's row, from
//!   the last status it gossiped ([`gossiped_rows`]), with its state
//!   (`unreachable`, `down`) instead of a stale `running`.
//!
//! It only reports: who owns a vessel changes only through the lease
//! (issue 15). What a command on a vessel of a suspected host does instead
//! (read its log from a replica, wait for its failover, or say why it
//! cannot fail over) is `mesh::absent`; [`NO_REPLICA`]'s refusal is left
//! for a vessel its host's last status did not name.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use protocol::control::{StatusVessel, VesselInfo};
use protocol::forward::{ForwardRequest, ForwardResponse};
use protocol::refusal::{Refusal, RefusalCode};

use super::link::Link;
use super::liveness::{Suspects, Suspicion};

/// Why a vessel command on a suspected host is refused today.
pub const NO_REPLICA: &str = "the vessel has no replica to act through";

/// What a member last gossiped of the vessels it runs, kept for `ps`.
#[derive(Debug, Clone)]
pub struct Gossiped {
    pub peer: PeerId,
    pub vessels: Vec<StatusVessel>,
    /// When its status arrived.
    pub at: Instant,
}

/// What cannot be done while `request`'s node is silent: the end of the
/// refusal.
pub fn consequence(request: &ForwardRequest) -> &'static str {
    match request {
        ForwardRequest::Drain { .. } | ForwardRequest::DrainStatus | ForwardRequest::Undrain => {
            "a drain is done by the drained node itself, which does not answer"
        }
        ForwardRequest::MigrationStatus { .. } => {
            "only the migration's source can tell how it went"
        }
        ForwardRequest::Deploy { .. } => "deploy on another node",
        ForwardRequest::Vessels => "its vessels are listed from its last status",
        _ => NO_REPLICA,
    }
}

/// The refusal of a command that needs `node` while it is suspected:
/// `host 12D3… unreachable since 07:41:02 UTC (9.4 s); the vessel has no
/// replica to act through`.
pub fn host_gone(node: PeerId, suspicion: &Suspicion, consequence: &str) -> Refusal {
    Refusal::new(
        RefusalCode::Unreachable,
        format!("host {node} {}; {consequence}", suspicion.describe()),
    )
}

/// Forwards `request` to `node` and waits for the answer while the node is
/// alive: refused at once if it is suspected, given up once it becomes so;
/// the refusal ends with `why` (see [`consequence`]).
pub async fn forward_while_alive(
    link: &Link,
    suspects: &Suspects,
    node: PeerId,
    request: ForwardRequest,
    why: &str,
) -> Result<ForwardResponse, Refusal> {
    if let Some(s) = suspects.of(&node) {
        return Err(host_gone(node, &s, why));
    }
    tokio::select! {
        answer = link.forward(node, request) => answer.map_err(|e| {
            // A failed connection is often the first sign of a death.
            match suspects.of(&node) {
                Some(s) if e.is_transport() => host_gone(node, &s, why),
                _ => e.into(),
            }
        }),
        s = suspects.until_suspected(node) => Err(host_gone(node, &s, why)),
    }
}

/// Asks `peer` for its vessels, at most `limit` and only while it is not
/// suspected; None when it did not answer.
pub async fn ask_vessels(
    link: &Link,
    suspects: &Suspects,
    peer: PeerId,
    limit: Duration,
) -> Option<Vec<VesselInfo>> {
    let request = ForwardRequest::Vessels;
    let why = consequence(&request);
    let ask = forward_while_alive(link, suspects, peer, request, why);
    match tokio::time::timeout(limit, ask).await {
        Ok(Ok(ForwardResponse::Vessels(v))) => Some(v),
        _ => None,
    }
}

/// `ps` rows of the vessels that suspected hosts (other than those in
/// `answered`) last said they run: on the host's row, with the host's
/// state as theirs (`unreachable`, `down`), and in WHY who takes it over
/// or why no one can by itself (`mesh::outlook`), as `me` sees the mesh.
pub fn gossiped_rows(
    gossiped: &[Gossiped],
    suspects: &Suspects,
    answered: &HashSet<PeerId>,
    me: PeerId,
) -> Vec<VesselInfo> {
    let mut rows = Vec::new();
    for g in gossiped.iter().filter(|g| !answered.contains(&g.peer)) {
        let Some(s) = suspects.of(&g.peer) else {
            continue;
        };
        rows.extend(
            g.vessels
                .iter()
                .map(|v| gossiped_row(g, v, &s, suspects, me)),
        );
    }
    rows
}

/// One vessel of a suspected host's last status, as a `ps` row.
fn gossiped_row(
    g: &Gossiped,
    v: &StatusVessel,
    s: &Suspicion,
    suspects: &Suspects,
    me: PeerId,
) -> VesselInfo {
    let outlook = super::outlook::judge(v, g.peer, suspects, me);
    let why = format!(
        "{} (its last status, {:.1} s ago, listed it running)",
        super::outlook::describe(&outlook, &v.name, s),
        g.at.elapsed().as_secs_f64()
    );
    VesselInfo {
        id: v.id,
        name: v.name.clone(),
        node: g.peer.to_string(),
        state: s.state().name().to_string(),
        epoch: v.epoch,
        run_ms: 0,
        migrations: 0,
        exit_code: None,
        reason: String::new(),
        why,
        pinned: false,
        checkpoint_age_ms: None,
        checkpoint_problem: None,
        lease: None,
        replicas_wanted: None,
        // WHY names the replica that matters; what each holds is known to
        // the host alone, which does not answer.
        replicas: Vec::new(),
        replica_age_ms: None,
        replication_problem: None,
        replica_bytes_sent: 0,
        replica_chunks_sent: 0,
        durability: None,
        ports: Vec::new(),
        max_memory_bytes: None,
        restart: None,
        restarts: 0,
    }
}

/// Whether a `ps` row comes from a silent host's gossip: [`gossiped_rows`]
/// gives such rows the host's state, which a node never gives its own.
pub fn from_gossip(row: &VesselInfo) -> bool {
    row.state == "unreachable" || row.state == "down"
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::mesh::liveness::State;
    use protocol::vessel::VesselId;

    /// A running vessel as a status names it (also for `commands`' tests).
    pub(crate) fn vessel(n: u8, epoch: u64) -> StatusVessel {
        StatusVessel {
            id: VesselId([n; 8]),
            name: format!("v{n}"),
            epoch,
            voters: Vec::new(),
            replicas: Vec::new(),
        }
    }

    #[test]
    fn rows_come_only_from_suspected_hosts_that_did_not_answer() {
        let suspects = Suspects::default();
        let (dead, slow, answered_one) = (PeerId::random(), PeerId::random(), PeerId::random());
        let since = Instant::now() - Duration::from_millis(2100);
        suspects.publish(
            [
                (dead, State::Unreachable { since }),
                (slow, State::Up),
                (answered_one, State::Down { since }),
            ]
            .into_iter(),
        );
        let at = Instant::now();
        let gossiped = vec![
            Gossiped {
                peer: dead,
                vessels: vec![vessel(1, 4)],
                at,
            },
            Gossiped {
                peer: slow,
                vessels: vec![vessel(2, 1)],
                at,
            },
            Gossiped {
                peer: answered_one,
                vessels: vec![vessel(3, 1)],
                at,
            },
        ];
        let answered = HashSet::from([answered_one]);
        let rows = gossiped_rows(&gossiped, &suspects, &answered, PeerId::random());
        assert_eq!(rows.len(), 1, "{rows:?}");
        let r = &rows[0];
        assert_eq!(
            (r.id, r.name.as_str(), r.epoch),
            (VesselId([1; 8]), "v1", 4)
        );
        assert_eq!(
            (r.node.clone(), r.state.as_str()),
            (dead.to_string(), "unreachable")
        );
        assert!(
            r.why
                .starts_with("host unreachable 2.1 s; it cannot fail over: no replica"),
            "{}",
            r.why
        );
        assert!(from_gossip(r));
    }

    #[tokio::test]
    async fn a_forward_to_a_suspected_node_is_refused_at_once_and_says_why() {
        let (tx, _rx) = tokio::sync::mpsc::channel(4);
        let link = Link::new(tx);
        let suspects = Suspects::default();
        let node = PeerId::random();
        let since = Instant::now() - Duration::from_secs(9);
        suspects.publish([(node, State::Unreachable { since })].into_iter());
        let stop = ForwardRequest::Stop {
            vessel: VesselId([1; 8]),
        };
        let why = consequence(&stop);
        let err = forward_while_alive(&link, &suspects, node, stop, why)
            .await
            .unwrap_err();
        assert_eq!(err.code, RefusalCode::Unreachable);
        assert!(
            err.detail
                .starts_with(&format!("host {node} unreachable since ")),
            "{err}"
        );
        assert!(err.detail.ends_with(NO_REPLICA), "{err}");
    }

    #[tokio::test]
    async fn a_forward_waiting_on_a_node_gives_up_when_it_becomes_suspected() {
        // The event loop never answers: the node took the request and died.
        let (tx, mut rx) = tokio::sync::mpsc::channel(4);
        let keep = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Some(cmd) = rx.recv().await {
                held.push(cmd);
            }
        });
        let link = Link::new(tx);
        let suspects = Suspects::default();
        let node = PeerId::random();
        let waiting = tokio::spawn({
            let (link, suspects) = (link.clone(), suspects.clone());
            async move {
                let drain = ForwardRequest::Drain {
                    include_pinned: false,
                };
                let why = consequence(&drain);
                forward_while_alive(&link, &suspects, node, drain, why).await
            }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "a live node is waited for");
        let since = Instant::now() - Duration::from_secs(3);
        suspects.publish([(node, State::Unreachable { since })].into_iter());
        let err = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("given up once suspected")
            .unwrap()
            .unwrap_err();
        assert_eq!(err.code, RefusalCode::Unreachable);
        assert!(
            err.detail.contains("a drain is done by the drained node"),
            "{err}"
        );
        keep.abort();
    }
}
