//! The `meshnode` command line.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use protocol::duration::parse_duration;

use crate::dock::services::tcp::TcpServices;
use crate::dock::services::ServiceHub;
use crate::dock::wasi::{DirMapping, Services, WasiCtx, WasiOptions};
use crate::dock::{self, snapshot, DockConfig, Exit, Mode, Slice, Vessel, VesselModule};
use crate::store::{ChunkStore, MemChunks};

#[derive(Parser, Debug)]
#[command(
    name = "meshnode",
    // The release marker's version (`upgrade`): what `upgrade roll`
    // checks a new binary prints.
    version = crate::upgrade::running_version(),
    about = "Run unmodified WASI programs across a fleet of small machines, and move them while they run.",
    long_about = "meshnode runs WebAssembly (WASI preview1) programs as vessels in a wasmi-based dock, \
                  captures them at migration points and resumes them elsewhere, and joins \
                  machines into a mesh.\n\
                  \n\
                  Try it: `meshnode demo` starts three local nodes and moves a running vessel \
                  between them."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a WASI command module here, in the foreground.
    ///
    /// Options come before the module; everything after the module is passed
    /// to the program as its arguments. stdin, stdout and stderr are this
    /// process's own. meshnode exits with the program's exit code; a trap
    /// exits with 134 and one line on stderr naming the trap and the wasm
    /// function it happened in.
    Run(RunArgs),

    /// Instrument a module with migration points (what the dock does before
    /// it runs a vessel), and write the result.
    ///
    /// The output is deterministic: the same input always gives the same
    /// bytes. A module that uses a feature the rewriter does not support is
    /// refused with an error naming the feature and the function.
    Rewrite(RewriteArgs),

    /// Continue a vessel from a snapshot taken by `run --checkpoint-…` or a
    /// node's checkpoint (`meshnode checkpoint`), on this machine or
    /// another (any CPU). Exits with the program's exit code.
    Resume(ResumeArgs),

    /// Start a node: join the mesh, find peers, gossip status, take commands.
    ///
    /// Needs no configuration: the first start creates the node's key and
    /// config in its data directory and enrols the node with your user key
    /// (or with --join TOKEN on another device). Ctrl-C stops it.
    Start(crate::daemon::StartArgs),

    /// List the mesh's members, the node you talk to first (STATE
    /// `self`): name, PeerId, state, RTT, arch, load, memory, vessels.
    ///
    /// The default table fits 100 columns (short PeerIds, which commands
    /// accept as prefixes); `-o wide` shows full PeerIds, the OS and an
    /// address. A name that more than one node claims names none of them,
    /// and a line under each claimant says so.
    ///
    /// RTT is the measured one; where there is none, the default table
    /// shows the estimate from the two nodes' network coordinates, marked
    /// `~`. `-o wide` shows the estimate beside the measured RTT (EST RTT),
    /// and `--json` gives both (`rtt_ms`, `estimated_rtt_ms`).
    ///
    /// STATE is what this node's failure detection says: `up`; `unreachable
    /// 4.2s` when nothing (ping, gossip, answer) was heard from the peer for
    /// 3 s (1 s after a failed connection); `down 41s` after 30 s, or when
    /// it was revoked. The load, memory and vessels of a peer that is not up
    /// are its last status: shown on a line below as stale, with its age.
    /// It only suspects: a node's vessels never change owner because of it.
    Peers(crate::control::cli::PeersArgs),

    /// Print the public half of your user key (the key is created on first
    /// use and stays in its file).
    ///
    /// The public key is safe to share: another mesh's owner runs
    /// `meshnode trust add PUBLIC_KEY` with it to let you command their
    /// nodes. The private key never leaves ~/.config/meshnode/user.key.
    Keygen(crate::control::cli::KeygenArgs),

    /// Print a one-time token that enrols another device (`meshnode start --join TOKEN`).
    Invite(crate::control::cli::InviteArgs),

    /// Manage the user keys a node trusts.
    Trust(crate::control::cli::TrustArgs),

    /// Revoke a node (a stolen or lost board) mesh-wide, signed by your user
    /// key. Lists the nodes it enrolled: `meshnode endorse` the ones you keep.
    Revoke(crate::control::cli::RevokeArgs),

    /// Keep nodes a revoked node enrolled: sign a certificate for each with
    /// your user key, gossiped mesh-wide.
    Endorse(crate::control::cli::EndorseArgs),

    /// See it work: start a small mesh of local nodes, deploy a vessel, and
    /// move it from node to node while it runs, showing each step.
    ///
    /// Uses a scratch directory and a scratch user key; your own keys, data
    /// and nodes are not touched. Takes about 15 seconds.
    Demo(crate::demo::DemoArgs),

    /// Run a WASI program on the mesh, as a vessel; prints its id.
    ///
    /// The module and the volumes' files are uploaded from this machine; the
    /// deployment is signed with your user key. The vessel's stdout and
    /// stderr go to its log (`meshnode logs`); stdin is empty.
    Deploy(crate::control::vessel_cli::DeployArgs),

    /// List every vessel in the mesh: id, name, node, state, uptime,
    /// replicas, and why it is where it is.
    ///
    /// The default table fits 100 columns: ids cut to 8 digits (commands
    /// accept id prefixes), nodes by name, a failure as `trapped` or
    /// `failed CODE`, long cells cut with …. `-o wide` shows full ids and
    /// PeerIds, migrations and checkpoint age; `ps VESSEL` shows one vessel
    /// whole (a trap's full message). UPTIME is the time the vessel has run
    /// since it was deployed, across its moves.
    ///
    /// WHY is placement's latest judgement on the node that hosts it, e.g.
    /// "pinned", "deployed here; no client traffic yet", "nearest to its
    /// clients: 5 ms here vs 80 ms at …", "… is nearer its clients …:
    /// moving if it holds (2/3)", "cool-down 12 s after a move (drained
    /// from …)". --json gives it as `why` (and how the vessel got there as
    /// `reason`).
    ///
    /// A vessel whose host is unreachable or down is listed from the
    /// host's last status, and WHY says what happens to it: "host
    /// unreachable 2.1 s, failing over to 12D3KooW…" (the replica that
    /// takes it over), or why it cannot fail over by itself (no lease:
    /// fewer than 3 voters; this side reaches only a minority of its
    /// voters; no replica) and the `meshnode recover … --force` that
    /// decides by hand. `ps` never waits on a silent host.
    Ps(crate::control::vessel_cli::PsArgs),

    /// Print a vessel's stdout and stderr, wherever it runs (-f follows it
    /// across migrations, where no line is lost or repeated, and across
    /// crashes of its node, where it marks what was rolled back).
    ///
    /// On a vessel whose host is unreachable or down it prints the log in
    /// the newest checkpoint one of its replicas holds, and says on stderr
    /// that it is as of that checkpoint (what the vessel printed after it
    /// is not there); without a replica it fails at once and says why. -f
    /// follows it there until the vessel runs again on the replica that
    /// takes it over, then from that node; with nothing to follow it says
    /// so on stderr and retries for up to 2 minutes.
    Logs(crate::control::vessel_cli::LogsArgs),

    /// Move a running vessel to another node, live; prints downtime, bytes
    /// and chunks sent and chunks skipped.
    ///
    /// While it runs, a progress bar (in a terminal; plain lines otherwise)
    /// shows the pre-copy round under way or the final send, the MiB sent
    /// so far, and how many of the chunks that step sends have gone.
    Migrate(crate::control::vessel_cli::MigrateArgs),

    /// Stop a vessel.
    ///
    /// On a vessel whose host is unreachable or down: while a replica takes
    /// it over (`ps`: "failing over to …"), it says so and waits for the
    /// new host, at most 20 s, then stops it there; if it cannot fail over
    /// by itself, it fails at once and says why and what to do (`meshnode
    /// recover … --force`). So do `pin`, `unpin`, `migrate` and
    /// `checkpoint`.
    Stop(crate::control::vessel_cli::StopArgs),

    /// Take a durable checkpoint of a running vessel now, and print its
    /// image hash.
    ///
    /// Nodes checkpoint every vessel on their own, once a second by default
    /// (config.toml `checkpoint_every_ms`, `deploy --checkpoint-every`):
    /// after a crash or a power cut a node resumes each vessel from its
    /// newest checkpoint, with its log and volumes rolled back to match.
    /// Use this before something risky, or to get an image for
    /// `meshnode resume --image`. `meshnode ps` shows each vessel's
    /// checkpoint age.
    ///
    /// Example: meshnode checkpoint sensor-reader
    Checkpoint(crate::control::vessel_cli::CheckpointArgs),

    /// Keep a vessel where it runs: placement never moves it automatically.
    ///
    /// Each node moves the vessels it hosts to the node nearest their
    /// clients (see `placement_*` in the node's config.toml). A pinned
    /// vessel is left out: use it for a vessel that must stay near a device
    /// or a mount. The pin belongs to the vessel: it survives migrations and
    /// restarts. `meshnode migrate` still moves a pinned vessel (by hand,
    /// keeping the pin); `meshnode drain` leaves it where it is unless
    /// --include-pinned. `meshnode ps` shows "pinned" as its WHY.
    ///
    /// Example: meshnode pin sensor-reader
    Pin(crate::control::vessel_cli::PinArgs),

    /// Let placement move a pinned vessel again (see `meshnode pin`).
    ///
    /// Example: meshnode unpin sensor-reader
    Unpin(crate::control::vessel_cli::PinArgs),

    /// Move every vessel off a node, e.g. before maintenance.
    ///
    /// The node's running vessels move one at a time, live, each to the
    /// other member nearest its clients that has room for it (with no
    /// clients yet: the one running the fewest vessels). Progress is shown
    /// as it goes; at the end each vessel is listed with where it went.
    ///
    /// Pinned vessels stay where they are, and drain then exits with
    /// status 3 so that a script sees the node is not empty; --include-pinned
    /// moves them too (they stay pinned on their new node). A node that
    /// refuses a vessel (full, a missing mount) or fails mid-move is passed
    /// over for the next best, up to three; a vessel no node takes keeps
    /// running on the node, and drain exits with status 1.
    ///
    /// Once drained, the node takes no vessels from placement (its status
    /// says so) until it restarts or `meshnode undrain`; a deploy or a
    /// migrate by hand still can put vessels on it. Vessels that have ended
    /// are not moved: their logs stay on the node. A vessel that ends
    /// before or during its move is listed as `ended`: it counts as done,
    /// and drain exits 0 when nothing is left running on the node.
    ///
    /// A drain is done by the drained node itself. Of a node that is
    /// unreachable or down, drain moves nothing itself: it reports, as it
    /// goes, what the mesh does with each vessel the node last said it ran:
    /// "failing over to 12D3KooW…" while its replica takes it over through
    /// the lease (no sooner than the lease allows), then "-> 12D3KooW…";
    /// or why it cannot fail over by itself (no replica, fewer than 3
    /// voters, a minority of its voters in reach) and the `meshnode
    /// recover … --force` that decides by hand. It waits at most 20 s from
    /// the node's silence for a takeover, then exits with status 1 if a
    /// vessel did not move.
    ///
    /// Example: meshnode drain kitchen-pi   (a name, a PeerId or its prefix,
    /// or `self` for the node you talk to)
    Drain(crate::control::vessel_cli::DrainArgs),

    /// Run a vessel whose host is gone on one of its replicas, when the
    /// mesh cannot decide to by itself.
    ///
    /// A replicated vessel fails over by itself only with a majority of
    /// its voters (at least 3: its host, its replicas, nearby members).
    /// With fewer (a mesh of 2, or deployed before the third member
    /// joined), or on the minority side of a partition, it does not, and
    /// `meshnode ps` says so and names this command. PEER runs the vessel
    /// from the newest checkpoint it holds of it, at a higher epoch; the
    /// vessel loses what it did after that checkpoint.
    ///
    /// The risk: nothing here can tell a dead host from one that is only
    /// cut off. If the old host still runs (a partition, not a death), the
    /// vessel runs twice until the old host hears of the new epoch: PEER
    /// shows it a certificate of the forced epoch as soon as it is heard
    /// from again, and the old host then stops and fences its copy for good.
    /// What the losing copy did meanwhile (its writes, what its clients
    /// saw) is lost. Use it only when you know the host is dead, or accept
    /// that.
    ///
    /// Refused without --force; if PEER holds no replica of the vessel; while
    /// PEER hears from the vessel's host (use `migrate` or `stop`); and while
    /// PEER still grants the host the vessel's lease (it runs out within 2 s).
    ///
    /// Example: meshnode recover kv --on garage-pi --force
    Recover(crate::control::recover_cli::RecoverArgs),

    /// End a node's drain without restarting it.
    ///
    /// The node takes vessels from placement again. Vessels the drain has
    /// not moved yet stay where they are (listed as "stays: undrained");
    /// a move under way finishes. Refused (`not-draining`) when the node
    /// is not being drained.
    ///
    /// Example: meshnode undrain self
    Undrain(crate::control::drain_cli::UndrainArgs),
    /// One screen about the node you talk to and the mesh: version,
    /// uptime, members up and unreachable, vessels here and in the mesh,
    /// disk and memory against their budgets, the last migrations and
    /// placement decisions with their reasons, and warnings.
    ///
    /// Exits 0 when the node is healthy and 2 when it is unhealthy (1: no
    /// answer, or another error), so that a script, systemd or an upgrade
    /// can use it as a health check. Unhealthy: the event loop lags more
    /// than 2 s; the store exceeds its disk budget; no member is reachable
    /// while members exist; a vessel this node owns is stuck (migrating,
    /// waiting or held for over 2 minutes); the node is revoked or not
    /// enrolled. --json gives the same report.
    Status(crate::control::status_cli::StatusArgs),

    /// Print a one-time URL that opens the node's web dashboard, logged in.
    ///
    /// The dashboard (http://127.0.0.1:7680/ by default; `meshnode status`
    /// shows the address) shows the mesh live: nodes, links with RTT, where
    /// each vessel runs and its moves. Vessels' logs and placement's
    /// reasons need a session: the URL carries a login signed by your user
    /// key for this node, valid once and for 5 minutes.
    Dashboard(crate::control::status_cli::DashboardArgs),

    /// Signed rolling upgrades through the mesh: publish a release, roll
    /// it out one node at a time, list or roll back.
    ///
    /// Example: meshnode upgrade publish ./meshnode-x86_64 ./meshnode-aarch64
    /// && meshnode upgrade roll
    Upgrade(crate::control::upgrade_cli::UpgradeArgs),
    /// Remove an ended vessel (stopped, exited, trapped, failed) and its
    /// logs, wherever its records are.
    ///
    /// Refused while the vessel runs: `meshnode stop` it first. The node
    /// that holds its newest record deletes it (record, log, checkpoints,
    /// volumes), then every member deletes its own copies (a node it left,
    /// a replica). What stays is a tombstone signed by your user key under
    /// a new epoch, so that no stale copy (a restarted old host, a replica,
    /// a late migration) brings the vessel back. A node that was away is
    /// told when it is next seen naming the vessel. Tombstones are kept
    /// 30 days, at most 4096 per node (docs/protocol.md).
    Rm(crate::control::rm_cli::RmArgs),

    /// List a vessel's volumes: guest path, size of their files on the
    /// host, files and directories, wherever the vessel is.
    ///
    /// Volumes are the directories given with `deploy --volume GUEST=DIR`:
    /// they belong to the vessel and travel with it. `meshnode cp` copies
    /// their files out.
    Volumes(crate::control::volume_cli::VolumesArgs),

    /// Copy a file or a directory out of a vessel's volume:
    /// `meshnode cp counter:/data/out.txt ./out.txt`.
    ///
    /// The path is the one the vessel sees (`meshnode volumes` lists the
    /// volumes' guest paths); `..` and paths outside every volume are
    /// refused, and symlinks are not followed. It works from wherever the
    /// vessel runs (or ended), through the node you talk to, in pages of
    /// 1 MiB, so a large file is never held whole. A directory is copied
    /// with everything under it (at most 10,000 entries at once: copy its
    /// subdirectories one by one beyond that). The files are read as they
    /// are: a running vessel may be writing one meanwhile (`meshnode stop`
    /// it first for a consistent copy).
    Cp(crate::control::volume_cli::CpArgs),
}

