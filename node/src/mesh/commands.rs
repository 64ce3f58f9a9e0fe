//! Control commands that act on vessels across the mesh (deploy, ps,
//! logs, migrate, stop, pin, drain): run here, or forward to the member
//! that acts, and answer the CLI; and the forwarded commands this node
//! serves for other members.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use protocol::control::{
    Command, ControlResponse, LogChunk, MigrationReport, PeerIdBytes, VesselInfo,
};
use protocol::forward::{ForwardRequest, ForwardResponse};
use protocol::membership::PublicKey;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::VesselId;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::node::{Membership, NodeCommand, NodeState};
use super::vessels::*;
use crate::sync::lock;
use crate::vessel::runner::Command as RunnerCmd;
use crate::vessel::{Host, Record};

pub(super) fn respond_control(
    tx: &mpsc::Sender<NodeCommand>,
    channel: ResponseChannel<protocol::control::ControlResponse>,
    response: ControlResponse,
) {
    let _ = tx.try_send(NodeCommand::RespondControl {
        channel,
        response: Box::new(response),
    });
}

/// A refusal, with its code, as a one-line detail: `Err(refuse(code, …))`.
pub(super) fn refuse(code: RefusalCode, detail: impl Into<String>) -> Refusal {
    Refusal::new(code, detail)
}

/// Member peers that are connected now.
pub(super) fn member_peers(state: &NodeState) -> Vec<PeerId> {
    state
        .peers
        .iter()
        .filter(|(_, e)| e.connections > 0 && matches!(e.membership, Membership::Member(_)))
        .map(|(p, _)| *p)
        .collect()
}

// ---------------------------------------------------------------------------
// Control commands (the CLI asked this node).

/// Runs a verified user command about vessels. Answers through `channel`,
/// now or from a task.
pub fn control_command(
    state: &mut NodeState,
    user: PublicKey,
    command: Command,
    channel: ResponseChannel<ControlResponse>,
) {
    let mesh = mesh_of(state);
    let peers = member_peers(state);
    let tx = state.vessels_net.tx.clone();
    tokio::spawn(async move {
        let response = match run_control(&mesh, &peers, user, command).await {
            Ok(r) => r,
            Err(refusal) => {
                warn!("control request refused: {refusal}");
                ControlResponse::Refused(refusal)
            }
        };
        respond_control(&tx, channel, response);
    });
}

