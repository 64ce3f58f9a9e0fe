//! The `meshnode deploy | ps | logs | migrate | stop | pin | unpin | drain`
//! subcommands.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use protocol::control::{Command, ControlResponse, DrainReport, FailureKind, MigrationReport};
use protocol::migrate::ChunkBytes;
use protocol::snapshot::Hash;
use protocol::vessel::{
    Deployment, DeploymentBody, Durability, RestartPolicy, VesselId, DEFAULT_SYNC_INTERVAL_MS,
    VESSEL_VERSION,
};

use super::cli::{out, runtime, user_key, NodeTarget};
use super::client::{open, Session};
use super::tables;
// `logs` has a file of its own; it is a vessel command all the same.
pub use super::logs_cli::{run_logs, LogsArgs, LOGS_RETRY_FOR};

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// A name for the vessel (default: the module's file name without
    /// .wasm, or NAME-2, NAME-3, … if a live vessel has that name). A name
    /// that a running vessel anywhere in the mesh has is refused
    /// (`name-taken`), naming that vessel; so is a --port another vessel
    /// serves (`port-taken`). An ended vessel's name is free again.
    #[arg(long)]
    pub name: Option<String>,
    /// Run it on this member instead of the node you talk to: its name, its
    /// PeerId or a unique prefix of it, as `meshnode peers` lists them.
    #[arg(long, value_name = "PEER")]
    pub on: Option<String>,
    /// Start it pinned: placement never moves it nearer its clients (as
    /// `meshnode pin` right after the deployment, without the window in
    /// which placement could move it). `meshnode unpin` lets it move.
    #[arg(long)]
    pub pin: bool,
    /// A volume: the files of LOCAL_DIR are uploaded now and then belong to
    /// the vessel, which sees them at GUEST and takes them along when it
    /// moves. Repeatable.
    #[arg(long = "volume", value_name = "GUEST=LOCAL_DIR")]
    pub volumes: Vec<String>,
    /// A node-local directory that each node maps by NAME in its config
    /// (`[mounts]`), seen at GUEST. It does not travel. Repeatable.
    #[arg(long = "mount", value_name = "GUEST=NAME")]
    pub mounts: Vec<String>,
    /// Give the vessel a listening TCP socket on this port (as wasmtime's
    /// `--tcplisten`: descriptor 3, then 4, ... in the order given). Every
    /// node of the mesh accepts its clients on PORT (at the node's
    /// `service_address`) and carries them to wherever the vessel runs;
    /// open connections survive its moves. Repeatable.
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// An environment variable for the program. Repeatable.
    #[arg(long = "env", value_name = "KEY=VALUE")]
    pub envs: Vec<String>,
    /// How often the node that runs it writes a durable checkpoint (e.g.
    /// 500ms, 1s, 1m), or `off`. A node that crashes or loses power resumes
    /// the vessel from its newest checkpoint, so a crash costs at most this
    /// much of its work, with its log and volumes rolled back to match.
    /// Default: each node's `checkpoint_every_ms` (1 s unless configured).
    #[arg(long, value_name = "DURATION|off", value_parser = parse_checkpoint_every)]
    pub checkpoint_every: Option<u64>,
    /// How many other member nodes keep a copy of its newest checkpoint
    /// (and so its log), shipped after each checkpoint with only the
    /// chunks they lack; 0 turns replication off. Placement chooses them
    /// (members with room, nearest its clients) and replaces one that
    /// leaves; with fewer other members, it replicates to those there are
    /// and `ps` says so. A replica never runs the vessel. At most 4.
    #[arg(long, value_name = "R", default_value_t = protocol::replica::DEFAULT_REPLICAS,
          value_parser = clap::value_parser!(u32).range(0..=protocol::limits::MAX_REPLICAS as i64))]
    pub replicas: u32,
    /// When the vessel's output leaves its host. `async` (default): at
    /// once; if the host dies, a replica resumes it from its newest
    /// checkpoint, losing up to one checkpoint interval of work, and its
    /// clients are reset. `sync`: output commit, as Remus does for VMs.
    /// The vessel is checkpointed every sync interval and each checkpoint
    /// is shipped to every replica; its replies to clients and its log
    /// lines are released only once every replica holds (in memory) a
    /// checkpoint that produced them, and client bytes are confirmed only
    /// once they are inside one. If the host dies, a replica resumes it
    /// and clients that entered through another node keep their
    /// connection: no acknowledged byte is lost, repeated or reordered.
    /// It costs reply latency (a reply waits for the next checkpoint and
    /// its shipment: up to an interval plus a few round trips; a client
    /// that asks in lockstep waits about a whole interval) and a
    /// checkpoint's pause and shipment every interval; a replica that dies
    /// holds the output back until it is replaced (10 s). Needs at least
    /// one replica.
    #[arg(long, value_name = "async|sync", default_value = "async",
          value_parser = ["async", "sync"])]
    pub durability: String,
    /// How often a `--durability sync` vessel is checkpointed and shipped
    /// (e.g. 50ms, 200ms): a reply waits up to this for the next
    /// checkpoint. Default: 50ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_sync_interval)]
    pub sync_interval: Option<u64>,
    /// The most memory the vessel may hold, all its memories together
    /// (e.g. 64MiB, 1GiB): a growth past it traps the vessel, and `ps
    /// VESSEL` says "out of memory … over its --max-memory". It travels
    /// with the vessel. Each node's own limit (`vessel_max_memory_bytes`,
    /// 512MiB by default) holds too, whichever is lower. Default: that
    /// limit only.
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::parse_size)]
    pub max_memory: Option<usize>,
    /// Run the vessel again when it ends: `on-failure` (after a trap or a
    /// non-zero exit code), `always` (after any end but `meshnode stop`),
    /// or `never` (default). A restart runs the module afresh from its
    /// deployment, with its volumes as they are (its memory is not kept: a
    /// checkpoint would only replay the failure), and its log goes on. It
    /// waits 1 s, then twice as long after each failure in a row, up to
    /// 60 s; a run of 60 s or more starts the count again. `ps` shows
    /// `restarting (N) in Ts` meanwhile. The policy travels with the
    /// vessel (migrations, failovers).
    #[arg(long, value_name = "on-failure|always|never", default_value = "never",
          value_parser = ["on-failure", "always", "never"])]
    pub restart: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The WASI command module.
    pub module: PathBuf,
    /// The program's arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `--checkpoint-every`: a duration in milliseconds, `off` as 0.