#[derive(Args, Debug)]
pub struct RewriteArgs {
    /// The module to instrument.
    pub input: PathBuf,

    /// Where to write the instrumented module.
    #[arg(short, long, value_name = "OUT.wasm")]
    pub output: PathBuf,

    /// Print what was done: functions instrumented out of the total,
    /// migration points, and the code-size ratio.
    #[arg(long)]
    pub stats: bool,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Preopen a host directory for the program, as HOST or HOST::GUEST
    /// (the guest sees it at GUEST, or at HOST when GUEST is left out).
    /// Repeatable. The program can never reach outside these directories.
    #[arg(long = "dir", value_name = "HOST[::GUEST]")]
    pub dirs: Vec<String>,

    /// Set an environment variable for the program, as KEY=VALUE, or KEY to
    /// pass this process's value of KEY. Repeatable. The program sees no
    /// other variables.
    #[arg(long = "env", value_name = "KEY[=VALUE]")]
    pub envs: Vec<String>,

    /// Give the program a listening TCP socket on HOST:PORT, as wasmtime's
    /// --tcplisten does. Repeatable. The sockets are the program's
    /// descriptors 3, 4, ... in the order given, before the --dir
    /// directories; it serves clients with accept, recv, send and poll. With
    /// port 0 the OS picks a port, printed on stderr. The program never holds
    /// the host socket, so it can still be captured and moved.
    #[arg(long = "tcplisten", value_name = "HOST:PORT")]
    pub tcplisten: Vec<String>,

