//! The node's state, owned by its event loop (`node.rs` runs the loop;
//! this module only holds what it owns), grouped by owner: the peer
//! table and trust, the link's pending requests, the migration side, the
//! placement side and the ingress. A task gets a handle of one owner
//! ([`NodeState::migrator`], [`NodeState::drains`]), never the whole state.

use std::sync::{Arc, Mutex};

use libp2p::{Multiaddr, PeerId};
use protocol::limits::MAX_PEERS_LISTED;
use protocol::membership::{MemberCertificate, PublicKey};

use super::behaviour::SwarmError;
use super::ingress::Ingress;
use super::ledger::{show_key, Ledger};
use super::link::{Link, PendingRequests};
use super::peers::{is_loopback, Membership, PeerEntry, PeerTable};
use super::place::{Drains, Placer};
use super::vessels::{MigrationState, Migrator};
use crate::control::server::{ControlServer, InviteBook};
use crate::daemon::datadir::{DataDir, DataDirError};
use crate::identity::{peer_public_key, NodeIdentity};
use crate::vessel::Host;

/// Why the node stopped (or could not start).
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Swarm(#[from] SwarmError),
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("`{addr}` is not a multiaddr ({reason}); e.g. /ip4/192.0.2.7/udp/7646/quic-v1")]
    BadAddr { addr: String, reason: String },
    #[error("join refused by the inviting node: {0}")]
    JoinRefused(protocol::refusal::Refusal),
    #[error("cannot join: {0}")]
    JoinFailed(String),
    #[error(transparent)]
    Ledger(#[from] super::ledger::LedgerError),
    #[error("cannot start the membership protocol: {0}")]
    Swim(#[from] super::swim::IdError),
}

/// The node's state, owned by its event loop.
pub struct NodeState {
    pub identity: NodeIdentity,
    pub data_dir: DataDir,
    pub certificate: Option<MemberCertificate>,
    pub trusted: Vec<PublicKey>,
    pub peers: PeerTable,
    pub listen_addrs: Vec<Multiaddr>,
    pub control: ControlServer,
    pub invites: InviteBook,
    /// Invite uses, revocations and endorsements seen (issue 14, item 1).
    pub ledger: Ledger,
    /// The vessels this node hosts (every owner below shares them).
    pub host: Arc<Mutex<Host>>,
    /// How tasks reach peers: through this loop.
    pub link: Link,
    /// Requests sent to peers for tasks, awaiting their answers.
    pub pending: PendingRequests,
    /// Migrations out (reports) and in, the nonce book, the policy.
    pub migration: MigrationState,
    /// The placement policy, the automatic move in flight, the drain.
    pub placer: Placer,
    /// Service routes, listeners and client connections.
    pub ingress: Arc<Ingress>,
    /// What peers may make the codecs read (members, trusted users),
    /// brought up to date after every event ([`NodeState::sync_gate`]).
    pub gate: Arc<super::gate::PeerGate>,
    /// Failure detection's thresholds, and the suspects it publishes for
    /// tasks (`mesh::liveness`).
    pub liveness: super::liveness::Thresholds,
    pub suspects: super::liveness::Suspects,
    /// Which connections to peers still answer pings (`mesh::conn_health`).
    pub conn_health: super::conn_health::ConnHealth,
    /// The SWIM-style membership protocol's driver (`mesh::swim`; beside
    /// `liveness`, which still decides leases).
    pub swim: super::swim::Swim,
    /// The status this node sent last, and when (`mesh::status_change`
    /// decides when the next one goes).
    pub status_sent: super::status_change::StatusSent,
    /// This node's name, as it gossips it (`control::resolve`).
    pub name: String,
    /// The releases this node keeps for upgrades (`upgrade::releases`).
    pub releases: Arc<crate::upgrade::releases::Releases>,
}

impl NodeState {
    pub fn sync_gate(&self) {
        let members = self
            .peers
            .iter()
            .filter(|(_, e)| matches!(e.membership, Membership::Member(_)))
            .map(|(p, _)| p);
        self.gate.sync(members, &self.trusted);
    }

    pub fn peer(&mut self, peer: PeerId) -> &mut PeerEntry {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS_LISTED {
            // Forget a peer that is neither connected nor a member.
            let victim = self
                .peers
                .iter()
                .find(|(_, e)| e.connections == 0 && !matches!(e.membership, Membership::Member(_)))
                .map(|(p, _)| *p);
            if let Some(v) = victim {
                self.peers.remove(&v);
            }
        }
        self.peers.entry(peer).or_default()
    }

    /// Checks `cert` as `peer`'s certificate against the trust list.
    pub fn judge(&self, peer: &PeerId, cert: Option<&MemberCertificate>) -> Membership {
        if self.certificate.is_none() && self.trusted.is_empty() {
            // Not enrolled yet (`--join` in progress): no basis to judge.
            return Membership::Unknown;
        }
        if let Some(reason) = self.peers.get(peer).and_then(|e| e.incompatible.clone()) {
            return Membership::Refused(reason);
        }
        let Some(key) = peer_public_key(peer) else {
            return Membership::Refused("its PeerId is not an ed25519 key".into());
        };
        if let Some(reason) = self.revoked_reason(&key) {
            return Membership::Refused(reason);
        }
        // The user's own signature outranks an invite certificate.
        if let Some(e) = self.ledger.endorsement(&key) {
            if e.verify_trusted(&key, &self.trusted).is_ok() {
                return Membership::Member(e.body.user_key);
            }
        }
        match cert {
            None => Membership::Refused("it has no member certificate (not enrolled)".into()),
            Some(c) => match c.verify_trusted(&key, &self.trusted) {
                Ok(()) => match self.ledger.refusal(&key, c) {
                    None => Membership::Member(c.body.user_key),
                    Some(reason) => Membership::Refused(reason),
                },
                Err(e) => Membership::Refused(e.to_string()),
            },
        }
    }

    /// Why `key` is refused outright, when a trusted user revoked it.
    pub fn revoked_reason(&self, key: &PublicKey) -> Option<String> {
        let r = self.ledger.revocation(key)?;
        self.trusted.contains(&r.body.user_key).then(|| {
            format!(
                "node {} was revoked by user key {} (`meshnode revoke`)",
                show_key(key),
                r.body.user_key
            )
        })
    }

    /// Records `cert`, if it verifies for `key` back to a trusted user, in
    /// the ledger's invite uses; returns the log line when that shows an
    /// invite enrolling a second node key.
    pub fn note_certificate(
        &mut self,
        key: &PublicKey,
        cert: &MemberCertificate,
    ) -> Option<String> {
        cert.verify_trusted(key, &self.trusted).ok()?;
        self.ledger.note_certificate(cert)
    }

    /// The node's own addresses with `/p2p/ID`, loopback first.
    pub fn own_addrs(&self) -> Vec<String> {
        let mut addrs: Vec<&Multiaddr> = self.listen_addrs.iter().collect();
        addrs.sort_by_key(|a| !is_loopback(a));
        addrs
            .iter()
            .map(|a| format!("{a}/p2p/{}", self.identity.peer_id))
            .collect()
    }

    /// The migration side's handle for a task, with the trust list as it
    /// is now.
    pub fn migrator(&self) -> Migrator {
        Migrator {
            host: self.host.clone(),
            link: self.link.clone(),
            me: self.identity.peer_id,
            signing: self.identity.signing.clone(),
            trusted: self.trusted.clone(),
            migrations: self.migration.migrations.clone(),
            incoming: self.migration.incoming.clone(),
            policy: self.migration.policy,
            reported: self.migration.reported.clone(),
            leases: self.migration.leases.clone(),
            replication: self.migration.replication.clone(),
        }
    }

    /// The placement side's handle for a task (drains).
    pub fn drains(&self) -> Drains {
        self.placer.drains(self.migrator())
    }
}