fn parse_checkpoint_every(s: &str) -> std::result::Result<u64, String> {
    if s == "off" {
        return Ok(0);
    }
    let every = protocol::duration::parse_duration(s).map_err(|e| e.to_string())?;
    if every < MIN_CHECKPOINT_EVERY {
        return Err(format!(
            "{s} is shorter than the shortest interval, {} ms (or `off`)",
            MIN_CHECKPOINT_EVERY.as_millis()
        ));
    }
    Ok(every.as_millis() as u64)
}

/// `--sync-interval`: a duration in milliseconds.
fn parse_sync_interval(s: &str) -> std::result::Result<u64, String> {
    use protocol::vessel::{MAX_SYNC_INTERVAL_MS, MIN_SYNC_INTERVAL_MS};
    let every = protocol::duration::parse_duration(s).map_err(|e| e.to_string())?;
    let ms = every.as_millis() as u64;
    if !(MIN_SYNC_INTERVAL_MS..=MAX_SYNC_INTERVAL_MS).contains(&ms) {
        return Err(format!(
            "{s} is outside {MIN_SYNC_INTERVAL_MS} ms ..= {MAX_SYNC_INTERVAL_MS} ms"
        ));
    }
    Ok(ms)
}

/// The deployment's durability from `--durability` and `--sync-interval`.
fn durability_of(args: &DeployArgs) -> Result<Option<Durability>> {
    match (args.durability.as_str(), args.sync_interval) {
        ("sync", interval) => Ok(Some(Durability::Sync {
            interval_ms: interval.unwrap_or(DEFAULT_SYNC_INTERVAL_MS),
        })),
        (_, Some(_)) => bail!("--sync-interval applies to --durability sync only"),
        _ => Ok(None),
    }
}

