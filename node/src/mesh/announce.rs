//! What a host tells the entries of its service vessels, outside the
//! frames themselves (split from `ingress`, which holds the routes and the
//! entry and host roles): the routes it gossips, and the announcement of a
//! vessel's arrival to the entries of its clients.

use std::time::Duration;

use libp2p::PeerId;
use protocol::ingress::{EgressFrame, IngressRequest, ServiceRoute};
use protocol::limits::MAX_STATUS_VESSELS;
use protocol::vessel::VesselId;
use tracing::debug;

use super::link::Link;
use crate::migration::record::Record;
use crate::vessel::Host;

/// The routes of the service vessels that run here, to gossip.
pub fn local_routes(host: &Host) -> Vec<ServiceRoute> {
    host.vessels
        .iter()
        .filter(|(id, l)| {
            !l.deployment.body.ports.is_empty()
                && matches!(l.record, Record::Owned { .. })
                && l.runner.is_some()
                && l.ended().is_none()
                && host.hubs.contains_key(id)
        })
        .map(|(id, l)| ServiceRoute {
            vessel: *id,
            epoch: l.record.epoch(),
            ports: l.deployment.body.ports.clone(),
            sync: l.deployment.body.sync_interval_ms().is_some(),
            leased: l.gate.is_leased(),
        })
        .take(MAX_STATUS_VESSELS)
        .collect()
}

/// Most entries a new host tells of its arrival at once (more are told by
/// the old host's `NotHere` and by gossip, as before).
const MAX_ANNOUNCED_ENTRIES: usize = 64;

/// How long a new host waits for an entry to take its announcement.
const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(2);

/// A vessel that arrived here under `epoch` tells the entry nodes of its
/// clients (from its image's hub) that it runs here now: an egress frame
/// with no segments, which an entry takes as the vessel's route (as from
/// any frame of a newer epoch). Without it an entry learns of the move
/// from the old host's `NotHere`, a round trip between entry and old host
/// after the commit. Best effort: a lost one leaves that path.
pub fn announce_arrival(
    link: &Link,
    me: PeerId,
    vessel: VesselId,
    epoch: u64,
    entries: Vec<PeerId>,
) {
    let mut entries = entries;
    entries.sort();
    entries.dedup();
    for entry in entries
        .into_iter()
        .filter(|e| *e != me)
        .take(MAX_ANNOUNCED_ENTRIES)
    {
        let link = link.clone();
        let frame = EgressFrame {
            vessel,
            epoch,
            segments: Vec::new(),
        };
        tokio::spawn(async move {
            let told = link.ingress_once(entry, IngressRequest::Egress(frame));
            match tokio::time::timeout(ANNOUNCE_TIMEOUT, told).await {
                Ok(Ok(_)) => debug!(%vessel, %entry, epoch, "entry told of the arrival"),
                Ok(Err(e)) => debug!(%vessel, %entry, "entry not told of the arrival: {e}"),
                Err(_) => debug!(%vessel, %entry, "entry not told of the arrival in time"),
            }
        });
    }
}