    /// Cap on the program's linear memory, all its memories together, e.g.
    /// 64MiB, 1GiB or a number of bytes. Growing past it fails inside the
    /// program (malloc returns NULL); a module whose memories' declared
    /// minimums are already over it is refused.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = parse_size)]
    pub max_memory: usize,

    /// Cap on the wasm call depth, in frames. A deeper recursion traps with
    /// "call stack exhausted".
    #[arg(long, value_name = "FRAMES", default_value_t = dock::DEFAULT_MAX_CALL_DEPTH)]
    pub max_call_depth: usize,

    /// Cap on the interpreter's value stack, e.g. 256MiB.
    #[arg(long, value_name = "SIZE", default_value = "256MiB", value_parser = parse_size)]
    pub max_value_stack: usize,

    /// Instructions (fuel units) per slice. Between slices the dock can
    /// schedule other vessels and take snapshots.
    #[arg(long, value_name = "FUEL", default_value_t = dock::DEFAULT_FUEL_SLICE, value_parser = clap::value_parser!(u64).range(1..))]
    pub fuel_slice: u64,

    /// Run without fuel metering (not preemptible). Only for measuring what
    /// fuel slicing costs.
    #[arg(long)]
    pub no_fuel: bool,

    /// Run the module exactly as given, without migration points. It cannot
    /// be captured; this exists to measure what migratability costs.
    #[arg(long, conflicts_with_all = ["checkpoint_after", "checkpoint_at_point", "migrate_every"])]
    pub no_rewrite: bool,

