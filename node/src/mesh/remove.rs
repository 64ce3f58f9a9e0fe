//! `meshnode rm` (issue 16): removing an ended vessel for good, and the
//! tombstone that keeps it removed.
//!
//! The CLI signs a [`Tombstone`] with the user key, at an epoch above the
//! one it saw the vessel end under. The node that holds the vessel's newest
//! record checks that it ended there under a lower epoch ([`remove_here`])
//! and deletes it; the node the CLI talks to then tells every member
//! ([`spread`]), and each forgets its copies below the tombstone's epoch
//! ([`bury_here`]): a `Left` record and its log, a replica, a stale `Owned`
//! record. Afterwards the tombstone stands for a record at its epoch, so
//! stale offers, commits and replica copies are refused, and a node seen
//! naming a stale copy later (in its status or its `ps` rows: a restarted
//! old host) is told again ([`push_if_stale`]). docs/protocol.md, "Removal
//! and tombstones".

use std::time::Duration;

use libp2p::PeerId;
use protocol::control::VesselInfo;
use protocol::forward::ForwardRequest;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::Tombstone;
use tracing::{debug, info};

use super::link::Link;
use super::vessels::{refuse, Migrator};
use crate::sync::lock;
use crate::vessel::{Host, Record};

/// How long `rm` waits for each member to confirm that it forgot its
/// copies: a member that does not answer in time is told again when it
/// is next seen naming one.
pub const TOMBSTONE_SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The tombstone's signature, and whether this node trusts its user key.
pub fn check_tombstone(
    trusted: &[protocol::membership::PublicKey],
    t: &Tombstone,
) -> Result<(), Refusal> {
    t.verify()
        .map_err(|e| refuse(e.code(), format!("tombstone: {e}")))?;
    if !trusted.contains(&t.user_key) {
        return Err(refuse(
            RefusalCode::Untrusted,
            format!(
                "tombstone signed by user key {}, which this node does not trust",
                t.user_key
            ),
        ));
    }
    Ok(())
}

/// On the node that holds the vessel's newest record: refused unless the
/// vessel ended here under an epoch below the tombstone's; then its
/// record, log, checkpoints and volumes are deleted and the tombstone kept.
/// A tombstone this node keeps already is answered as done.
pub fn remove_here(mesh: &Migrator, t: &Tombstone) -> Result<(), Refusal> {
    check_tombstone(&mesh.trusted, t)?;
    let id = t.vessel();
    let mut h = lock(&mesh.host);
    h.reap();
    if h.tombstones.epoch_of(id) >= t.epoch() {
        return Ok(());
    }
    let l = h.vessels.get(&id).ok_or_else(|| {
        refuse(
            RefusalCode::UnknownVessel,
            format!("vessel {id} is not on this node"),
        )
    })?;
    let still_running = || {
        refuse(
            RefusalCode::StillRunning,
            format!(
                "vessel {id} is still running: `meshnode stop {id}` first, then `meshnode rm {id}`"
            ),
        )
    };
    if l.migrating {
        return Err(still_running());
    }
    match &l.record {
        Record::Owned { .. } if l.ended().is_none() => return Err(still_running()),
        Record::Left { .. } | Record::Prepared { .. } => {
            return Err(refuse(
                RefusalCode::NotOwner,
                format!("vessel {id} moved on from this node; ask again (`meshnode ps -a`)"),
            ))
        }
        _ => {}
    }
    let epoch = l.record.epoch();
    if epoch >= t.epoch() {
        return Err(refuse(
            RefusalCode::StaleEpoch,
            format!(
                "vessel {id} is at epoch {epoch} here, not below the removal's {}: it changed since it was listed; run `meshnode rm` again",
                t.epoch()
            ),
        )
        .with_known_epoch(epoch));
    }
    h.bury(t);
    drop(h);
    // An ended vessel released its replicas; a copy of it kept here all
    // the same (a release lost) goes too.
    super::replica_serve::drop_held(mesh, id, t.epoch() - 1);
    info!(vessel = %id, epoch = t.epoch(), "removed by a user");
    Ok(())
}

/// On any member: forgets every copy of the vessel below the tombstone's
/// epoch, and keeps the tombstone.
pub fn bury_here(mesh: &Migrator, t: &Tombstone) -> Result<(), Refusal> {
    check_tombstone(&mesh.trusted, t)?;
    super::replica_serve::drop_held(mesh, t.vessel(), t.epoch() - 1);
    if lock(&mesh.host).bury(t) {
        info!(vessel = %t.vessel(), epoch = t.epoch(), "a removed vessel's stale copy deleted");
    }
    Ok(())
}

/// Tells every member but `skip` (the node that removed it) and this one
/// of the tombstone, and buries this node's copies. Returns the members
/// that did not confirm (told again when next seen naming a copy).
pub async fn spread(mesh: &Migrator, peers: &[PeerId], skip: PeerId, t: &Tombstone) -> Vec<PeerId> {
    if skip != mesh.me {
        if let Err(r) = bury_here(mesh, t) {
            debug!("cannot bury here: {r}");
        }
    }
    let sends = peers
        .iter()
        .filter(|p| **p != skip && **p != mesh.me)
        .map(|p| {
            let (link, p) = (mesh.link.clone(), *p);
            let request = ForwardRequest::Tombstone {
                tombstone: t.clone(),
            };
            async move {
                let sent =
                    tokio::time::timeout(TOMBSTONE_SEND_TIMEOUT, link.forward(p, request)).await;
                (p, matches!(sent, Ok(Ok(_))))
            }
        });
    futures::future::join_all(sends)
        .await
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(p, _)| p)
        .collect()
}

/// Tells `node`, seen naming a copy of `vessel` at `epoch`, of the
/// tombstone that buries it, if this node keeps one (rate-limited by
/// `TOMBSTONE_PUSH_INTERVAL`). Best effort, in the background.
pub fn push_if_stale(
    host: &std::sync::Mutex<Host>,
    link: &Link,
    node: PeerId,
    vessel: protocol::vessel::VesselId,
    epoch: u64,
) {
    let Some(tombstone) = lock(host)
        .tombstones
        .to_push(&node.to_string(), vessel, epoch)
    else {
        return;
    };
    let link = link.clone();
    info!(vessel = %vessel, %node, "it names a removed vessel: telling it of the tombstone");
    tokio::spawn(async move {
        let request = ForwardRequest::Tombstone { tombstone };
        let _ = tokio::time::timeout(TOMBSTONE_SEND_TIMEOUT, link.forward(node, request)).await;
    });
}

/// `ps` rows without the copies of removed vessels: each node that listed
/// one is told of the tombstone.
pub fn without_buried(
    host: &std::sync::Mutex<Host>,
    link: &Link,
    rows: Vec<VesselInfo>,
) -> Vec<VesselInfo> {
    rows.into_iter()
        .filter(|r| {
            let buried = lock(host).tombstones.buries(r.id, r.epoch);
            if buried {
                if let Ok(node) = r.node.parse::<PeerId>() {
                    push_if_stale(host, link, node, r.id, r.epoch);
                }
            }
            !buried
        })
        .collect()
}
