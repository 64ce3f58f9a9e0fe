//! Service ingress: how a client's TCP connection, accepted by whichever
//! node it reached (its *entry node*), is carried over the mesh to the node
//! that runs the vessel (its *host*), and survives the vessel's moves.
//!
//! Main types:
//! - [`IngressFrame`] (entry → host): client bytes of some connections, each
//!   at its stream offset, with the client's FIN or reset.
//!   [`IngressReply`]: how far the host took each stream (its hub holds
//!   those bytes now; the entry may forget them).
//! - [`EgressFrame`] (host → entry): the vessel's bytes at their offsets,
//!   with its FIN or close. [`EgressReply`]: how far the entry wrote each to
//!   its client.
//! - [`HubImage`]: the host's side of every connection (bytes the vessel
//!   has not taken, bytes the entry has not confirmed, who the entry is),
//!   carried in the vessel's image when it moves.
//! - [`ServiceRoute`]: a vessel's service ports and where it runs, gossiped
//!   so that every node can accept its clients.
//!
//! Both directions are byte streams numbered by offset, so a resend is
//! harmless (the receiver skips what it has) and a move loses nothing: the
//! entry keeps client bytes until a host confirms them, and the host's
//! unconfirmed bytes travel in the image. Frames carry the vessel's epoch:
//! an entry refuses egress from an epoch older than one it has seen, so a
//! late frame from a host the vessel left is fenced off.

use serde::{Deserialize, Serialize};

use crate::ids::{serde_bytes_vec, PeerIdBytes, VesselId};
use crate::limits::{
    MAX_HUB_BUFFER_BYTES, MAX_INGRESS_SEGMENTS, MAX_SERVICE_NAME_BYTES, MAX_SERVICE_PORTS,
    MAX_VESSEL_CONNECTIONS,
};

/// How a client's or a vessel's stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StreamEnd {
    /// An orderly end after the last byte (FIN).
    Fin,
    /// A reset: nothing more either way.
    Reset,
}

/// Client bytes of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InSegment {
    /// The entry's id for the connection (random, so that ids from
    /// different entries do not collide).
    pub conn: u64,
    /// The service port it arrived on (e.g. "8080"): a host that does not
    /// know the connection yet opens it there, if `at` is 0.
    pub service: String,
    /// Stream offset of `data[0]`.
    pub at: u64,
    #[serde(with = "serde_bytes_vec")]
    pub data: Vec<u8>,
    /// The client's stream ended right after `data`.
    pub end: Option<StreamEnd>,
}

/// Entry → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngressFrame {
    pub vessel: VesselId,
    pub segments: Vec<InSegment>,
}

/// How the host took one connection's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InStatus {
    /// The host holds the stream up to `taken` (and its end, if sent).
    Taken { taken: u64 },
    /// The vessel is being captured: nothing was taken, send again soon.
    Moving,
    /// The host does not know the connection (the vessel restarted from an
    /// older image, or it was closed): reset the client.
    Reset,
}

/// Host → entry, the answer to an [`IngressFrame`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngressReply {
    /// Per segment, in order.
    Took {
        epoch: u64,
        conns: Vec<(u64, InStatus)>,
    },
    /// The vessel does not run here; `moved_to` is where it went, when the
    /// host knows (it was the source of the move).
    NotHere {
        moved_to: Option<PeerIdBytes>,
        epoch: u64,
    },
}

/// An ingress request between two members, in
/// `peer::PeerRequest::Ingress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngressRequest {
    /// Client bytes for a vessel that runs at the receiver, from the entry
    /// node that holds the clients.
    Ingress(IngressFrame),
    /// A vessel's bytes for clients that the receiver holds, from its host.
    Egress(EgressFrame),
}

/// The answer to an [`IngressRequest`] of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum IngressResponse {
    Ingress(IngressReply),
    Egress(EgressReply),
}

/// Vessel bytes of one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutSegment {
    pub conn: u64,
    pub at: u64,
    #[serde(with = "serde_bytes_vec")]
    pub data: Vec<u8>,
    /// The vessel shut down writing after `data`: send the client a FIN.
    pub fin: bool,
    /// The vessel closed the connection after `data`.
    pub closed: bool,
}