    #[command(flatten)]
    pub checkpoint: CheckpointArgs,

    /// Storm mode: at every Nth migration point, unwind, serialize the whole
    /// vessel to bytes, drop it (store, instance, every host handle) and
    /// resume it from those bytes alone, in this process.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with_all = ["checkpoint_after", "checkpoint_at_point"])]
    pub migrate_every: Option<u32>,

    /// With --migrate-every: stop migrating after K migrations and run on.
    #[arg(long, value_name = "K", requires = "migrate_every")]
    pub max_migrations: Option<u64>,

    /// The WASI command module (.wasm) to run.
    pub module: PathBuf,

    /// Arguments passed to the program.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// When to stop a vessel and write a snapshot of it.
#[derive(Args, Debug, Clone, Default)]
pub struct CheckpointArgs {
    /// Capture the vessel at its first migration point after DURATION of run
    /// time (e.g. 500ms, 2s, 1m), write the snapshot into --snapshot-dir,
    /// print its hash on stderr and exit 0.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub checkpoint_after: Option<std::time::Duration>,

    /// Capture the vessel at its Nth migration point (loop headers and
    /// recursive calls count), deterministically. Writes the snapshot as
    /// --checkpoint-after does.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "checkpoint_after")]
    pub checkpoint_at_point: Option<u32>,