pub(super) async fn run_control(
    mesh: &Mesh,
    peers: &[PeerId],
    user: PublicKey,
    command: Command,
) -> Result<ControlResponse, Refusal> {
    let command_kind = if matches!(command, Command::Pin { .. }) {
        Kind::Pin
    } else {
        Kind::Other
    };
    match command {
        Command::Deploy {
            deployment,
            module,
            volume_chunks,
            on,
            pinned,
        } => {
            deployment
                .verify()
                .map_err(|e| refuse(e.code(), e.to_string()))?;
            if deployment.user_key != user {
                return Err(refuse(
                    RefusalCode::Forged,
                    "the deployment is signed by another key than the request",
                ));
            }
            if !mesh.trusted.contains(&deployment.user_key) {
                return Err(refuse(
                    RefusalCode::Untrusted,
                    format!(
                        "untrusted deployer: user key {} is not trusted by this node",
                        deployment.user_key
                    ),
                ));
            }
            let id = deployment.body.vessel;
            let target = match on.as_deref() {
                None => mesh.me,
                Some(p) => p.parse::<PeerId>().map_err(|_| {
                    refuse(RefusalCode::BadArgument, format!("--on {p}: not a PeerId"))
                })?,
            };
            if target == mesh.me {
                let host = mesh.host.clone();
                tokio::task::spawn_blocking(move || {
                    lock(&host).deploy(
                        deployment,
                        module,
                        volume_chunks,
                        "deployed here".into(),
                        pinned,
                    )
                })
                .await
                .map_err(Refusal::internal)??;
            } else {
                mesh.forward(
                    target,
                    ForwardRequest::Deploy {
                        deployment,
                        module,
                        volume_chunks,
                        pinned,
                    },
                )
                .await?;
            }
            Ok(ControlResponse::Deployed {
                vessel: id,
                node: target.to_string(),
            })
        }
        Command::Ps => Ok(ControlResponse::Vessels(ps(mesh, peers).await)),
        Command::Logs { vessel, from } => {
            let (id, node) = resolve(mesh, peers, &vessel).await?;
            let page = if node == mesh.me {
                log_page(&mesh.host, id, from, &mesh.me)?
            } else {
                match mesh
                    .forward(node, ForwardRequest::Logs { vessel: id, from })
                    .await?
                {
                    ForwardResponse::Logs(p) => p,
                    other => return Err(RequestError::unexpected(node, &other).into()),
                }
            };
            Ok(ControlResponse::Logs(page))
        }
        Command::Migrate { vessel, to } => {
            let (id, node) = resolve(mesh, peers, &vessel).await?;
            let to_peer: PeerId = to.parse().map_err(|_| {
                refuse(
                    RefusalCode::BadArgument,
                    format!("--to {to}: not a PeerId (see `meshnode peers`)"),
                )
            })?;
            if to_peer == node {
                return Err(refuse(
                    RefusalCode::BadArgument,
                    format!("vessel {id} runs on {node} already"),
                ));
            }
            if node == mesh.me {
                start_migration(mesh, id, to_peer, &by_hand(mesh))?;
                Ok(ControlResponse::Migration(status(mesh, id)?))
            } else {
                match mesh
                    .forward(
                        node,
                        ForwardRequest::Migrate {
                            vessel: id,
                            to: PeerIdBytes(to_peer.to_bytes()),
                        },
                    )
                    .await?
                {
                    ForwardResponse::Migration(r) => Ok(ControlResponse::Migration(r)),
                    other => Err(RequestError::unexpected(node, &other).into()),
                }
            }
        }
        Command::MigrationStatus { vessel, source } => {
            let src: PeerId = source
                .parse()
                .map_err(|_| refuse(RefusalCode::BadArgument, format!("{source}: not a PeerId")))?;
            if src == mesh.me {
                Ok(ControlResponse::Migration(status(mesh, vessel)?))
            } else {
                match mesh
                    .forward(src, ForwardRequest::MigrationStatus { vessel })
                    .await?
                {
                    ForwardResponse::Migration(r) => Ok(ControlResponse::Migration(r)),
                    other => Err(RequestError::unexpected(src, &other).into()),
                }
            }
        }
        Command::Stop { vessel } => {
            let (id, node) = resolve(mesh, peers, &vessel).await?;
            if node == mesh.me {
                stop_local(&mesh.host, id)?;
            } else {
                mesh.forward(node, ForwardRequest::Stop { vessel: id })
                    .await?;
            }
            Ok(ControlResponse::Done)
        }
        Command::Pin { vessel } | Command::Unpin { vessel } => {
            let pinned = matches!(command_kind, Kind::Pin);
            let (id, node) = resolve(mesh, peers, &vessel).await?;
            if node == mesh.me {
                let host = mesh.host.clone();
                tokio::task::spawn_blocking(move || super::place::set_pinned(&host, id, pinned))
                    .await
                    .map_err(Refusal::internal)??;
            } else {
                mesh.forward(node, ForwardRequest::Pin { vessel: id, pinned })
                    .await?;
            }
            Ok(ControlResponse::Done)
        }
        Command::Drain {
            node,
            include_pinned,
        } => {
            let target = node_of(mesh, &node)?;
            if target == mesh.me {
                Ok(ControlResponse::Drain(super::place::start_drain(
                    mesh,
                    include_pinned,
                )))
            } else {
                match mesh
                    .forward(target, ForwardRequest::Drain { include_pinned })
                    .await?
                {
                    ForwardResponse::Drain(r) => Ok(ControlResponse::Drain(r)),
                    other => Err(RequestError::unexpected(target, &other).into()),
                }
            }
        }
        Command::DrainStatus { node } => {
            let target = node_of(mesh, &node)?;
            if target == mesh.me {
                Ok(ControlResponse::Drain(super::place::drain_report(mesh)?))
            } else {
                match mesh.forward(target, ForwardRequest::DrainStatus).await? {
                    ForwardResponse::Drain(r) => Ok(ControlResponse::Drain(r)),
                    other => Err(RequestError::unexpected(target, &other).into()),
                }
            }
        }
        other => Err(refuse(
            RefusalCode::Internal,
            format!("not a vessel command: {other:?}"),
        )),
    }
}

