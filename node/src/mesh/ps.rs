//! What a control command runs with ([`Control`]), the mesh-wide vessel
//! listing (`ps`) and the lookup of a vessel by reference (`resolve`) that
//! most vessel commands start from. Split out of `mesh::commands` (which
//! re-exports what others name), by stage: this one asks the mesh what runs
//! where; the commands then act on it.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::PeerId;
use protocol::control::VesselInfo;
use protocol::membership::PublicKey;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::VesselId;

use super::link::Link;
use super::liveness::Suspects;
use super::place::Drains;
use super::silent::{ask_vessels, from_gossip, gossiped_rows, Gossiped};
use super::state::NodeState;
use super::vessels::{refuse, Migrator};
use crate::sync::lock;
use crate::vessel::Host;

/// How long a `ps` waits for each peer that failure detection does not
/// suspect (one it suspects is not asked, and one that becomes suspected
/// is given up at once).
pub const PS_PEER_TIMEOUT: Duration = Duration::from_secs(5);

/// What a control command needs: the vessels here, the link to the member
/// that acts, the trust list, and the migration and placement sides, which
/// it calls through their public functions only.
#[derive(Clone)]
pub struct Control {
    pub host: Arc<Mutex<Host>>,
    pub link: Link,
    pub me: PeerId,
    /// The user keys this node trusted when the command arrived.
    pub trusted: Vec<PublicKey>,
    pub migrator: Migrator,
    pub drains: Drains,
    /// Whether a command for a vessel on another node is answered with
    /// `SignFor` (the CLI asked this node), or refused (this node runs a
    /// user's command relayed to it, which must act here).
    pub relay: bool,
    /// The peers failure detection suspects: nothing waits on them.
    pub suspects: Suspects,
    /// What each member last gossiped of its vessels, for `ps` rows of a
    /// host that does not answer.
    pub gossiped: Arc<Vec<Gossiped>>,
}

impl Control {
    pub fn of(state: &NodeState) -> Control {
        let migrator = state.migrator();
        Control {
            host: state.host.clone(),
            link: state.link.clone(),
            me: state.identity.peer_id,
            trusted: state.trusted.clone(),
            drains: state.placer.drains(migrator.clone()),
            migrator,
            relay: true,
            suspects: state.suspects.clone(),
            gossiped: Arc::new(gossiped(state)),
        }
    }
}

/// What each member last gossiped of its vessels.
fn gossiped(state: &NodeState) -> Vec<Gossiped> {
    state
        .peers
        .iter()
        .filter(|(_, e)| matches!(e.membership, super::peers::Membership::Member(_)))
        .filter_map(|(p, e)| {
            let (status, at) = e.status.as_ref()?;
            Some(Gossiped {
                peer: *p,
                vessels: status.named.clone(),
                at: *at,
            })
        })
        .collect()
}
/// This node's `ps` rows, each with its lease in words.
pub(super) fn rows_here(control: &Control) -> Vec<VesselInfo> {
    let mut rows = {
        let mut h = lock(&control.host);
        h.reap();
        h.list()
    };
    super::replicate::annotate(&control.migrator.replication, &mut rows);
    let leases = &control.migrator.leases;
    for r in &mut rows {
        r.lease = leases.status(r.id).map(|s| leases.describe(&s));
    }
    rows
}

/// Every vessel in the mesh: this node's and each member peer's, one row
/// per vessel (the highest epoch wins; a node it left says `left`). A
/// suspected peer is not asked: its vessels are listed from its last
/// status, on its row, with its state (`mesh::silent`).
pub async fn ps(control: &Control, peers: &[PeerId]) -> Vec<VesselInfo> {
    let mut rows = rows_here(control);
    let asks = peers.iter().map(|p| {
        let (link, suspects, p) = (control.link.clone(), control.suspects.clone(), *p);
        async move { (p, ask_vessels(&link, &suspects, p, PS_PEER_TIMEOUT).await) }
    });
    let mut answered = HashSet::new();
    for (p, r) in futures::future::join_all(asks).await {
        if let Some(v) = r {
            answered.insert(p);
            rows.extend(v);
        }
    }
    rows.extend(gossiped_rows(
        &control.gossiped,
        &control.suspects,
        &answered,
        control.me,
    ));
    super::remove::without_buried(&control.host, &control.link, merge_rows(rows))
}