    /// The chunk store to write snapshots into (created if missing).
    /// Needed with --checkpoint-… on `run`; `resume` defaults to the store it
    /// resumed from.
    #[arg(long, value_name = "DIR")]
    pub snapshot_dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// Map a guest directory of the snapshot to a host directory, as
    /// HOST::GUEST. Every preopened directory of the vessel needs one; it may
    /// be a different host path from where the vessel ran before.
    #[arg(long = "dir", value_name = "HOST::GUEST")]
    pub dirs: Vec<String>,

    /// Cap on the program's memory, all its memories together, e.g. 64MiB.
    /// It applies whatever the snapshot says it ran under: a snapshot whose
    /// memory is larger is refused before anything is allocated.
    #[arg(long, value_name = "SIZE", default_value = "512MiB", value_parser = parse_size)]
    pub max_memory: usize,

    /// Cap on the wasm call depth, in frames; a snapshot with more frames
    /// is refused.
    #[arg(long, value_name = "FRAMES", default_value_t = dock::DEFAULT_MAX_CALL_DEPTH)]
    pub max_call_depth: usize,

    #[command(flatten)]
    pub checkpoint: CheckpointArgs,

    /// The chunk store that holds the snapshot, or a node's data directory
    /// (its `store`; stop the node first, a store is open in one process
    /// at a time).
    pub store: PathBuf,