/// The shortest checkpoint interval a deployment may ask for: each
/// checkpoint pauses the vessel and compares its whole memory, so a
/// shorter one would spend more of a small board on checkpoints than on
/// the program.
pub const MIN_CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Args, Debug)]
pub struct PsArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print JSON (every field, whole messages).
    #[arg(long)]
    pub json: bool,
    /// `table` fits within 100 columns (nodes by name, short ids, long
    /// cells cut with …); `wide` shows full ids and PeerIds, the node's
    /// name, migrations and checkpoint age, nothing cut.
    #[arg(short = 'o', long = "output", value_enum, default_value = "table")]
    pub output: tables::Output,
    /// Show only this vessel (name, id or id prefix), whole: its full
    /// state (a trap's message), exit code, lease and replicas.
    #[arg(value_name = "VESSEL")]
    pub vessel: Option<String>,
    /// List ended vessels too (stopped, exited, trapped, failed). The table
    /// hides them by default and says how many it hid; `--json` and
    /// `ps VESSEL` always include them. `meshnode rm` removes one.
    #[arg(short = 'a', long)]
    pub all: bool,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// The member to move it to: its name, its PeerId or a unique prefix of
    /// it, as `meshnode peers` lists them.
    #[arg(long, value_name = "PEER")]
    pub to: String,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The vessel: id, id prefix or name.
    pub vessel: String,
}

#[derive(Args, Debug)]
pub struct StopArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// The vessel: id, id prefix or name.
    pub vessel: String,
}

#[derive(Args, Debug)]
pub struct CheckpointArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The vessel: id, id prefix or name.
    pub vessel: String,
}

#[derive(Args, Debug)]
pub struct PinArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// The vessel: id, id prefix or name.
    pub vessel: String,
}

#[derive(Args, Debug)]
pub struct DrainArgs {
    #[command(flatten)]
    pub target: NodeTarget,
    /// Also move pinned vessels (they keep their pin on the new node).
    /// Without it, pinned vessels stay and drain exits with status 3.
    #[arg(long)]
    pub include_pinned: bool,
    /// Print the final report as JSON.
    #[arg(long)]
    pub json: bool,
    /// The node to drain: its name, its PeerId or a unique prefix of it (as
    /// `meshnode peers` lists them), or `self` for the node this command
    /// talks to.
    #[arg(value_name = "NODE")]
    pub drained: String,
}

/// One connection to the node for a whole command.
pub(super) struct Client {
    rt: tokio::runtime::Runtime,
    session: Session,
    key: ed25519_dalek::SigningKey,
    timeout: Duration,
}

impl Client {
    pub(super) fn connect(target: &NodeTarget) -> Result<Client> {
        let key = user_key(target.user_key.as_deref())?;
        let rt = runtime()?;
        let timeout = target.timeout;
        let (node, data_dir) = (target.node.as_deref(), target.data_dir.as_deref());
        let (session, _) = rt
            .block_on(async { tokio::time::timeout(timeout, open(node, data_dir, &key)).await })
            .map_err(|_| {
                anyhow::anyhow!(
                    "the node did not answer the connection within {} s (--timeout)",
                    timeout.as_secs()
                )
            })??;
        Ok(Client {
            rt,
            session,
            key,
            timeout,
        })
    }

    /// The user key the command signs with.
    pub(super) fn user_key(&self) -> &ed25519_dalek::SigningKey {
        &self.key
    }

    /// [`Client::call`], and while the node answers that the vessel's host
    /// is failing over (`mesh::absent::FAILING_OVER`), says so once and asks
    /// again, for at most [`FAILOVER_WAIT`]: the command then acts on the
    /// new host.
    pub(super) fn call_through_failover(&mut self, command: Command) -> Result<ControlResponse> {
        let started = std::time::Instant::now();
        let mut told = false;
        loop {
            let detail = match self.call(command.clone()) {
                Err(e) => match e.downcast_ref::<super::client::ClientError>() {
                    Some(super::client::ClientError::Refused(r))
                        if r.code == protocol::refusal::RefusalCode::Unreachable
                            && r.detail.contains(crate::mesh::absent::FAILING_OVER) =>
                    {
                        r.detail.clone()
                    }
                    _ => return Err(e),
                },
                ok => return ok,
            };
            if started.elapsed() >= FAILOVER_WAIT {
                bail!(
                    "{detail}; the failover did not complete within {} s: see `meshnode ps`",
                    FAILOVER_WAIT.as_secs()
                );
            }
            if !told {
                eprintln!(
                    "meshnode: {detail}; waiting up to {} s for its new host",
                    FAILOVER_WAIT.as_secs()
                );
                told = true;
            }
            std::thread::sleep(FAILOVER_POLL);
        }
    }

