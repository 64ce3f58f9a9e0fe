//! Control commands that act on vessels across the mesh (deploy, ps,
//! logs, migrate, stop, pin, drain): run here, or forward to the member
//! that acts, and answer the CLI; and the forwarded commands this node
//! serves for other members. Every command runs on its node through one
//! helper, `run_on`: a command for this node runs the very code a
//! forwarded one runs (`serve_forward`), and both answers are matched the
//! same way. Nothing waits on a node that failure detection suspects
//! (`mesh::silent`): a forward to it is refused with why, and `ps` lists its
//! vessels from its last status.

use std::sync::{Arc, Mutex};

use libp2p::request_response::ResponseChannel;
use libp2p::PeerId;
use protocol::control::{
    CheckpointReport, Command, ControlResponse, DrainReport, LogChunk, MigrationReport, PeerIdBytes,
};
use protocol::forward::{ForwardRequest, ForwardResponse};
use protocol::membership::PublicKey;
use protocol::refusal::{Refusal, RefusalCode};
use protocol::vessel::VesselId;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::link::{NodeCommand, RequestError};
use super::migrate::{by_hand, start_migration};
use super::place::{drain_report, set_pinned, start_drain, undrain};
use super::silent::{consequence, forward_while_alive};
use super::state::NodeState;
use super::vessels::refuse;
use crate::sync::lock;
use crate::vessel::runner::Command as RunnerCmd;
use crate::vessel::{Host, Record};

// `ps`, `resolve` and the `Control` context are their own stage (`mesh::ps`);
// re-exported so that `mesh::commands::Control` and the rest keep their paths.
pub use super::ps::{merge_rows, ps, Control, PS_PEER_TIMEOUT};
use super::ps::{resolve, rows_here};

pub(crate) fn respond_control(
    tx: &mpsc::Sender<NodeCommand>,
    channel: ResponseChannel<protocol::control::ControlResponse>,
    response: ControlResponse,
) {
    let _ = tx.try_send(NodeCommand::RespondControl {
        channel,
        response: Box::new(response),
    });
}