    /// The snapshot's hash, as printed when it was taken: by `run
    /// --checkpoint-…`, or by `meshnode checkpoint` (a node's checkpoint
    /// image; its volumes are unpacked into the --dir given for each).
    pub hash: String,
}

/// Parses `512MiB`, `1GiB`, `64KiB`, `1.5GiB`, or a plain number of bytes.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let unit_bytes: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024.0 * 1024.0,
        "g" | "gb" | "gib" => 1024.0 * 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}` (use KiB, MiB or GiB)"
            ))
        }
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size (try 512MiB)"))?;
    let bytes = n * unit_bytes;
    if !(0.0..=(usize::MAX as f64)).contains(&bytes) {
        return Err(format!("`{s}` is too large"));
    }
    Ok(bytes as usize)
}

fn parse_dir(spec: &str) -> Result<DirMapping> {
    let (host, guest) = match spec.split_once("::") {
        Some((h, g)) => (h, g),
        None => (spec, spec),
    };
    if host.is_empty() || guest.is_empty() {
        bail!("--dir {spec}: expected HOST or HOST::GUEST");
    }
    let host = PathBuf::from(host);
    if !host.is_dir() {
        bail!("--dir {spec}: {} is not a directory", host.display());
    }
    Ok(DirMapping {
        host,
        guest: guest.to_string(),
    })
}

fn parse_env(spec: &str) -> Result<Vec<u8>> {
    match spec.split_once('=') {
        Some(("", _)) => bail!("--env {spec}: the variable name is empty"),
        Some(_) => Ok(spec.as_bytes().to_vec()),
        None => match std::env::var_os(spec) {
            Some(v) => {
                use std::os::unix::ffi::OsStrExt;
                let mut kv = spec.as_bytes().to_vec();
                kv.push(b'=');
                kv.extend_from_slice(v.as_bytes());
                Ok(kv)
            }
            None => bail!("--env {spec}: not set in this environment (use KEY=VALUE)"),
        },
    }
}

/// `meshnode run`: returns the process exit code.
pub fn run(args: RunArgs) -> Result<i32> {
    let config = DockConfig {
        max_memory_bytes: args.max_memory,
        max_call_depth: args.max_call_depth,
        max_value_stack_bytes: args.max_value_stack,
        fuel_slice: if args.no_fuel {
            None
        } else {
            Some(args.fuel_slice)
        },
        address_space_bytes: crate::dock::address_space::HOST_ADDRESS_SPACE_BOUND,
    };
    let dirs = args
        .dirs
        .iter()
        .map(|d| parse_dir(d))
        .collect::<Result<Vec<_>>>()?;
    let env = args
        .envs
        .iter()
        .map(|e| parse_env(e))
        .collect::<Result<Vec<_>>>()?;
    let mut argv = vec![args.module.to_string_lossy().as_bytes().to_vec()];
    argv.extend(args.args.iter().map(|a| a.as_bytes().to_vec()));

    let wants_snapshot =
        args.checkpoint.checkpoint_after.is_some() || args.checkpoint.checkpoint_at_point.is_some();
    if wants_snapshot && args.checkpoint.snapshot_dir.is_none() {
        bail!("--checkpoint-after and --checkpoint-at-point need --snapshot-dir DIR to write the snapshot into");
    }
    let bytes = dock::read_module_file(&args.module)?;
    let countdown = args.checkpoint.checkpoint_at_point.is_some() || args.migrate_every.is_some();
    let mode = if args.no_rewrite {
        Mode::Plain
    } else {
        Mode::Migratable { countdown }
    };
    let (engine, config, vm) =
        match VesselModule::prepare_with_engine(&config, &args.module, bytes.clone(), mode) {
            // A module the rewriter cannot instrument (it mutates tables, say)
            // still runs here, as given; it just cannot be captured. Only
            // when a capture was asked for is that an error.
            Err(dock::DockError::Rewrite { reason, .. })
                if !wants_snapshot && args.migrate_every.is_none() =>
            {
                eprintln!(
                    "meshnode: {}: note: running as given, not migratable: {reason}",
                    args.module.display()
                );
                VesselModule::prepare_with_engine(&config, &args.module, bytes, Mode::Plain)?
            }
            other => other?,
        };
    let tcp = if args.tcplisten.is_empty() {
        None
    } else {
        let tcp = TcpServices::bind(&args.tcplisten)?;
        for (name, local) in tcp.local_addrs() {
            if name.ends_with(":0") {
                eprintln!("meshnode: --tcplisten {name}: listening on {local}");
            }
        }
        Some(tcp)
    };
    let services = tcp.as_ref().map(|t| Services {
        hub: t.hub(),
        ports: t.services(),
    });
    let hub = services.as_ref().map(|s| s.hub.clone());
    let wasi = WasiCtx::new_with_services(
        WasiOptions {
            args: argv,
            env,
            dirs: dirs.clone(),
            stdio: Default::default(),
        },
        services,
    )
    .with_context(|| {
        format!(
            "{}: cannot set up the program's environment",
            args.module.display()
        )
    })?;
    let name = args.module.display().to_string();
    let vessel = match Vessel::new(&engine, &vm, wasi, &config) {
        // A module's start section runs while it is instantiated: a trap
        // there is reported and exits as any other.
        Err(dock::DockError::Trap(msg)) => return Ok(trap_exit(&name, &msg)),
        other => other.map_err(|e| anyhow::anyhow!("{name}: {e}"))?,
    };
    let result = match args.migrate_every {
        Some(n) => storm(
            &engine,
            &vm,
            vessel,
            &config,
            &dirs,
            hub,
            n,
            args.max_migrations,
            &name,
        ),
        None => drive(&vm, vessel, &config, &args.checkpoint, 0, &name),
    };
    if let Some(tcp) = tcp {
        // The program is gone: what it sent still reaches its clients,
        // then each connection gets a FIN.
        tcp.finish(SERVICES_FLUSH_TIMEOUT);
    }
    result
}

/// How long `meshnode run` waits, after the program ended, for the bytes it
/// sent to reach its clients.
const SERVICES_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The process exit status for a program's exit code. A process status has
/// 8 bits: a code above 255 would be silently truncated (256 would look like
/// success), so it becomes 1 with a line that says why, as wasmtime does.
fn exit_status(name: &str, code: u32) -> i32 {
    if code > 255 {
        eprintln!("meshnode: {name}: the program exited with {code}, which does not fit an exit status; exiting with 1");
        return 1;
    }
    code as i32
}

fn trap_exit(name: &str, msg: &str) -> i32 {
    eprintln!("meshnode: {name}: wasm trap: {msg}");
    134
}

/// Runs a vessel to its end, or to a checkpoint when one is asked for.
fn drive(
    vm: &VesselModule,
    mut vessel: Vessel,
    config: &DockConfig,
    checkpoint: &CheckpointArgs,
    points_before: u64,
    name: &str,
) -> Result<i32> {
    if let Some(n) = checkpoint.checkpoint_at_point {
        if !vessel.unwind_after_points(n) {
            bail!("{name}: --checkpoint-at-point needs a migratable vessel");
        }
    }
    let started = std::time::Instant::now();
    let mut requested = false;
    loop {
        match vessel.run_slice() {
            Slice::Exited(Exit::Code(code)) => {
                if checkpoint.checkpoint_after.is_some() || checkpoint.checkpoint_at_point.is_some()
                {
                    eprintln!("meshnode: {name}: the program ended before the checkpoint; no snapshot was taken");
                }
                return Ok(exit_status(name, code));
            }
            Slice::Exited(Exit::Trap(msg)) => return Ok(trap_exit(name, &msg)),
            Slice::Yielded => {
                if let Some(after) = checkpoint.checkpoint_after {
                    if !requested && started.elapsed() >= after {
                        requested = vessel.request_unwind();
                    }
                }
            }
            Slice::Unwound => {
                let points = points_before + checkpoint.checkpoint_at_point.map_or(0, u64::from);
                let capture = vessel.capture(points)?;
                let dir = checkpoint
                    .snapshot_dir
                    .as_ref()
                    .context("no --snapshot-dir to write the snapshot into")?;
                let mut store = ChunkStore::open(dir)?;
                let manifest = snapshot::to_manifest(&mut store, vm, &capture, config)?;
                let hash = store.put_manifest(&manifest)?;
                eprintln!("meshnode: snapshot {hash}");
                return Ok(0);
            }
        }
    }
}

/// Storm mode: migrate at every `n`th point, through bytes, in-process.
#[allow(clippy::too_many_arguments)]
fn storm(
    engine: &wasmi::Engine,
    vm: &VesselModule,
    mut vessel: Vessel,
    config: &DockConfig,
    dirs: &[DirMapping],
    hub: Option<std::sync::Arc<dyn ServiceHub>>,
    n: u32,
    max_migrations: Option<u64>,
    name: &str,
) -> Result<i32> {
    let mut migrations = 0u64;
    vessel.unwind_after_points(n);
    // stdout belongs to the program; the count goes to stderr.
    let report = |m: u64| eprintln!("meshnode: {name}: storm mode: {m} migrations");
    loop {
        match vessel.run_slice() {
            Slice::Exited(Exit::Code(code)) => {
                report(migrations);
                return Ok(exit_status(name, code));
            }
            Slice::Exited(Exit::Trap(msg)) => {
                report(migrations);
                return Ok(trap_exit(name, &msg));
            }
            Slice::Yielded => {}
            Slice::Unwound => {
                migrations += 1;
                let capture = vessel.capture(migrations * n as u64)?;
                // Everything goes through bytes: the manifest as CBOR, the
                // memory and module as chunks.
                let mut chunks = MemChunks::default();
                let manifest = snapshot::to_manifest(&mut chunks, vm, &capture, config)?;
                let (manifest_bytes, hash) = manifest.encode_and_hash();
                drop(capture);
                drop(vessel); // the Store, the instance and every host handle
                let decoded: protocol::snapshot::Manifest =
                    protocol::cbor::decode(&manifest_bytes)?;
                assert_eq!(
                    decoded.encode_and_hash().1,
                    hash,
                    "manifest changed in transit"
                );
                decoded.check()?;
                let capture = snapshot::capture_from_manifest(
                    &chunks,
                    &decoded,
                    config.max_memory_bytes as u64,
                )?;
                // Sockets continue against the same hub: what the state
                // holds plus what the hub still has is every byte, once.
                let wasi = WasiCtx::rebuild_with_hub(
                    decoded.wasi.clone(),
                    dirs,
                    Default::default(),
                    hub.clone(),
                )
                .with_context(|| {
                    format!("{name}: migration {migrations}: cannot rebuild WASI state")
                })?;
                vessel = Vessel::resume(engine, vm, &capture, wasi, config)
                    .with_context(|| format!("{name}: migration {migrations}"))?;
                if max_migrations.is_none_or(|k| migrations < k) {
                    vessel.unwind_after_points(n);
                }
            }
        }
    }
}

/// `meshnode resume`.
pub fn resume(args: ResumeArgs) -> Result<i32> {
    let hash = protocol::snapshot::Hash::from_hex(&args.hash)
        .with_context(|| format!("{}: not a snapshot hash (64 hex digits)", args.hash))?;
    let store_dir = store_dir_of(&args.store);
    let store = ChunkStore::open(&store_dir)?;
    let dirs = args
        .dirs
        .iter()
        .map(|d| {
            if !d.contains("::") {
                bail!("--dir {d}: expected HOST::GUEST (the guest path must match the snapshot's)");
            }
            parse_dir(d)
        })
        .collect::<Result<Vec<_>>>()?;
    let manifest = manifest_to_resume(&store, &hash, &dirs)?;
    // This command's limits, not the snapshot's (`manifest.limits` says
    // what it ran under, which a hostile snapshot can set to anything).
    let config = DockConfig {
        max_memory_bytes: args.max_memory,
        max_call_depth: args.max_call_depth,
        ..DockConfig::default()
    };
    snapshot::check_limits(&manifest, &config)
        .with_context(|| format!("snapshot {hash}: refused"))?;
    let (engine, config, vm) = snapshot::module_from_manifest(&config, &store, &manifest)?;
    let wasi =
        WasiCtx::rebuild(manifest.wasi.clone(), &dirs, Default::default()).with_context(|| {
            format!("snapshot {hash}: cannot re-create the vessel's files and directories")
        })?;
    let vessel = snapshot::resume_from_manifest(&engine, &vm, &store, &manifest, wasi, &config)
        .with_context(|| format!("snapshot {hash}"))?;
    // Closed (and unlocked) before the vessel runs: a checkpoint it takes
    // opens the store again, and a store is open once at a time.
    drop(store);
    let mut checkpoint = args.checkpoint.clone();
    if checkpoint.snapshot_dir.is_none() {
        checkpoint.snapshot_dir = Some(store_dir);
    }
    drive(
        &vm,
        vessel,
        &config,
        &checkpoint,
        manifest.points_passed,
        &format!("snapshot {hash}"),
    )
}

/// The store `resume` reads: the directory given, or a node data
/// directory's `store`.
fn store_dir_of(given: &Path) -> PathBuf {
    let inner = given.join("store");
    if given.join("node.key").exists() && inner.is_dir() {
        inner
    } else {
        given.to_path_buf()
    }
}

/// The snapshot a hash names: a manifest (`run --checkpoint-…`), or a
/// vessel image a node wrote (`meshnode checkpoint`, or its periodic
/// checkpoints), whose volumes are unpacked into the `--dir` host
/// directories given for their guest paths (each must be empty:
/// nothing there is overwritten).
fn manifest_to_resume(
    store: &ChunkStore,
    hash: &protocol::snapshot::Hash,
    dirs: &[DirMapping],
) -> Result<protocol::snapshot::Manifest> {
    let manifest_err = match store.get_manifest(hash) {
        Ok(m) => return Ok(m),
        Err(e) => e,
    };
    let Ok(doc) = store.get_image_doc(hash) else {
        return Err(manifest_err.into());
    };
    let image: protocol::vessel::VesselImage =
        protocol::cbor::decode(&doc).with_context(|| format!("image {hash}: does not decode"))?;
    image
        .check()
        .with_context(|| format!("image {hash}: malformed"))?;
    let protocol::vessel::Resume::Snapshot(_) = image.resume else {
        bail!("image {hash}: the vessel never ran (deploy its module instead)");
    };
    let manifest: protocol::snapshot::Manifest = protocol::cbor::decode(&image.manifest)
        .with_context(|| format!("image {hash}: its manifest does not decode"))?;
    for vol in &image.volumes {
        let Some(d) = dirs.iter().find(|d| d.guest == vol.guest) else {
            bail!(
                "image {hash}: its volume {} needs --dir HOST::{}, an empty host directory to unpack it into",
                vol.guest,
                vol.guest
            );
        };
        let empty = std::fs::read_dir(&d.host).map_or(true, |mut r| r.next().is_none());
        if !empty {
            bail!(
                "--dir {}::{}: not empty; the checkpoint's volume is unpacked there, so give an empty directory",
                d.host.display(),
                d.guest
            );
        }
        crate::vessel::image::unpack_volume(store, vol, &d.host)
            .map_err(|e| anyhow::anyhow!("image {hash}: volume {}: {e}", vol.guest))?;
    }
    eprintln!(
        "meshnode: resuming vessel {} ({}) from its checkpoint image {hash}",
        image.deployment.body.name,
        image.vessel()
    );
    Ok(manifest)
}

/// `meshnode rewrite`.
pub fn rewrite(args: RewriteArgs) -> Result<i32> {
    let bytes = read_module_bytes(&args.input)?;
    let out = wasm_rewriter::rewrite(&bytes, &wasm_rewriter::RewriteConfig::default())
        .with_context(|| format!("{}: cannot instrument", args.input.display()))?;
    std::fs::write(&args.output, &out.wasm)
        .with_context(|| format!("{}: cannot write", args.output.display()))?;
    if args.stats {
        let r = &out.report;
        let ratio = |after: u64, before: u64| {
            if before == 0 {
                1.0
            } else {
                after as f64 / before as f64
            }
        };
        println!(
            "functions instrumented: {} of {}",
            r.functions_instrumented, r.functions_total
        );
        println!("migration points:       {}", r.migration_points);
        println!(
            "code section:           {} -> {} bytes ({:.3}x)",
            r.code_section_bytes_before,
            r.code_section_bytes_after,
            ratio(r.code_section_bytes_after, r.code_section_bytes_before)
        );
        println!(
            "whole module:           {} -> {} bytes ({:.3}x)",
            bytes.len(),
            out.wasm.len(),
            ratio(out.wasm.len() as u64, bytes.len() as u64)
        );
    }
    Ok(0)
}

/// Reads a module file with the dock's size limit and magic check.
fn read_module_bytes(path: &std::path::Path) -> Result<Vec<u8>> {
    Ok(dock::read_module_file(path)?)
}