    /// The member a user gave by name, PeerId or PeerId prefix (`--on`,
    /// `--to`, `drain NODE`, `recover --on`), as the node knows it; `self`
    /// is the node talked to. A name two nodes claim, or input that fits
    /// none or several, is an error that lists the candidates.
    pub(super) fn resolve_node(&mut self, spec: &str) -> Result<super::resolve::Resolved> {
        let timeout = self.timeout;
        let Client {
            rt, session, key, ..
        } = self;
        let r = rt
            .block_on(async {
                tokio::time::timeout(timeout, super::client::resolve_node(session, key, spec)).await
            })
            .map_err(|_| {
                anyhow::anyhow!(
                    "the node did not answer `peers` within {} s (--timeout)",
                    timeout.as_secs()
                )
            })??;
        Ok(r)
    }

    /// [`Client::resolve_node`] as a command's node argument: a PeerId,
    /// or `self` as the user gave it.
    pub(super) fn node_arg(&mut self, spec: &str) -> Result<String> {
        if spec.trim() == "self" {
            return Ok("self".to_string());
        }
        Ok(self.resolve_node(spec)?.peer_id)
    }

    pub(super) fn call(&mut self, command: Command) -> Result<ControlResponse> {
        let timeout = self.timeout;
        let Client {
            rt, session, key, ..
        } = self;
        let what = command_name(&command);
        let r = rt
            .block_on(async { tokio::time::timeout(timeout, session.signed(key, command)).await })
            .map_err(|_| {
                anyhow::anyhow!(
                    "the node did not answer `{what}` within {} s (--timeout)",
                    timeout.as_secs()
                )
            })??;
        Ok(r)
    }
}

/// How long `stop`, `pin`, `unpin`, `migrate` and `checkpoint` wait for
/// the failover of a vessel whose host is gone: a takeover comes about 2 s
/// after the host's death, plus detection; the rest is slack for a loaded
/// board.
pub const FAILOVER_WAIT: Duration = Duration::from_secs(20);

/// How often they ask again meanwhile.
const FAILOVER_POLL: Duration = Duration::from_millis(500);

/// A command as the user typed it, for messages.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Deploy { .. } => "deploy",
        Command::Ps => "ps",
        Command::Logs { .. } => "logs",
        Command::Migrate { .. } => "migrate",
        Command::MigrationStatus { .. } => "migrate (status)",
        Command::Stop { .. } => "stop",
        Command::Pin { .. } => "pin",
        Command::Unpin { .. } => "unpin",
        Command::Drain { .. } => "drain",
        Command::DrainStatus { .. } => "drain (status)",
        Command::Checkpoint { .. } => "checkpoint",
        Command::Recover { .. } => "recover",
        Command::Undrain { .. } => "undrain",
        Command::Rm { .. } => "rm",
        Command::Volumes { .. } => "volumes",
        Command::VolumeList { .. } | Command::VolumeRead { .. } => "cp",
        _ => "the command",
    }
}

fn split_pair<'a>(spec: &'a str, what: &str) -> Result<(&'a str, &'a str)> {
    spec.split_once('=')
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .with_context(|| format!("{what} `{spec}`: expected GUEST=…"))
}