/// Which kind of pin command (the variants share their body).
pub(super) enum Kind {
    Pin,
    Other,
}

/// The node a user named: a PeerId, or `self` for the node the CLI talks to.
pub(super) fn node_of(mesh: &Mesh, node: &str) -> Result<PeerId, Refusal> {
    match node.trim() {
        "self" | "" => Ok(mesh.me),
        n => n.parse().map_err(|_| {
            refuse(
                RefusalCode::BadArgument,
                format!("`{n}` is not a PeerId (see `meshnode peers`), nor `self`"),
            )
        }),
    }
}

pub(super) fn status(mesh: &Mesh, id: VesselId) -> Result<MigrationReport, Refusal> {
    lock(&mesh.migrations).get(&id).cloned().ok_or_else(|| {
        refuse(
            RefusalCode::NoMigration,
            format!("no migration of vessel {id} was started on this node"),
        )
    })
}

pub(super) fn stop_local(host: &Arc<Mutex<Host>>, id: VesselId) -> Result<(), Refusal> {
    let mut h = lock(host);
    let l = h.vessels.get_mut(&id).ok_or_else(|| {
        refuse(
            RefusalCode::UnknownVessel,
            format!("vessel {id} is not on this node"),
        )
    })?;
    if l.migrating {
        return Err(refuse(
            RefusalCode::Busy,
            format!("vessel {id} is migrating; stop it when it has arrived"),
        ));
    }
    let Record::Owned { epoch, image } = l.record.clone() else {
        return Err(refuse(
            RefusalCode::NotOwner,
            format!("vessel {id} does not run on this node"),
        ));
    };
    if let Some(r) = &l.runner {
        let _ = r.send(RunnerCmd::Stop);
    }
    l.stopped = true;
    let record = Record::Ended {
        epoch,
        image,
        exit: "stopped".into(),
        code: None,
    };
    l.record = record.clone();
    h.write_record(id, &record)?;
    info!(vessel = %id, "stopped by a user");
    Ok(())
}

pub(super) fn log_page(
    host: &Arc<Mutex<Host>>,
    id: VesselId,
    from: u64,
    me: &PeerId,
) -> Result<LogChunk, Refusal> {
    let h = lock(host);
    let l = h.vessels.get(&id).ok_or_else(|| {
        refuse(
            RefusalCode::UnknownVessel,
            format!("vessel {id} is not on this node"),
        )
    })?;
    let page = lock(&l.log).page(from);
    let end = lock(&l.log).end();
    let ended = match (&l.record, l.ended()) {
        (Record::Left { .. }, _) => None,
        (_, Some((exit, _))) if page.next >= end => Some(exit),
        _ => None,
    };
    Ok(LogChunk {
        start: page.start,
        from: page.from,
        next: page.next,
        records: page.records,
        ended,
        node: me.to_string(),
    })
}