/// Host → entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressFrame {
    pub vessel: VesselId,
    /// The epoch under which the host runs the vessel.
    pub epoch: u64,
    pub segments: Vec<OutSegment>,
}

/// How the entry took one connection's vessel bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutStatus {
    /// Written to the client up to `written`; `done` once the connection is
    /// finished on the entry (closed after the vessel's close, or reset):
    /// the host may forget it.
    Written { written: u64, done: bool },
    /// The entry does not know the connection (any more): forget it.
    Unknown,
}

/// Entry → host, the answer to an [`EgressFrame`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressReply {
    pub conns: Vec<(u64, OutStatus)>,
}

/// The host's side of one connection, as it travels in an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnImage {
    pub id: u64,
    pub service: String,
    /// The entry node that holds the client.
    pub entry: PeerIdBytes,
    /// Not taken by the vessel yet (it waits in the service's queue).
    pub waiting: bool,
    /// Stream offset of `inbound[0]`.
    pub in_base: u64,
    /// Client bytes the host confirmed but the vessel has not taken.
    #[serde(with = "serde_bytes_vec")]
    pub inbound: Vec<u8>,
    pub in_end: Option<StreamEnd>,
    pub in_discard: bool,
    /// Stream offset of `outbound[0]`.
    pub out_base: u64,
    /// Vessel bytes the entry has not confirmed.
    #[serde(with = "serde_bytes_vec")]
    pub outbound: Vec<u8>,
    pub out_fin: bool,
    pub vessel_closed: bool,
    pub reset: bool,
}

/// Every connection of a vessel, as its host held them at the capture.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HubImage {
    /// Service ports and whether the vessel closed each.
    pub services: Vec<(String, bool)>,
    pub conns: Vec<ConnImage>,
}

/// A vessel's service ports and where it runs, as its host gossips them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRoute {
    pub vessel: VesselId,
    pub epoch: u64,
    pub ports: Vec<u16>,
    /// A `--durability sync` vessel: its entries hold a client through its
    /// host's death until a new host takes it over (bounded), rather than
    /// reset it once the host is down. Absent from older nodes: async.
    #[serde(default)]
    pub sync: bool,
    /// A leased (replicated) vessel: an entry routes clients to a new
    /// epoch of it only once it checked that epoch's certificate
    /// (`LeaseRequest::Proof`). Absent from older nodes: not leased.
    #[serde(default)]
    pub leased: bool,
}

/// Why an ingress message is refused. Each names the limit it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    #[error("{what}: {found}, over the limit of {limit}")]
    TooMany {
        what: &'static str,
        found: u64,
        limit: u64,
    },
    #[error("connection {conn}: offset {at} + {len} bytes overflows")]
    Overflow { conn: u64, at: u64, len: usize },
    #[error("connection {0} appears twice")]
    Duplicate(u64),
}

impl IngressError {
    /// The refusal code a node answers this error with.
    pub fn code(&self) -> crate::refusal::RefusalCode {
        match self {
            IngressError::TooMany { .. } => crate::refusal::RefusalCode::Limit,
            IngressError::Overflow { .. } | IngressError::Duplicate(_) => {
                crate::refusal::RefusalCode::Invalid
            }
        }
    }
}

/// Longest entry-node id a hub image names: a libp2p PeerId of an ed25519
/// key is 38 bytes; this leaves room for other key types and nothing more.
pub const MAX_PEER_ID_BYTES: usize = 128;

fn too_many(what: &'static str, found: usize, limit: usize) -> Result<(), IngressError> {
    if found > limit {
        return Err(IngressError::TooMany {
            what,
            found: found as u64,
            limit: limit as u64,
        });
    }
    Ok(())
}

fn check_span(conn: u64, at: u64, len: usize) -> Result<(), IngressError> {
    at.checked_add(len as u64)
        .map(|_| ())
        .ok_or(IngressError::Overflow { conn, at, len })
}