/// `meshnode deploy`.
pub fn run_deploy(args: DeployArgs) -> Result<i32> {
    let module = crate::dock::read_module_file(&args.module)?;
    if module.len() > protocol::limits::MAX_DEPLOY_MODULE_BYTES {
        bail!(
            "{}: {} bytes, over the limit of {} bytes for a deployment",
            args.module.display(),
            module.len(),
            protocol::limits::MAX_DEPLOY_MODULE_BYTES
        );
    }
    let mut client = Client::connect(&args.target)?;
    // Which node gets it, said before anything (volumes included) goes.
    let dest = client.resolve_node(args.on.as_deref().unwrap_or("self"))?;
    eprintln!("meshnode: deploying to {}", dest.shown());
    let on = args.on.as_ref().map(|_| dest.peer_id.clone());
    let name = match &args.name {
        Some(name) => name.clone(),
        None => default_name(&mut client, &args.module)?,
    };
    // Volumes are chunked here, exactly as a node chunks them, so only the
    // chunks travel (once each).
    let scratch = tempfile::tempdir().context("cannot make a scratch directory")?;
    let store = crate::store::ChunkStore::open(scratch.path())?;
    let mut volumes = Vec::new();
    let mut chunks: Vec<Hash> = Vec::new();
    for spec in &args.volumes {
        let (guest, local) = split_pair(spec, "--volume")?;
        let local = PathBuf::from(local);
        if !local.is_dir() {
            bail!("--volume {spec}: {} is not a directory", local.display());
        }
        let v = crate::vessel::image::pack_volume(&store, &local, guest)
            .map_err(|e| anyhow::anyhow!("--volume {spec}: {e}"))?;
        chunks.extend(v.chunks());
        volumes.push(v);
    }
    chunks.sort();
    chunks.dedup();
    let volume_chunks = chunks
        .iter()
        .map(|h| store.get_chunk(h).map(ChunkBytes))
        .collect::<Result<Vec<_>, _>>()?;
    let mounts = args
        .mounts
        .iter()
        .map(|m| split_pair(m, "--mount").map(|(g, n)| (g.to_string(), n.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let body = DeploymentBody {
        version: VESSEL_VERSION,
        vessel: VesselId(id),
        name,
        module_hash: Hash::of(&module),
        args: args.args.clone(),
        env: args.envs.clone(),
        volumes,
        mounts,
        ports: args.ports.clone(),
        checkpoint_every_ms: args.checkpoint_every,
        replicas: Some(args.replicas),
        durability: durability_of(&args)?,
        max_memory_bytes: args.max_memory.map(|b| b as u64),
        restart: match args.restart.as_str() {
            "on-failure" => Some(RestartPolicy::OnFailure),
            "always" => Some(RestartPolicy::Always),
            _ => None,
        },
    };
    body.check().map_err(|e| anyhow::anyhow!("{e}"))?;
    let deployment = Deployment::sign(&client.key, body);
    let response = client.call(Command::Deploy {
        deployment,
        module,
        volume_chunks,
        on,
        pinned: args.pin,
    })?;
    let ControlResponse::Deployed { vessel, node } = response else {
        bail!("unexpected answer to `deploy`: {response:?}");
    };
    if args.json {
        out(serde_json::json!({ "vessel": vessel.to_hex(), "node": node }))?;
    } else {
        eprintln!("meshnode: deployed on {node}");
        for p in &args.ports {
            eprintln!("meshnode: its clients connect to port {p} of any node");
        }
        out(vessel)?;
    }
    Ok(0)
}

/// The module's file name without `.wasm`, or the first free `NAME-N`
/// if a live vessel holds it (`control::deploy_names`).
fn default_name(client: &mut Client, module: &std::path::Path) -> Result<String> {
    let stem = module
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "vessel".into());
    let ControlResponse::Vessels(rows) = client.call(Command::Ps)? else {
        bail!("unexpected answer to `ps` (choosing a free name)");
    };
    Ok(super::deploy_names::free_name(&rows, &stem))
}

/// `meshnode ps` (rendering: `control::tables`).
pub fn run_ps(args: PsArgs) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    let ControlResponse::Vessels(mut rows) = client.call(Command::Ps)? else {
        bail!("unexpected answer to `ps`");
    };
    // Names for the NODE column; a node older than names lists none.
    let peers = match client.call(Command::Peers { all: false }) {
        Ok(ControlResponse::Peers(p)) => p,
        _ => Vec::new(),
    };
    let nodes = tables::NodeLabels::new(&peers);
    if let Some(wanted) = &args.vessel {
        rows.retain(|v| v.name == *wanted || v.id.to_hex().starts_with(wanted.as_str()));
        if rows.is_empty() {
            bail!("no vessel `{wanted}` in the mesh (give its name, id or id prefix, as `meshnode ps` lists them)");
        }
    }
    if args.json {
        out(serde_json::to_string_pretty(&tables::ps_json(
            &rows, &nodes,
        ))?)?;
        return Ok(0);
    }
    if args.vessel.is_some() {
        for (i, v) in rows.iter().enumerate() {
            if i > 0 {
                out("")?;
            }
            for line in tables::vessel_details(v, &nodes) {
                out(line)?;
            }
        }
        return Ok(0);
    }
    let before = rows.len();
    if !args.all {
        rows.retain(|v| !tables::is_ended(&v.state));
    }
    for line in tables::ps_table(&rows, &nodes, args.output) {
        out(line)?;
    }
    if let Some(footer) = tables::hidden_footer(before - rows.len()) {
        out(footer)?;
    }
    Ok(0)
}

/// How often `migrate` asks how the move goes.
const MIGRATE_POLL: Duration = Duration::from_millis(50);

/// The JSON shape of `migrate --json`.
pub fn migration_json(r: &MigrationReport) -> serde_json::Value {
    serde_json::json!({
        "vessel": r.vessel.to_hex(),
        "from": r.from,
        "to": r.to,
        "phase": r.phase,
        "rounds": r.rounds,
        "bytes_sent": r.bytes_sent,
        "chunks_sent": r.chunks_sent,
        "chunks_skipped": r.chunks_skipped,
        "final_chunks_sent": r.final_chunks_sent,
        "downtime_ms": r.downtime_us.map(|us| us as f64 / 1000.0),
        "total_ms": r.total_ms,
        "error": r.error.as_ref().map(|e| &e.detail),
        "error_kind": r.error.as_ref().map(|e| failure_kind_name(e.kind)),
        "error_code": r.error.as_ref().and_then(|e| match e.kind {
            FailureKind::Refused(code) => Some(code.name()),
            _ => None,
        }),
    })
}

/// A failure's kind as `migrate --json` names it.
fn failure_kind_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::Refused(_) => "refused",
        FailureKind::Unreachable => "unreachable",
        FailureKind::VesselEnded => "vessel-ended",
        FailureKind::Local => "local",
    }
}