/// How much a `ps` row is worth at equal epochs: a node's own word that it
/// runs the vessel, then a silent host's last status, then a node that
/// says the vessel `left` it or is `waiting` for it, or whose copy was
/// `fenced` by that epoch (a fenced record's epoch is the one that fenced
/// it: the new owner's).
fn row_rank(r: &VesselInfo) -> u8 {
    match r.state.as_str() {
        "left" | "waiting" | "fenced" => 0,
        _ if from_gossip(r) => 1,
        _ => 2,
    }
}

/// One row per vessel: the highest epoch; at equal epochs, by
/// [`row_rank`].
pub fn merge_rows(rows: Vec<VesselInfo>) -> Vec<VesselInfo> {
    let mut best: BTreeMap<VesselId, VesselInfo> = BTreeMap::new();
    for r in rows {
        let better = match best.get(&r.id) {
            None => true,
            Some(b) => (r.epoch, row_rank(&r)) > (b.epoch, row_rank(b)),
        };
        if better {
            best.insert(r.id, r);
        }
    }
    best.into_values().collect()
}

/// Finds a vessel by reference across the mesh: its id and the node that
/// has it now.
pub(super) async fn resolve(
    control: &Control,
    peers: &[PeerId],
    reference: &str,
) -> Result<(VesselId, PeerId), Refusal> {
    let rows = ps(control, peers).await;
    let id = crate::vessel::find_in(rows.iter().map(|r| (r.id, r.name.as_str())), reference)
        .ok_or_else(|| {
            refuse(RefusalCode::UnknownVessel, format!("no vessel `{reference}` in the mesh (or the name is ambiguous; use the id from `meshnode ps`)"))
        })?;
    let row = rows.iter().find(|r| r.id == id).expect("found");
    let node: PeerId = row.node.parse().map_err(|_| {
        refuse(
            RefusalCode::Internal,
            format!("vessel {id}: bad node id {}", row.node),
        )
    })?;
    Ok((id, node))
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::mesh::liveness::State;
    use crate::mesh::silent::tests::vessel;

    #[test]
    fn a_silent_hosts_row_beats_a_left_row_but_not_a_newer_epoch() {
        let suspects = Suspects::default();
        let dead = PeerId::random();
        let since = Instant::now() - Duration::from_secs(5);
        suspects.publish([(dead, State::Down { since })].into_iter());
        let gossiped = [Gossiped {
            peer: dead,
            vessels: vec![vessel(1, 2), vessel(2, 2)],
            at: Instant::now(),
        }];
        let mut rows = gossiped_rows(&gossiped, &suspects, &HashSet::new(), PeerId::random());
        let template = rows[0].clone();
        let live = |n: u8, epoch: u64, state: &str| VesselInfo {
            id: VesselId([n; 8]),
            node: "elsewhere".into(),
            state: state.into(),
            epoch,
            ..template.clone()
        };
        // v1 left a live node under the same epoch for the dead host; v2
        // moved on from the dead host to a live node (a newer epoch).
        rows.extend([live(1, 2, "left"), live(2, 3, "running")]);
        let merged = merge_rows(rows);
        let by_id = |n: u8| merged.iter().find(|r| r.id == VesselId([n; 8])).unwrap();
        assert_eq!(
            (by_id(1).node.as_str(), by_id(1).state.as_str()),
            (dead.to_string().as_str(), "down")
        );
        assert_eq!(
            (by_id(2).node.as_str(), by_id(2).state.as_str()),
            ("elsewhere", "running")
        );
    }
}