impl IngressFrame {
    pub fn check(&self) -> Result<(), IngressError> {
        too_many(
            "segments in a frame",
            self.segments.len(),
            MAX_INGRESS_SEGMENTS,
        )?;
        for s in &self.segments {
            too_many("bytes in a segment", s.data.len(), MAX_HUB_BUFFER_BYTES)?;
            too_many(
                "bytes in a service name",
                s.service.len(),
                MAX_SERVICE_NAME_BYTES,
            )?;
            check_span(s.conn, s.at, s.data.len())?;
        }
        Ok(())
    }
}

impl EgressFrame {
    pub fn check(&self) -> Result<(), IngressError> {
        too_many(
            "segments in a frame",
            self.segments.len(),
            MAX_INGRESS_SEGMENTS,
        )?;
        for s in &self.segments {
            too_many("bytes in a segment", s.data.len(), MAX_HUB_BUFFER_BYTES)?;
            check_span(s.conn, s.at, s.data.len())?;
        }
        Ok(())
    }
}

impl HubImage {
    pub fn check(&self) -> Result<(), IngressError> {
        too_many("service ports", self.services.len(), MAX_SERVICE_PORTS)?;
        // Waiting and taken connections together: the hub's queues and the
        // vessel's descriptors are bounded by the same number.
        too_many(
            "connections",
            self.conns.len(),
            2 * MAX_VESSEL_CONNECTIONS * MAX_SERVICE_PORTS,
        )?;
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &self.services {
            too_many(
                "bytes in a service name",
                name.len(),
                MAX_SERVICE_NAME_BYTES,
            )?;
        }
        for c in &self.conns {
            if !seen.insert(c.id) {
                return Err(IngressError::Duplicate(c.id));
            }
            too_many(
                "bytes in a service name",
                c.service.len(),
                MAX_SERVICE_NAME_BYTES,
            )?;
            too_many(
                "unconfirmed inbound bytes",
                c.inbound.len(),
                MAX_HUB_BUFFER_BYTES,
            )?;
            too_many(
                "unconfirmed outbound bytes",
                c.outbound.len(),
                MAX_HUB_BUFFER_BYTES,
            )?;
            too_many("bytes in an entry's id", c.entry.0.len(), MAX_PEER_ID_BYTES)?;
            check_span(c.id, c.in_base, c.inbound.len())?;
            check_span(c.id, c.out_base, c.outbound.len())?;
        }
        Ok(())
    }
}

impl ServiceRoute {
    pub fn check(&self) -> Result<(), IngressError> {
        too_many("service ports", self.ports.len(), MAX_SERVICE_PORTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(conn: u64, at: u64, n: usize) -> InSegment {
        InSegment {
            conn,
            service: "8080".into(),
            at,
            data: vec![7; n],
            end: None,
        }
    }

    #[test]
    fn frames_round_trip_and_limits_name_themselves() {
        let f = IngressFrame {
            vessel: VesselId([1; 8]),
            segments: vec![seg(1, 0, 3), seg(2, 10, 0)],
        };
        f.check().unwrap();
        let back: IngressFrame = crate::cbor::decode(&crate::cbor::encode(&f)).unwrap();
        assert_eq!(back, f);
        let big = IngressFrame {
            vessel: VesselId([1; 8]),
            segments: vec![seg(1, 0, MAX_HUB_BUFFER_BYTES + 1)],
        };
        assert!(matches!(
            big.check(),
            Err(IngressError::TooMany { limit, .. }) if limit == MAX_HUB_BUFFER_BYTES as u64
        ));
        let wrap = IngressFrame {
            vessel: VesselId([1; 8]),
            segments: vec![seg(1, u64::MAX, 1)],
        };
        assert!(matches!(wrap.check(), Err(IngressError::Overflow { .. })));
    }

    #[test]
    fn a_hub_image_with_a_connection_twice_is_refused() {
        let c = ConnImage {
            id: 9,
            service: "8080".into(),
            entry: PeerIdBytes(vec![1]),
            waiting: false,
            in_base: 0,
            inbound: vec![],
            in_end: None,
            in_discard: false,
            out_base: 5,
            outbound: vec![1, 2],
            out_fin: false,
            vessel_closed: false,
            reset: false,
        };
        let img = HubImage {
            services: vec![("8080".into(), false)],
            conns: vec![c.clone(), c],
        };
        assert_eq!(img.check(), Err(IngressError::Duplicate(9)));
    }
}