/// `meshnode migrate`.
pub fn run_migrate(args: MigrateArgs) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    let to = client.node_arg(&args.to)?;
    let ControlResponse::Migration(mut report) =
        client.call_through_failover(Command::Migrate {
            vessel: args.vessel.clone(),
            to,
        })?
    else {
        bail!("unexpected answer to `migrate`");
    };
    let mut progress = super::migrate_progress::Progress::new();
    while !report.phase.is_over() {
        progress.show(&report);
        std::thread::sleep(MIGRATE_POLL);
        let ControlResponse::Migration(r) = client.call(Command::MigrationStatus {
            vessel: report.vessel,
            source: report.from.clone(),
        })?
        else {
            bail!("unexpected answer to a migration status");
        };
        report = r;
    }
    progress.show(&report);
    progress.finish();
    if args.json {
        out(migration_json(&report))?;
    }
    if let Some(e) = &report.error {
        bail!(
            "migration of {} aborted; it runs on at {}: {e}",
            report.vessel,
            report.from
        );
    }
    if !args.json {
        out(format_args!(
            "migrated {} to {}: downtime {:.1} ms, total {} ms, {} pre-copy rounds, {} bytes sent, {} chunks sent ({} in the pause), {} chunks skipped",
            report.vessel,
            report.to,
            report.downtime_us.unwrap_or(0) as f64 / 1000.0,
            report.total_ms,
            report.rounds,
            report.bytes_sent,
            report.chunks_sent,
            report.final_chunks_sent,
            report.chunks_skipped
        ))?;
    }
    Ok(0)
}

/// `meshnode stop`.
pub fn run_stop(args: StopArgs) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    client.call_through_failover(Command::Stop {
        vessel: args.vessel.clone(),
    })?;
    eprintln!("meshnode: stopped {}", args.vessel);
    Ok(0)
}

/// `meshnode checkpoint`: the image hash on stdout, the rest on stderr.
pub fn run_checkpoint(args: CheckpointArgs) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    let ControlResponse::Checkpointed(r) = client.call_through_failover(Command::Checkpoint {
        vessel: args.vessel.clone(),
    })?
    else {
        bail!("unexpected answer to `checkpoint`");
    };
    if args.json {
        out(serde_json::json!({
            "vessel": r.vessel.to_hex(),
            "node": r.node,
            "image": r.image.to_hex(),
            "pause_us": r.pause_us,
            "changed_chunks": r.changed_chunks,
            "compared_chunks": r.compared_chunks,
        }))?;
        return Ok(0);
    }
    out(r.image.to_hex())?;
    eprintln!(
        "meshnode: checkpointed {} on {}: paused {:.1} ms, {} chunks of memory changed since the last one",
        args.vessel,
        r.node,
        r.pause_us as f64 / 1000.0,
        r.changed_chunks
    );
    Ok(0)
}

