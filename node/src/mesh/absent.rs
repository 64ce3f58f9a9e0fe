//! Commands on a vessel whose host failure detection suspects (issue 15,
//! item 4): they act through its replicas, or say what happens to it.
//!
//! - `logs` reads the log in the newest checkpoint a replica holds (the log
//!   travels in the vessel image, `protocol::vessel::LogImage`) and says
//!   it is as of that checkpoint ([`replica_log_page`]).
//! - `stop`, `pin`, `migrate`, `checkpoint` are refused at once with what
//!   happens to the vessel ([`refusal`]): "failing over to X" (the CLI then
//!   waits, bounded, for the new host and acts there), or why it cannot
//!   fail over and the `recover --force` that decides.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use libp2p::PeerId;
use protocol::control::{LogChunk, StatusVessel};
use protocol::limits::MAX_LOG_BYTES;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::{VesselId, VesselImage};

use super::liveness::{Suspects, Suspicion};
use super::outlook::{judge, Outlook};
use super::replica_book::Replication;
use super::silent::{host_gone, Gossiped};
use super::vessels::refuse;
use crate::sync::lock;
use crate::vessel::log::VesselLog;
use crate::vessel::Host;

/// The words of a refusal that tell the CLI a failover is under way (it
/// then waits for the new host): keep in step with `outlook::describe`.
pub const FAILING_OVER: &str = "failing over to ";

/// What suspected `host` last said of `vessel`, if it named it.
pub fn gossiped_of(gossiped: &[Gossiped], host: PeerId, vessel: VesselId) -> Option<StatusVessel> {
    gossiped
        .iter()
        .find(|g| g.peer == host)?
        .vessels
        .iter()
        .find(|v| v.id == vessel)
        .cloned()
}

/// Why a command on `vessel` cannot act on its suspected `host` now, with
/// what happens to the vessel.
pub fn refusal(
    gossiped: &[Gossiped],
    suspects: &Suspects,
    me: PeerId,
    host: PeerId,
    s: &Suspicion,
    vessel: VesselId,
) -> Refusal {
    let Some(v) = gossiped_of(gossiped, host, vessel) else {
        return host_gone(host, s, super::silent::NO_REPLICA);
    };
    let outlook = judge(&v, host, suspects, me);
    let text = super::outlook::describe(&outlook, &v.name, s);
    Refusal::new(RefusalCode::Unreachable, format!("{host}: {text}"))
}

/// The node to read the log of `vessel` from while its host is suspected:
/// this one if it holds a replica, else the first replica in reach.
pub fn replica_to_read(
    replication: &Replication,
    gossiped: &[Gossiped],
    suspects: &Suspects,
    me: PeerId,
    host: PeerId,
    vessel: VesselId,
) -> Option<PeerId> {
    if replication.book().held.contains_key(&vessel) {
        return Some(me);
    }
    let v = gossiped_of(gossiped, host, vessel)?;
    match judge(&v, host, suspects, me) {
        Outlook::NoReplica => None,
        _ => v
            .replicas
            .iter()
            .filter_map(|p| PeerId::from_bytes(&p.0).ok())
            .find(|p| *p != host && suspects.of(p).is_none()),
    }
}

/// A page of the log in the newest checkpoint this node holds of `vessel`
/// as its replica, marked with what it is as of.
pub fn replica_log_page(
    host: &Mutex<Host>,
    replication: &Replication,
    me: PeerId,
    vessel: VesselId,
    from: u64,
) -> Result<LogChunk, Refusal> {
    let held = replication
        .book()
        .held
        .get(&vessel)
        .cloned()
        .ok_or_else(|| {
            refuse(
                RefusalCode::UnknownVessel,
                format!("{me} holds no replica of vessel {vessel}"),
            )
        })?;
    let unreadable = |e: String| refuse(RefusalCode::Internal, format!("its replica's log: {e}"));
    let (image, log_bytes) = {
        let h = lock(host);
        let doc = h
            .store
            .get_image_doc(&held.image)
            .map_err(|e| unreadable(e.to_string()))?;
        let image: VesselImage =
            protocol::cbor::decode(&doc).map_err(|e| unreadable(e.to_string()))?;
        let bytes = crate::store::get_image(&h.store, &image.log.content, MAX_LOG_BYTES)
            .map_err(|e| unreadable(e.to_string()))?;
        (image, bytes)
    };
    let log = VesselLog {
        start: image.log.start_offset,
        bytes: log_bytes,
        ..Default::default()
    };
    let page = log.page(from);
    let mut chunk = log.chunk(page, None, me.to_string());
    let now_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let age = now_unix_ms
        .checked_sub(held.received_unix_ms)
        .map_or("at an unknown time".to_string(), |ms| {
            format!("{:.1} s ago", ms as f64 / 1000.0)
        });
    chunk.as_of = Some(format!(
        "the log as of its checkpoint of epoch {} that replica {me} received {age}; \
         its host does not answer, and what the vessel printed after that checkpoint is not in it",
        held.epoch
    ));
    Ok(chunk)
}