/// Member peers that are connected now.
pub(super) fn member_peers(state: &NodeState) -> Vec<PeerId> {
    state
        .peers
        .iter()
        .filter(|(_, e)| e.connected_member())
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
    let control = Control::of(state);
    let peers = member_peers(state);
    let tx = state.link.tx.clone();
    tokio::spawn(async move {
        let response = match run_control(&control, &peers, user, command).await {
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
    control: &Control,
    peers: &[PeerId],
    user: PublicKey,
    command: Command,
) -> Result<ControlResponse, Refusal> {
    match command {
        Command::Deploy {
            deployment,
            module,
            volume_chunks,
            on,
            pinned,
        } => {
            check_deployment(control, &deployment, Some(user))?;
            super::clash::check_clashes(&ps(control, peers).await, &deployment.body)?;
            let (id, target) = (deployment.body.vessel, deploy_target(control, on)?);
            let request = ForwardRequest::Deploy {
                deployment,
                module,
                volume_chunks,
                pinned,
            };
            run_on(control, target, request, deployed).await?;
            let node = target.to_string();
            Ok(ControlResponse::Deployed { vessel: id, node })
        }
        Command::Ps => Ok(ControlResponse::Vessels(ps(control, peers).await)),
        Command::Logs {
            vessel,
            from,
            generation,
            since_unix_ms,
        } => {
            let (id, node) = resolve(control, peers, &vessel).await?;
            if control.suspects.of(&node).is_some() && generation.is_none() {
                return replica_logs(control, id, node, from).await;
            }
            let request = ForwardRequest::Logs {
                vessel: id,
                from,
                generation,
                since_unix_ms,
            };
            act(control, node, request, |r| {
                logs(r).map(ControlResponse::Logs)
            })
            .await
        }
        Command::Migrate { vessel, to } => migrate_command(control, peers, &vessel, &to).await,
        Command::MigrationStatus { vessel, source } => {
            let src: PeerId = source
                .parse()
                .map_err(|_| refuse(RefusalCode::BadArgument, format!("{source}: not a PeerId")))?;
            let request = ForwardRequest::MigrationStatus { vessel };
            act(control, src, request, migration_answer).await
        }
        Command::Stop { vessel } => {
            let (id, node) = resolve_live(control, peers, &vessel).await?;
            act(
                control,
                node,
                ForwardRequest::Stop { vessel: id },
                done_answer,
            )
            .await
        }
        Command::Pin { vessel } => pin_command(control, peers, &vessel, true).await,
        Command::Unpin { vessel } => pin_command(control, peers, &vessel, false).await,
        Command::Drain {
            node,
            include_pinned,
        } => {
            let target = node_of(control, &node)?;
            if let Some(report) = dead_drain(control, peers, target).await {
                return Ok(ControlResponse::Drain(report));
            }
            let request = ForwardRequest::Drain { include_pinned };
            act(control, target, request, drain_answer).await
        }
        Command::DrainStatus { node } => {
            let target = node_of(control, &node)?;
            if let Some(report) = dead_drain(control, peers, target).await {
                return Ok(ControlResponse::Drain(report));
            }
            let request = ForwardRequest::DrainStatus;
            act(control, target, request, drain_answer).await
        }
        Command::Undrain { node } => {
            let target = node_of(control, &node)?;
            act(control, target, ForwardRequest::Undrain, drain_answer).await
        }
        Command::Checkpoint { vessel } => {
            let (id, node) = resolve_live(control, peers, &vessel).await?;
            let request = ForwardRequest::Checkpoint { vessel: id };
            act(control, node, request, |r| {
                checkpointed(r).map(ControlResponse::Checkpointed)
            })
            .await
        }
        Command::Recover { vessel, on, force } => {
            recover_command(control, peers, &vessel, &on, force).await
        }
        Command::Rm { tombstone } => rm_command(control, peers, user, *tombstone).await,
        Command::Volumes { vessel } => {
            let (id, node) = resolve_here_first(control, peers, &vessel).await?;
            act(
                control,
                node,
                ForwardRequest::Volumes { vessel: id },
                volume_answer,
            )
            .await
        }
        Command::VolumeList { vessel, path } => {
            let (vessel, node) = resolve_here_first(control, peers, &vessel).await?;
            let request = ForwardRequest::VolumeList { vessel, path };
            act(control, node, request, volume_answer).await
        }
        Command::VolumeRead {
            vessel,
            path,
            offset,
        } => {
            let (vessel, node) = resolve_here_first(control, peers, &vessel).await?;
            let request = ForwardRequest::VolumeRead {
                vessel,
                path,
                offset,
            };
            act(control, node, request, volume_answer).await
        }
        other => Err(refuse(
            RefusalCode::Internal,
            format!("not a vessel command: {other:?}"),
        )),
    }
}

/// [`resolve`], refused at once, with what happens to the vessel
/// (`mesh::absent`), when its host is suspected: the CLI waits for a
/// failover under way and asks again.
async fn resolve_live(
    control: &Control,
    peers: &[PeerId],
    vessel: &str,
) -> Result<(VesselId, PeerId), Refusal> {
    let (id, node) = resolve(control, peers, vessel).await?;
    match control.suspects.of(&node) {
        None => Ok((id, node)),
        Some(s) => Err(super::absent::refusal(
            &control.gossiped,
            &control.suspects,
            control.me,
            node,
            &s,
            id,
        )),
    }
}

/// `logs` of a vessel whose host is suspected: the log in the newest
/// checkpoint a replica holds, marked as of when.
async fn replica_logs(
    control: &Control,
    id: VesselId,
    host: PeerId,
    from: u64,
) -> Result<ControlResponse, Refusal> {
    let (gossiped, suspects, me) = (&control.gossiped, &control.suspects, control.me);
    let replication = &control.migrator.replication;
    let Some(replica) =
        super::absent::replica_to_read(replication, gossiped, suspects, me, host, id)
    else {
        let s = suspects.of(&host).expect("suspected");
        return Err(super::absent::refusal(gossiped, suspects, me, host, &s, id));
    };
    let request = ForwardRequest::ReplicaLogs { vessel: id, from };
    act(control, replica, request, |r| {
        logs(r).map(ControlResponse::Logs)
    })
    .await
}

/// A drain of `target` while failure detection suspects it: what the mesh
/// does with each vessel it last said it runs (`mesh::outlook`), from
/// here, since the drained node does not answer. None while it is not
/// suspected (it drains itself).
async fn dead_drain(
    control: &Control,
    peers: &[PeerId],
    target: PeerId,
) -> Option<protocol::control::DrainReport> {
    let suspicion = control.suspects.of(&target)?;
    let vessels = control
        .gossiped
        .iter()
        .find(|g| g.peer == target)
        .map(|g| g.vessels.clone())
        .unwrap_or_default();
    let rows = ps(control, peers).await;
    let (suspects, me) = (&control.suspects, control.me);
    Some(super::outlook::dead_drain_report(
        target, &suspicion, &vessels, &rows, suspects, me,
    ))
}

/// `meshnode recover VESSEL --on PEER --force`: PEER runs it from its
/// replica (`mesh::force`). The vessel is found by the mesh's `ps` (a
/// silent host's last status included), or by its full id.
async fn recover_command(
    control: &Control,
    peers: &[PeerId],
    vessel: &str,
    on: &str,
    force: bool,
) -> Result<ControlResponse, Refusal> {
    let target = node_of(control, on).map_err(|r| refuse(r.code, format!("--on: {}", r.detail)))?;
    if let Some(s) = control.suspects.of(&target) {
        return Err(refuse(
            RefusalCode::Unreachable,
            format!(
                "--on {target} is {}: it cannot run the vessel",
                s.describe()
            ),
        ));
    }
    let id = match resolve(control, peers, vessel).await {
        Ok((id, _)) => id,
        Err(refusal) => VesselId::from_hex(vessel).ok_or(refusal)?,
    };
    let request = ForwardRequest::Recover { vessel: id, force };
    act(control, target, request, |r| match r {
        ForwardResponse::Recovered(report) => Ok(ControlResponse::Recovered(report)),
        other => Err(Box::new(other)),
    })
    .await
}

/// `meshnode rm`: the node that holds the vessel's newest record removes
/// it, then every member forgets its copies (`mesh::remove`).
async fn rm_command(
    control: &Control,
    peers: &[PeerId],
    user: PublicKey,
    tombstone: protocol::vessel::Tombstone,
) -> Result<ControlResponse, Refusal> {
    if tombstone.user_key != user {
        return Err(refuse(
            RefusalCode::Forged,
            "the tombstone is signed by another key than the request",
        ));
    }
    super::remove::check_tombstone(&control.trusted, &tombstone)?;
    let (_, node) = resolve_live(control, peers, &tombstone.vessel().to_hex()).await?;
    let request = ForwardRequest::Remove {
        tombstone: tombstone.clone(),
    };
    run_on(control, node, request, done).await?;
    let missed = super::remove::spread(&control.migrator, peers, node, &tombstone).await;
    if !missed.is_empty() {
        warn!(vessel = %tombstone.vessel(), "removed; not confirmed by {missed:?} (told again when seen naming it)");
    }
    Ok(ControlResponse::Done)
}

/// [`resolve_live`], without asking the mesh when `vessel` is the full id
/// of a vessel whose volumes are here (each page of a `cp` asks again).
async fn resolve_here_first(
    control: &Control,
    peers: &[PeerId],
    vessel: &str,
) -> Result<(VesselId, PeerId), Refusal> {
    if let Some(id) = VesselId::from_hex(vessel) {
        let h = lock(&control.host);
        if crate::vessel::volume_read::volumes_of(&h, id).is_ok() {
            return Ok((id, control.me));
        }
    }
    resolve_live(control, peers, vessel).await
}

/// `volumes` and `cp`'s answers, as the host gave them.
fn volume_answer(reply: ForwardResponse) -> Result<ControlResponse, Box<ForwardResponse>> {
    match reply {
        ForwardResponse::Volumes { node, volumes } => {
            Ok(ControlResponse::Volumes { node, volumes })
        }
        ForwardResponse::VolumeListing(l) => Ok(ControlResponse::VolumeListing(l)),
        ForwardResponse::VolumePage(p) => Ok(ControlResponse::VolumePage(p)),
        other => Err(Box::new(other)),
    }
}

/// The node `meshnode deploy --on` names (this one by default).
fn deploy_target(control: &Control, on: Option<String>) -> Result<PeerId, Refusal> {
    match on.as_deref() {
        None => Ok(control.me),
        Some(p) => p
            .parse::<PeerId>()
            .map_err(|_| refuse(RefusalCode::BadArgument, format!("--on {p}: not a PeerId"))),
    }
}

/// `meshnode migrate`: the node that runs the vessel starts the move.
async fn migrate_command(
    control: &Control,
    peers: &[PeerId],
    vessel: &str,
    to: &str,
) -> Result<ControlResponse, Refusal> {
    let (id, node) = resolve_live(control, peers, vessel).await?;
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
    if let Some(s) = control.suspects.of(&to_peer) {
        return Err(refuse(
            RefusalCode::Unreachable,
            format!(
                "--to {to_peer} is {}: it cannot take the vessel",
                s.describe()
            ),
        ));
    }
    let request = ForwardRequest::Migrate {
        vessel: id,
        to: PeerIdBytes(to_peer.to_bytes()),
    };
    act(control, node, request, migration_answer).await
}

/// `meshnode pin` and `unpin`, on the node that runs the vessel.
async fn pin_command(
    control: &Control,
    peers: &[PeerId],
    vessel: &str,
    pinned: bool,
) -> Result<ControlResponse, Refusal> {
    let (id, node) = resolve_live(control, peers, vessel).await?;
    let request = ForwardRequest::Pin { vessel: id, pinned };
    act(control, node, request, done_answer).await
}

/// Runs a command that acts for the user on `node`'s vessels: here, or
/// (another node acts) by the user's signature for that node: the CLI is
/// answered `SignFor`, or, when this node runs a relayed command, which
/// must act here, it is refused.
async fn act(
    control: &Control,
    node: PeerId,
    request: ForwardRequest,
    answer: fn(ForwardResponse) -> Result<ControlResponse, Box<ForwardResponse>>,
) -> Result<ControlResponse, Refusal> {
    if node != control.me && request.needs_user_signature() {
        if !control.relay {
            return Err(refuse(
                RefusalCode::Misdirected,
                format!("the command acts on node {node}, not on this one"),
            ));
        }
        let signed = sign_for(control, node, &request).await;
        return signed.map_err(|r| on_a_silent_host(control, node, &request, r));
    }
    let vessel = vessel_of(&request);
    run_on(control, node, request, answer)
        .await
        .map_err(|r| match vessel {
            Some(id) => on_a_silent_host_vessel(control, node, id, r),
            None => r,
        })
}

/// A refusal because `node` went silent while the command waited on it
/// says what happens to the command's vessel instead (`mesh::absent`): the
/// CLI waits for a failover under way.
fn on_a_silent_host(
    control: &Control,
    node: PeerId,
    request: &ForwardRequest,
    refusal: Refusal,
) -> Refusal {
    match vessel_of(request) {
        Some(id) => on_a_silent_host_vessel(control, node, id, refusal),
        None => refusal,
    }
}

fn on_a_silent_host_vessel(
    control: &Control,
    node: PeerId,
    id: VesselId,
    refusal: Refusal,
) -> Refusal {
    match control.suspects.of(&node) {
        Some(s) if refusal.code == RefusalCode::Unreachable => {
            let (gossiped, suspects) = (&control.gossiped, &control.suspects);
            super::absent::refusal(gossiped, suspects, control.me, node, &s, id)
        }
        _ => refusal,
    }
}

/// The vessel a command acts on, if it acts on one.
fn vessel_of(request: &ForwardRequest) -> Option<VesselId> {
    match request {
        ForwardRequest::Logs { vessel, .. }
        | ForwardRequest::Stop { vessel }
        | ForwardRequest::Migrate { vessel, .. }
        | ForwardRequest::Pin { vessel, .. }
        | ForwardRequest::Checkpoint { vessel }
        | ForwardRequest::Volumes { vessel }
        | ForwardRequest::VolumeList { vessel, .. }
        | ForwardRequest::VolumeRead { vessel, .. } => Some(*vessel),
        _ => None,
    }
}

/// Asks `node` for a nonce and tells the CLI to sign its command
/// (`request`) for it; refused at once, saying why, when `node` is
/// suspected.
async fn sign_for(
    control: &Control,
    node: PeerId,
    request: &ForwardRequest,
) -> Result<ControlResponse, Refusal> {
    let (challenge, why) = (ForwardRequest::Challenge, consequence(request));
    let (link, suspects) = (&control.link, &control.suspects);
    match forward_while_alive(link, suspects, node, challenge, why).await? {
        ForwardResponse::Challenge { nonce, node: key } => Ok(ControlResponse::SignFor {
            node: node.to_string(),
            node_key: key,
            nonce,
        }),
        other => Err(Refusal::new(
            RefusalCode::Internal,
            format!("unexpected answer to a challenge from {node}: {other:?}"),
        )),
    }
}

fn done_answer(reply: ForwardResponse) -> Result<ControlResponse, Box<ForwardResponse>> {
    done(reply).map(|()| ControlResponse::Done)
}

fn migration_answer(reply: ForwardResponse) -> Result<ControlResponse, Box<ForwardResponse>> {
    migration(reply).map(ControlResponse::Migration)
}

fn drain_answer(reply: ForwardResponse) -> Result<ControlResponse, Box<ForwardResponse>> {
    drain(reply).map(ControlResponse::Drain)
}

/// Runs `request` on `node`: here when it is this node (the code a
/// forwarded command runs), else forwarded to it, whose failure becomes a
/// refusal with a code. `expect` takes the answer the command calls for
/// out of the reply; any other answer is refused as unexpected from `node`.
pub(super) async fn run_on<T>(
    control: &Control,
    node: PeerId,
    request: ForwardRequest,
    expect: fn(ForwardResponse) -> Result<T, Box<ForwardResponse>>,
) -> Result<T, Refusal> {
    let reply = if node == control.me {
        run_here(control, None, request).await?
    } else {
        let why = consequence(&request);
        forward_while_alive(&control.link, &control.suspects, node, request, why).await?
    };
    expect(reply).map_err(|other| RequestError::unexpected(node, &other).into())
}

// The answers `run_on` expects, one per kind of command.

fn deployed(reply: ForwardResponse) -> Result<(), Box<ForwardResponse>> {
    match reply {
        ForwardResponse::Deployed => Ok(()),
        other => Err(Box::new(other)),
    }
}

fn done(reply: ForwardResponse) -> Result<(), Box<ForwardResponse>> {
    match reply {
        ForwardResponse::Done => Ok(()),
        other => Err(Box::new(other)),
    }
}

fn logs(reply: ForwardResponse) -> Result<LogChunk, Box<ForwardResponse>> {
    match reply {
        ForwardResponse::Logs(page) => Ok(page),
        other => Err(Box::new(other)),
    }
}

fn migration(reply: ForwardResponse) -> Result<MigrationReport, Box<ForwardResponse>> {
    match reply {
        ForwardResponse::Migration(report) => Ok(report),
        other => Err(Box::new(other)),
    }
}

fn checkpointed(reply: ForwardResponse) -> Result<CheckpointReport, Box<ForwardResponse>> {
    match reply {
        ForwardResponse::Checkpointed(report) => Ok(report),
        other => Err(Box::new(other)),
    }
}

fn drain(reply: ForwardResponse) -> Result<DrainReport, Box<ForwardResponse>> {
    match reply {
        ForwardResponse::Drain(report) => Ok(report),
        other => Err(Box::new(other)),
    }
}

/// A deployment's signature, its signer (`user`, when the CLI asked this
/// node: the request's own key) and whether this node trusts the deployer.
fn check_deployment(
    control: &Control,
    deployment: &protocol::vessel::Deployment,
    user: Option<PublicKey>,
) -> Result<(), Refusal> {
    deployment
        .verify()
        .map_err(|e| refuse(e.code(), e.to_string()))?;
    if user.is_some_and(|u| deployment.user_key != u) {
        return Err(refuse(
            RefusalCode::Forged,
            "the deployment is signed by another key than the request",
        ));
    }
    if !control.trusted.contains(&deployment.user_key) {
        return Err(refuse(
            RefusalCode::Untrusted,
            format!(
                "untrusted deployer: user key {} is not trusted by this node",
                deployment.user_key
            ),
        ));
    }
    Ok(())
}

/// The node a user named: a PeerId, or `self` for the node the CLI talks to.
pub(super) fn node_of(control: &Control, node: &str) -> Result<PeerId, Refusal> {
    match node.trim() {
        "self" | "" => Ok(control.me),
        n => n.parse().map_err(|_| {
            refuse(
                RefusalCode::BadArgument,
                format!("`{n}` is not a PeerId (see `meshnode peers`), nor `self`"),
            )
        }),
    }
}

/// The report of the last migration of `id` started here.
pub(super) fn report(control: &Control, id: VesselId) -> Result<MigrationReport, Refusal> {
    control.migrator.report(id).ok_or_else(|| {
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
    generation: Option<u32>,
    me: &PeerId,
) -> Result<LogChunk, Refusal> {
    let h = lock(host);
    let l = h.vessels.get(&id).ok_or_else(|| {
        refuse(
            RefusalCode::UnknownVessel,
            format!("vessel {id} is not on this node"),
        )
    })?;
    let log = lock(&l.log);
    let page = log
        .page_of(from, generation)
        .map_err(|e| refuse(e.refusal_code(), e.to_string()))?;
    let end = log.end();
    let ended = match (&l.record, l.ended()) {
        (Record::Left { .. }, _) => None,
        (_, Some((exit, _))) if page.next >= end && page.generation == log.history.current() => {
            Some(exit)
        }
        _ => None,
    };
    Ok(log.chunk(page, ended, me.to_string()))
}

/// The offset from which a vessel's log here holds what it printed since
/// `since_ms` (`logs --since`; `vessel::log_times`); 0 for a vessel not
/// here (`log_page` then refuses it).
fn log_offset_since(host: &Arc<Mutex<Host>>, id: VesselId, since_ms: u64) -> u64 {
    let h = lock(host);
    let Some(l) = h.vessels.get(&id) else {
        return 0;
    };
    let log = lock(&l.log);
    log.times.offset_since(since_ms, log.start, log.end())
}

/// A control command another member forwarded here (it checked the user).
pub(super) async fn serve_forward(
    control: &Control,
    peer: PeerId,
    request: ForwardRequest,
) -> Result<ForwardResponse, Refusal> {
    run_here(control, Some(peer), request).await
}

/// Runs a command on this node: one the CLI asked here (`through` None;
/// its user was checked already) or one that `through` forwarded.
async fn run_here(
    control: &Control,
    through: Option<PeerId>,
    request: ForwardRequest,
) -> Result<ForwardResponse, Refusal> {
    match request {
        ForwardRequest::Deploy {
            deployment,
            module,
            volume_chunks,
            pinned,
        } => {
            check_deployment(control, &deployment, None)?;
            let reason = match through {
                None => "deployed here".to_string(),
                Some(peer) => format!("deployed here through {peer}"),
            };
            let host = control.host.clone();
            tokio::task::spawn_blocking(move || -> Result<VesselId, Refusal> {
                // Rewrite and compile off the host's lock (issue 14, item
                // 12); `deploy` then finds the module in the cache.
                let id = deployment.body.vessel;
                Host::prepare_module_unlocked(&host, module.clone(), &deployment.body.name)
                    .map_err(|(code, e)| crate::vessel::HostError::refused(id, code, e))?;
                let mut h = lock(&host);
                // Again under the lock: two deploys racing here cannot
                // both take a name or a port (`mesh::clash`).
                h.reap();
                super::clash::check_clashes(&h.list(), &deployment.body)?;
                Ok(h.deploy(deployment, module, volume_chunks, reason, pinned)?)
            })
            .await
            .map_err(Refusal::internal)??;
            Ok(ForwardResponse::Deployed)
        }
        ForwardRequest::Vessels => Ok(ForwardResponse::Vessels(rows_here(control))),
        ForwardRequest::Logs {
            vessel,
            from,
            generation,
            since_unix_ms,
        } => {
            let from = match (since_unix_ms, generation) {
                (Some(since), None) => from.max(log_offset_since(&control.host, vessel, since)),
                _ => from,
            };
            let page = log_page(&control.host, vessel, from, generation, &control.me)?;
            Ok(ForwardResponse::Logs(page))
        }
        ForwardRequest::Stop { vessel } => {
            stop_local(&control.host, vessel)?;
            Ok(ForwardResponse::Done)
        }
        ForwardRequest::Migrate { vessel, to } => {
            let to = PeerId::from_bytes(&to.0)
                .map_err(|_| refuse(RefusalCode::BadArgument, "--to: not a PeerId"))?;
            let migrator = &control.migrator;
            start_migration(migrator, vessel, to, &by_hand(migrator))?;
            Ok(ForwardResponse::Migration(report(control, vessel)?))
        }
        ForwardRequest::MigrationStatus { vessel } => {
            Ok(ForwardResponse::Migration(report(control, vessel)?))
        }
        ForwardRequest::Pin { vessel, pinned } => {
            let host = control.host.clone();
            tokio::task::spawn_blocking(move || set_pinned(&host, vessel, pinned))
                .await
                .map_err(Refusal::internal)??;
            Ok(ForwardResponse::Done)
        }
        ForwardRequest::Drain { include_pinned } => Ok(ForwardResponse::Drain(start_drain(
            &control.drains,
            include_pinned,
        ))),
        ForwardRequest::DrainStatus => Ok(ForwardResponse::Drain(drain_report(&control.drains)?)),
        ForwardRequest::Undrain => Ok(ForwardResponse::Drain(undrain(&control.drains)?)),
        ForwardRequest::Challenge | ForwardRequest::Signed(_) => Err(refuse(
            RefusalCode::Internal,
            "answered by the event loop (mesh/relay.rs)",
        )),
        ForwardRequest::Recover { vessel, force } => {
            let (migrator, suspects) = (&control.migrator, &control.suspects);
            let (report, certificate) =
                super::force::recover_here(migrator, suspects, vessel, force)?;
            let fence = super::force::fence_old_host(
                control.link.clone(),
                control.suspects.clone(),
                certificate,
            );
            tokio::spawn(fence);
            Ok(ForwardResponse::Recovered(report))
        }
        ForwardRequest::ReplicaLogs { vessel, from } => {
            let replication = &control.migrator.replication;
            let page = super::absent::replica_log_page(
                &control.host,
                replication,
                control.me,
                vessel,
                from,
            )?;
            Ok(ForwardResponse::Logs(page))
        }
        ForwardRequest::Fence { certificate } => {
            let from = through.ok_or_else(|| {
                refuse(
                    RefusalCode::BadArgument,
                    "a fence comes from the node that recovered the vessel",
                )
            })?;
            super::force::fence_here(&control.host, from, &certificate)?;
            Ok(ForwardResponse::Done)
        }
        r @ (ForwardRequest::Volumes { .. }
        | ForwardRequest::VolumeList { .. }
        | ForwardRequest::VolumeRead { .. }) => {
            super::volume_serve::serve(&control.host, control.me.to_string(), r).await
        }
        ForwardRequest::Remove { tombstone } => {
            super::remove::remove_here(&control.migrator, &tombstone)?;
            Ok(ForwardResponse::Done)
        }
        ForwardRequest::Tombstone { tombstone } => {
            super::remove::bury_here(&control.migrator, &tombstone)?;
            Ok(ForwardResponse::Done)
        }
        ForwardRequest::Checkpoint { vessel } => {
            let durable = super::checkpoint::take_and_replicate(&control.migrator, vessel)
                .await
                .map_err(|e| checkpoint_refusal(vessel, e))?;
            Ok(ForwardResponse::Checkpointed(CheckpointReport {
                vessel,
                node: control.me.to_string(),
                image: durable.image,
                pause_us: durable.pause.as_micros() as u64,
                changed_chunks: durable.changed_chunks as u64,
                compared_chunks: durable.compared_chunks as u64,
            }))
        }
    }
}

/// Why `meshnode checkpoint` took none, with the code a script can match.
fn checkpoint_refusal(vessel: VesselId, e: crate::vessel::checkpoint::CheckpointError) -> Refusal {
    use crate::vessel::checkpoint::CheckpointError as E;
    let code = match &e {
        E::NotHere => RefusalCode::UnknownVessel,
        E::NotRunning(_) | E::Capture(_) => RefusalCode::Invalid,
        E::Moving | E::Busy | E::Superseded | E::Timeout(_) => RefusalCode::Busy,
        E::Store(e) if e.is_disk_full() => RefusalCode::Full,
        E::Budget(_) => RefusalCode::Full,
        E::Store(_) | E::Record(_) => RefusalCode::Internal,
    };
    Refusal::new(code, format!("cannot checkpoint vessel {vessel}: {e}"))
}