/// `meshnode pin` and `meshnode unpin`.
pub fn run_pin(args: PinArgs, pinned: bool) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    let command = if pinned {
        Command::Pin {
            vessel: args.vessel.clone(),
        }
    } else {
        Command::Unpin {
            vessel: args.vessel.clone(),
        }
    };
    client.call_through_failover(command)?;
    if pinned {
        eprintln!(
            "meshnode: pinned {}: placement will not move it (`meshnode migrate` still can)",
            args.vessel
        );
    } else {
        eprintln!(
            "meshnode: unpinned {}: placement may move it nearer its clients",
            args.vessel
        );
    }
    Ok(0)
}

/// How often `drain` asks how the drain goes.
const DRAIN_POLL: Duration = Duration::from_millis(200);

/// Exit status of a drain that left pinned vessels on the node.
pub const DRAIN_PINNED_STAYED_EXIT: i32 = 3;

/// The JSON shape of `drain --json`.
pub fn drain_json(r: &DrainReport) -> serde_json::Value {
    serde_json::json!({
        "node": r.node,
        "done": r.done,
        "vessels": r.vessels.iter().map(|i| serde_json::json!({
            "id": i.id.to_hex(),
            "name": i.name,
            "to": i.to,
            "state": i.state,
        })).collect::<Vec<_>>(),
    })
}

/// `meshnode drain`.
pub fn run_drain(args: DrainArgs) -> Result<i32> {
    let mut client = Client::connect(&args.target)?;
    let node = client.node_arg(&args.drained)?;
    let ControlResponse::Drain(mut report) = client.call(Command::Drain {
        node,
        include_pinned: args.include_pinned,
    })?
    else {
        bail!("unexpected answer to `drain`");
    };
    eprintln!(
        "meshnode: draining {}: {} vessel(s)",
        report.node,
        report.vessels.len()
    );
    let mut shown: std::collections::HashMap<VesselId, String> = Default::default();
    loop {
        for i in &report.vessels {
            let line = match (&i.to, i.state.as_str()) {
                (_, "waiting") => continue,
                (Some(to), "moving") => format!("moving {} ({}) to {to}", i.name, i.id),
                (_, state) => format!("{} ({}): {state}", i.name, i.id),
            };
            if shown.get(&i.id) != Some(&line) {
                eprintln!("  {line}");
                shown.insert(i.id, line);
            }
        }
        if report.done {
            break;
        }
        std::thread::sleep(DRAIN_POLL);
        let status = client.call(Command::DrainStatus {
            node: report.node.clone(),
        });
        let ControlResponse::Drain(r) = super::drain_cli::undrained_meanwhile(status, &report)?
        else {
            bail!("unexpected answer to a drain status");
        };
        report = r;
    }
    if args.json {
        out(drain_json(&report))?;
    } else {
        for i in &report.vessels {
            match (i.state.as_str(), &i.to) {
                ("moved", Some(to)) => out(format_args!("{} {} -> {to}", i.id, i.name))?,
                // It ended before or during its move: nothing runs here.
                ("ended", _) => out(format_args!("{} {} ended", i.id, i.name))?,
                (state, _) => out(format_args!("{} {} stays: {state}", i.id, i.name))?,
            }
        }
    }
    let failed = report
        .vessels
        .iter()
        .filter(|i| i.state.starts_with("failed"))
        .count();
    let pinned = report
        .vessels
        .iter()
        .filter(|i| i.state == "pinned")
        .count();
    if failed > 0 {
        bail!(
            "{failed} vessel(s) could not be moved off {} (each says why above)",
            report.node
        );
    }
    if pinned > 0 {
        eprintln!(
            "meshnode: {pinned} pinned vessel(s) stay on {}: `meshnode unpin` them, or drain again with --include-pinned",
            report.node
        );
        return Ok(DRAIN_PINNED_STAYED_EXIT);
    }
    Ok(0)
}