/// Every vessel in the mesh: this node's and each member peer's, one row
/// per vessel (the highest epoch wins; a node it left says `left`).
pub async fn ps(mesh: &Mesh, peers: &[PeerId]) -> Vec<VesselInfo> {
    let mut rows = {
        let mut h = lock(&mesh.host);
        h.reap();
        h.list()
    };
    let asks = peers.iter().map(|p| {
        let mesh = mesh.clone();
        let p = *p;
        async move {
            tokio::time::timeout(PS_PEER_TIMEOUT, mesh.forward(p, ForwardRequest::Vessels)).await
        }
    });
    for r in futures::future::join_all(asks).await {
        if let Ok(Ok(ForwardResponse::Vessels(v))) = r {
            rows.extend(v);
        }
    }
    merge_rows(rows)
}

/// One row per vessel: the highest epoch; at equal epochs, the node that
/// does not say `left`.
pub fn merge_rows(rows: Vec<VesselInfo>) -> Vec<VesselInfo> {
    let mut best: BTreeMap<VesselId, VesselInfo> = BTreeMap::new();
    for r in rows {
        let better = match best.get(&r.id) {
            None => true,
            Some(b) => {
                (r.epoch, r.state != "left" && r.state != "waiting")
                    > (b.epoch, b.state != "left" && b.state != "waiting")
            }
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
    mesh: &Mesh,
    peers: &[PeerId],
    reference: &str,
) -> Result<(VesselId, PeerId), Refusal> {
    let rows = ps(mesh, peers).await;
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

/// A control command another member forwarded here (it checked the user).
pub(super) async fn serve_forward(
    mesh: &Mesh,
    peer: PeerId,
    request: ForwardRequest,
) -> Result<ForwardResponse, Refusal> {
    match request {
        ForwardRequest::Deploy {
            deployment,
            module,
            volume_chunks,
            pinned,
        } => {
            deployment
                .verify()
                .map_err(|e| refuse(e.code(), e.to_string()))?;
            if !mesh.trusted.contains(&deployment.user_key) {
                return Err(refuse(
                    RefusalCode::Untrusted,
                    format!(
                        "untrusted deployer: user key {} is not trusted by this node",
                        deployment.user_key
                    ),
                ));
            }
            let host = mesh.host.clone();
            tokio::task::spawn_blocking(move || {
                lock(&host).deploy(
                    deployment,
                    module,
                    volume_chunks,
                    format!("deployed here through {peer}"),
                    pinned,
                )
            })
            .await
            .map_err(Refusal::internal)??;
            Ok(ForwardResponse::Deployed)
        }
        ForwardRequest::Vessels => {
            let mut h = lock(&mesh.host);
            h.reap();
            Ok(ForwardResponse::Vessels(h.list()))
        }
        ForwardRequest::Logs { vessel, from } => Ok(ForwardResponse::Logs(log_page(
            &mesh.host, vessel, from, &mesh.me,
        )?)),
        ForwardRequest::Stop { vessel } => {
            stop_local(&mesh.host, vessel)?;
            Ok(ForwardResponse::Done)
        }
        ForwardRequest::Migrate { vessel, to } => {
            let to = PeerId::from_bytes(&to.0)
                .map_err(|_| refuse(RefusalCode::BadArgument, "--to: not a PeerId"))?;
            start_migration(mesh, vessel, to, &by_hand(mesh))?;
            Ok(ForwardResponse::Migration(status(mesh, vessel)?))
        }
        ForwardRequest::MigrationStatus { vessel } => {
            Ok(ForwardResponse::Migration(status(mesh, vessel)?))
        }
        ForwardRequest::Pin { vessel, pinned } => {
            let host = mesh.host.clone();
            tokio::task::spawn_blocking(move || super::place::set_pinned(&host, vessel, pinned))
                .await
                .map_err(Refusal::internal)??;
            Ok(ForwardResponse::Done)
        }
        ForwardRequest::Drain { include_pinned } => Ok(ForwardResponse::Drain(
            super::place::start_drain(mesh, include_pinned),
        )),
        ForwardRequest::DrainStatus => {
            Ok(ForwardResponse::Drain(super::place::drain_report(mesh)?))
        }
    }
}
