//! Issue 14's WASI items: a stop or a node's shutdown reaches a vessel in
//! any blocking call (item 9), directory listings stay bounded (item 10),
//! and a node's data directory and keys are not readable by others
//! (item 6).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshnode::dock::services::{BufferHub, ServiceHub};
use meshnode::dock::wasi::{OutputSink, Services, Stdio, WasiCtx, WasiOptions};
use meshnode::dock::{DockConfig, Mode, Vessel, VesselModule};
use meshnode::vessel::lease_gate::LeaseGate;
use meshnode::vessel::log::VesselLog;
use meshnode::vessel::runner::{self, Command, Runner};
use protocol::limits::MAX_HUB_BUFFER_BYTES;
use protocol::vessel::VesselId;

use crate::mesh::{sigterm, stderr, Node, User, TIMEOUT};
use crate::support::compile_c;

/// The issue's bound: a stop or a shutdown reaches a vessel in a blocking
/// call, and its thread has ended and its memory is freed, within 100 ms.
const PROMPT: Duration = Duration::from_millis(100);

/// How long a program may take to reach the point a test wants.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// A nap of an hour: nothing but a stop or a shutdown ends it in a test.
const HOUR_MS: &str = "3600000";

/// The memory the sleeping vessels hold, in MiB: big enough that its
/// release shows plainly in the RSS, small enough to fill quickly in a
/// debug build.
const SLEEPER_MIB: u64 = 48;

/// What must come back to the node when the sleeper is stopped: most of
/// its memory (the allocator may keep a little).
const FREED_AT_LEAST_MIB: u64 = SLEEPER_MIB * 3 / 4;

/// A module prepared as the node prepares a deployment's.
struct Program {
    engine: wasmi::Engine,
    config: DockConfig,
    vm: VesselModule,
}

fn program(source: &str) -> Program {
    let wasm = compile_c(source, &[]);
    let (engine, config, vm) = VesselModule::prepare_with_engine(
        &DockConfig::default(),
        &wasm,
        std::fs::read(&wasm).unwrap(),
        Mode::Migratable { countdown: false },
    )
    .unwrap();
    Program { engine, config, vm }
}

type Output = Arc<Mutex<Vec<u8>>>;

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.lock().unwrap()).into_owned()
}

/// A runner of a fresh vessel of `p` with `args`, its stdout into `out`,
/// listening on `hub`'s service "s" when given.
fn start(p: &Program, id: u8, args: &[&str], out: &Output, hub: Option<&Arc<BufferHub>>) -> Runner {
    let services = hub.map(|h| Services {
        hub: h.clone() as Arc<dyn ServiceHub>,
        ports: vec!["s".to_string()],
    });
    let options = WasiOptions {
        args: args.iter().map(|a| a.as_bytes().to_vec()).collect(),
        stdio: Stdio {
            stdout: OutputSink::Buffer(out.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    let wasi = WasiCtx::new_with_services(options, services).unwrap();
    let vessel = Vessel::new(&p.engine, &p.vm, wasi, &p.config).unwrap();
    let log = Arc::new(Mutex::new(VesselLog::default()));
    runner::spawn(
        VesselId([id; 8]),
        vessel,
        PathBuf::new(),
        log,
        LeaseGate::open(),
    )
    .unwrap()
}

fn wait_for_output(out: &Output, line: &str) {
    let ok = runner::wait_until(RUN_LIMIT, || text(out).contains(line));
    assert!(ok, "the program never printed {line:?}: {:?}", text(out));
}

/// Stops the vessel; returns how long until its thread had ended and it
/// was reported stopped (at most `RUN_LIMIT`, which fails the test).
fn stop(runner: &Runner, what: &str) -> Duration {
    let asked = Instant::now();
    runner.send(Command::Stop).unwrap();
    let ended = runner::wait_until(RUN_LIMIT.min(Duration::from_secs(10)), || {
        runner.finished() && runner.exit().is_some()
    });
    let took = asked.elapsed();
    assert!(ended, "a stop did not end a vessel {what} ({took:?})");
    assert_eq!(runner.exit().unwrap().0, "stopped", "{what}");
    eprintln!("stop {what}: {took:?}");
    took
}

/// The resident memory of the process `pid` in bytes.
fn rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("no VmRSS in /proc/PID/status");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// The threads of `pid` whose name starts with `prefix`.
fn threads_named(pid: &str, prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// The vessel thread's name as the kernel shows it (15 bytes at most).
fn thread_name(id: u8) -> String {
    format!("vessel-{}", VesselId([id; 8]))[..15].to_string()
}

/// Goal (item 9): a stop reaches a vessel in a one-hour sleep, and within
/// 100 ms its thread has ended and its memory is back with the process;
/// it is reported stopped only then, which is what the node's vessel
/// limit counts (`Host::running_count`).
#[test]
fn a_stop_frees_a_vessel_in_a_one_hour_sleep_within_100_ms() {
    let _cpu = crate::support::shared_cpu();
    let p = program("node/tests/it/programs/napper.c");
    let out = Output::default();
    let mib = SLEEPER_MIB.to_string();
    let runner = start(&p, 0xa1, &["napper", &mib, "1", HOUR_MS], &out, None);
    wait_for_output(&out, "ready");
    assert_eq!(threads_named("self", &thread_name(0xa1)), 1);
    let before = rss_bytes("self");
    let took = stop(&runner, "in a one-hour sleep");
    assert!(took <= PROMPT, "the stop took {took:?}");
    assert_eq!(threads_named("self", &thread_name(0xa1)), 0);
    let freed = before.saturating_sub(rss_bytes("self"));
    assert!(
        freed >= FREED_AT_LEAST_MIB << 20,
        "only {} MiB of the stopped vessel's {SLEEPER_MIB} MiB came back",
        freed >> 20
    );
}

/// Feeds the echo service's client `id` without ever reading its answer,
/// until the service can neither send (the hub holds its full answer) nor
/// read (the hub holds a full request): it is then blocked in `sock_send`.
fn block_in_send(hub: &BufferHub, id: u64) {
    let block = vec![7u8; 64 * 1024];
    let deadline = Instant::now() + RUN_LIMIT;
    loop {
        let seen = hub.net_generation();
        let delivered = hub.net_deliver(id, &block).unwrap();
        let answer = hub.net_peek(id, usize::MAX).unwrap().data.len();
        if delivered == 0 && answer >= MAX_HUB_BUFFER_BYTES {
            return;
        }
        assert!(Instant::now() < deadline, "the echo never filled the hub");
        hub.net_wait(seen, Some(Duration::from_millis(20)));
    }
}

/// Goal (item 9): a stop reaches a service blocked in a read (`sock_recv`
/// with no data coming) and one blocked in a write (`sock_send` to a
/// client that never reads, a call that cannot unwind for a pause), each
/// within 100 ms, and their threads end.
#[test]
fn a_stop_ends_a_service_blocked_in_recv_or_in_send_within_100_ms() {
    let _cpu = crate::support::shared_cpu();
    let p = program("node/tests/it/services/echo.c");
    let hub = Arc::new(BufferHub::new());
    hub.net_add_service("s");
    let out = Output::default();
    let reading = start(&p, 0xa2, &["echo", "1000", "1"], &out, Some(&hub));
    hub.net_open("s", 1).unwrap();
    hub.net_deliver(1, b"hello").unwrap();
    let echoed = runner::wait_until(RUN_LIMIT, || {
        hub.net_peek(1, usize::MAX).unwrap().data == b"hello"
    });
    assert!(echoed, "the echo never answered");
    // Echoed, and nothing more comes: it waits in recv.
    let took = stop(&reading, "blocked in recv");
    assert!(took <= PROMPT, "the stop in recv took {took:?}");

    let hub = Arc::new(BufferHub::new());
    hub.net_add_service("s");
    let writing = start(&p, 0xa3, &["echo", "1000", "1"], &out, Some(&hub));
    hub.net_open("s", 1).unwrap();
    block_in_send(&hub, 1);
    let took = stop(&writing, "blocked in send");
    assert!(took <= PROMPT, "the stop in send took {took:?}");
}

/// Goal (item 9): when the host lets a vessel go (the node shuts down and
/// drops its runners, or forgets the vessel), a vessel blocked in a call
/// that cannot unwind ends too: its thread is gone within 100 ms.
#[test]
fn a_vessel_blocked_in_send_ends_when_its_host_lets_it_go() {
    let _cpu = crate::support::shared_cpu();
    let p = program("node/tests/it/services/echo.c");
    let hub = Arc::new(BufferHub::new());
    hub.net_add_service("s");
    let out = Output::default();
    let writing = start(&p, 0xa4, &["echo", "1000", "1"], &out, Some(&hub));
    hub.net_open("s", 1).unwrap();
    block_in_send(&hub, 1);
    let name = thread_name(0xa4);
    assert_eq!(threads_named("self", &name), 1);
    let dropped = Instant::now();
    drop(writing);
    let gone = runner::wait_until(Duration::from_secs(10), || {
        threads_named("self", &name) == 0
    });
    let took = dropped.elapsed();
    assert!(gone, "the vessel's thread outlived its runner");
    assert!(took <= PROMPT, "the thread took {took:?} to end");
}

/// `meshnode CMD... --data-dir DIR` as `user`; panics with its stderr if
/// it fails.
fn cli(user: &User, node: &Node, args: &[&str]) -> String {
    // Before the command's own arguments: a deploy's trailing ones are
    // the program's.
    let mut all = vec![args[0], "--data-dir", node.dir()];
    all.extend(&args[1..]);
    let out = user.run(&all);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

/// Deploys the napper on `node` for an hour's nap with `mib` MiB; returns
/// its id once it has filled its memory and sleeps.
fn deploy_sleeper(user: &User, node: &Node, name: &str, mib: u64) -> String {
    let wasm = compile_c("node/tests/it/programs/napper.c", &[]);
    let mib = mib.to_string();
    let wasm = wasm.to_str().unwrap();
    let id = cli(
        user,
        node,
        &["deploy", "--name", name, wasm, &mib, "1", HOUR_MS],
    );
    let ready = runner::wait_until(RUN_LIMIT, || {
        let out = user.run(&["logs", name, "--data-dir", node.dir()]);
        String::from_utf8_lossy(&out.stdout).contains("ready")
    });
    assert!(ready, "the sleeper never got ready\n{}", node.log());
    id.trim().to_string()
}

/// Goal (item 9, through a real node): `meshnode stop` of a vessel in a
/// one-hour sleep ends its thread within 100 ms of the command's answer,
/// and the node's RSS falls back by the vessel's memory.
#[test]
fn a_node_frees_a_stopped_sleeping_vessel_at_once() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let mut node = user.start("n", &[], &[]);
    node.wait_ready();
    let pid = node.child.id().to_string();
    deploy_sleeper(&user, &node, "sleeper", SLEEPER_MIB);
    assert_eq!(threads_named(&pid, "vessel-"), 1);
    let before = rss_bytes(&pid);
    cli(&user, &node, &["stop", "sleeper"]);
    let answered = Instant::now();
    let gone = runner::wait_until(Duration::from_secs(10), || {
        threads_named(&pid, "vessel-") == 0
    });
    let took = answered.elapsed();
    assert!(gone, "the stopped vessel's thread lives on\n{}", node.log());
    assert!(took <= PROMPT, "its thread ended {took:?} after the stop");
    let freed = before.saturating_sub(rss_bytes(&pid));
    assert!(
        freed >= FREED_AT_LEAST_MIB << 20,
        "only {} MiB of the stopped vessel's {SLEEPER_MIB} MiB came back",
        freed >> 20
    );
}

/// Goal (item 9): a node shut down while a vessel sleeps for an hour stops
/// promptly (the vessel's pause reaches it in its sleep), writes the
/// vessel down, and the next start continues it.
#[test]
fn a_node_shut_down_while_a_vessel_sleeps_stops_promptly_and_keeps_it() {
    let _cpu = crate::support::shared_cpu();
    let user = User::new();
    let data_dir = user.home.path().join("n");
    let mut node = user.start_in(&data_dir, &[], &[]);
    node.wait_ready();
    deploy_sleeper(&user, &node, "sleeper", 1);
    let asked = Instant::now();
    sigterm(&node.child);
    let (code, log) = node.wait_exit();
    let took = asked.elapsed();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("checkpointed: the next start continues it here"),
        "the sleeping vessel was not written down:\n{log}"
    );
    // The whole shutdown, process exit included: far under the 10 s a
    // pause that cannot reach the vessel waits (`CHECKPOINT_TIMEOUT`).
    assert!(took < Duration::from_secs(3), "the shutdown took {took:?}");
    drop(node);
    let node = user.start_in(&data_dir, &[], &[]);
    let running = runner::wait_until(TIMEOUT, || {
        let out = user.run(&["ps", "--json", "--data-dir", node.dir()]);
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        rows.as_array().is_some_and(|r| {
            r.iter()
                .any(|v| v["name"] == "sleeper" && v["state"] == "running")
        })
    });
    assert!(running, "the sleeper did not run again\n{}", node.log());
}

/// The directory of the listing test: the issue's size.
const HUGE_DIR_ENTRIES: usize = 200_000;

/// Descriptors that each start a listing of it (the issue's 40 calls).
const LISTING_DESCRIPTORS: &str = "40";

/// The most the node running the lister may hold at its peak. It holds
/// its own code and heap (about 20 MiB), the vessel's memory (16 MiB at
/// most here), and its listings (`MAX_LISTINGS_BYTES`, twice that while
/// one is built); 26 MiB measured. An unbounded cache held 606 MiB here
/// (the issue measured 705 MB).
const LISTER_RSS_LIMIT_MIB: u64 = 96;

/// The host CPU the whole run may take, listings and checks included, in
/// a debug build: the descriptors share a listing of the unchanged
/// directory, so it is listed a few times (0.7 s measured). Each
/// descriptor listing it afresh took 11 s, and with a `stat` per entry 25 s.
const LISTER_CPU_LIMIT: Duration = Duration::from_secs(5);

/// `utime + stime` of the process `pid`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on every Linux the node runs on.
    Duration::from_millis(ticks * 10)
}

/// The peak resident memory of the process `pid` in bytes.
fn peak_rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Goal (item 10): a vessel that lists a directory of 200,000 entries
/// from 40 descriptors, under `--max-memory 16MiB`, keeps the node's
/// memory and CPU bounded, and every listing still sees every entry
/// exactly once: one read in hundreds of calls, three of the 40 continued
/// after their listings were dropped for the budget, and wasi-libc's
/// `readdir`.
#[test]
fn listing_a_huge_directory_from_many_descriptors_stays_bounded_and_complete() {
    use std::io::{BufRead, BufReader};
    let _cpu = crate::support::shared_cpu();
    let wasm = compile_c("node/tests/it/programs/lister.c", &[]);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..HUGE_DIR_ENTRIES {
        std::fs::File::create(dir.path().join(format!("e{i:06}"))).unwrap();
    }
    let count = HUGE_DIR_ENTRIES.to_string();
    let preopen = format!("{}::/d", dir.path().display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meshnode"))
        .args(["run", "--max-memory", "16MiB", "--dir", &preopen])
        .arg(&wasm)
        .args(["/d", &count, LISTING_DESCRIPTORS])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut said = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let done = line == "listed" || line.starts_with("FAIL");
        said.push(line);
        if done {
            break;
        }
    }
    // Measured while every descriptor is still open.
    let (peak, cpu) = (peak_rss_bytes(pid), cpu_time(pid));
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    eprintln!("lister: peak RSS {} MiB, CPU {cpu:?}", peak >> 20);
    assert_eq!(
        said,
        [
            "ok: one descriptor, 200000 entries in many calls",
            "ok: 40 descriptors started, 3 continued to the end",
            "ok: readdir",
            "listed",
        ],
        "the lister's findings"
    );
    assert!(status.success(), "the lister ended with {status}");
    assert!(
        peak <= LISTER_RSS_LIMIT_MIB << 20,
        "the node peaked at {} MiB listing the directory",
        peak >> 20
    );
    assert!(cpu <= LISTER_CPU_LIMIT, "the listings took {cpu:?} of CPU");
}

fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Goal (item 6): a node started on a data directory that exists with
/// mode 0755 (so the store and the vessels' files were readable by every
/// local user) tightens it to 0700, and says so in its log.
#[test]
fn a_node_tightens_a_pre_existing_0755_data_dir_to_0700() {
    use std::os::unix::fs::PermissionsExt;
    let user = User::new();
    let data_dir = user.home.path().join("open");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut node = user.start_in(&data_dir, &[], &[]);
    node.wait_ready();
    assert_eq!(mode_of(&data_dir), 0o700, "{}", node.log());
    assert!(
        node.log().contains("was mode 755; tightened to 700"),
        "no word of it in the log:\n{}",
        node.log()
    );
}

/// Goal (item 6): a node key its group or others can read is refused, as
/// ssh refuses such a key: the node does not start, and says which file
/// and how to fix it. Fixed, the node starts with the same identity.
#[test]
fn a_node_key_readable_by_others_is_refused_naming_the_file_and_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let user = User::new();
    let data_dir = user.home.path().join("n");
    let mut node = user.start_in(&data_dir, &[], &[]);
    node.wait_ready();
    let peer_id = node.peer_id();
    sigterm(&node.child);
    assert_eq!(node.wait_exit().0, 0);
    drop(node);
    let key = data_dir.join("node.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut node = user.start_in(&data_dir, &[], &[]);
    let (code, log) = node.wait_exit();
    assert_ne!(
        code, 0,
        "the node started with a world-readable key:\n{log}"
    );
    let fix = format!("chmod 600 {}", key.display());
    assert!(
        log.contains("the key is readable by others (mode 644)") && log.contains(&fix),
        "the refusal does not name the file and the fix:\n{log}"
    );
    drop(node);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let _ = std::fs::remove_file(data_dir.join("node.addrs"));
    let mut node = user.start_in(&data_dir, &[], &[]);
    node.wait_ready();
    assert_eq!(node.peer_id(), peer_id, "not the same identity");
}

/// A vessel that sleeps an hour in one `poll_oneoff`, in one page of
/// memory: many of them fit a node cheaply.
const HOUR_SLEEPER_WAT: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; One clock subscription at 0: type 0 (clock) at 8, the monotonic
    ;; clock (1) at 16, an hour in ns at 24; the event at 64, the count
    ;; at 128.
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 3600000000000))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))
"#;

/// A deployment of `module` as vessel `n` (the host takes it as given:
/// its caller checks signatures).
fn deployment(n: u16, module: &[u8]) -> protocol::vessel::Deployment {
    use protocol::membership::{PublicKey, Signature};
    use protocol::vessel::{Deployment, DeploymentBody, VESSEL_VERSION};
    let mut id = [0u8; 8];
    id[..2].copy_from_slice(&n.to_le_bytes());
    Deployment {
        body: DeploymentBody {
            version: VESSEL_VERSION,
            vessel: VesselId(id),
            name: format!("sleeper-{n}"),
            module_hash: protocol::snapshot::Hash::of(module),
            args: Vec::new(),
            env: Vec::new(),
            volumes: Vec::new(),
            mounts: Vec::new(),
            ports: Vec::new(),
            checkpoint_every_ms: Some(0),
            replicas: None,
            durability: None,
            max_memory_bytes: None,
            restart: None,
        },
        user_key: PublicKey([0; 32]),
        signature: Signature([0; 64]),
    }
}

/// Goal (item 9): a node at its vessel limit, every vessel asleep for an
/// hour, refuses one more; a stop of one sleeper frees its slot within
/// 100 ms, and the new vessel takes it.
#[test]
fn a_stopped_sleeper_gives_its_slot_to_a_new_vessel_at_the_limit() {
    use protocol::limits::MAX_VESSELS_PER_NODE;
    let _cpu = crate::support::shared_cpu();
    let module = wat::parse_str(HOUR_SLEEPER_WAT).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut host = meshnode::vessel::Host::open(
        dir.path(),
        "n".into(),
        DockConfig::default(),
        Default::default(),
    )
    .unwrap();
    let limit = u16::try_from(MAX_VESSELS_PER_NODE).unwrap();
    for n in 0..limit {
        let d = deployment(n, &module);
        host.deploy(d, module.clone(), Vec::new(), "test".into(), false)
            .unwrap();
    }
    assert_eq!(host.running_count(), MAX_VESSELS_PER_NODE);
    let one_more = deployment(limit, &module);
    let refused = host.deploy(
        one_more.clone(),
        module.clone(),
        Vec::new(),
        "test".into(),
        false,
    );
    assert!(refused.is_err(), "a vessel over the limit was taken");
    // In its sleep: its memory holds the hour it asked for.
    let first = deployment(0, &module).body.vessel;
    let runner = host.vessels[&first].runner.as_ref().unwrap();
    let asleep = runner::wait_until(RUN_LIMIT, || {
        let (tx, rx) = tokio::sync::oneshot::channel();
        runner.send(Command::CopyMemory(tx)).unwrap();
        rx.blocking_recv()
            .is_ok_and(|m| m.bytes[24..32] == 3_600_000_000_000u64.to_le_bytes())
    });
    assert!(asleep, "the sleeper never went to sleep");
    let asked = Instant::now();
    runner.send(Command::Stop).unwrap();
    let freed = runner::wait_until(Duration::from_secs(10), || {
        host.check_capacity(one_more.body.vessel).is_ok()
    });
    let took = asked.elapsed();
    assert!(freed, "the stopped sleeper kept its slot");
    assert!(took <= PROMPT, "its slot came free {took:?} after the stop");
    assert!(host.vessels[&first].runner.as_ref().unwrap().finished());
    host.deploy(one_more, module, Vec::new(), "test".into(), false)
        .unwrap();
    assert_eq!(host.running_count(), MAX_VESSELS_PER_NODE);
}

/// How long a program that opens and reads a FIFO may take: it has
/// nothing to wait for.
const FIFO_RUN_LIMIT: Duration = Duration::from_secs(20);

/// Goal (item 9): a FIFO in a vessel's directory (a host's mount may hold
/// one) does not block the vessel in the kernel, where no stop reaches:
/// its open returns at once (non-blocking), and a read says `ESPIPE`.
#[test]
fn opening_a_fifo_nobody_writes_to_does_not_block() {
    let wasm = compile_c("node/tests/it/programs/fifo_reader.c", &[]);
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo failed");
    let preopen = format!("{}::/d", dir.path().display());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_meshnode"))
        .args(["run", "--dir", &preopen])
        .arg(&wasm)
        .arg("/d/fifo")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ended = runner::wait_until(FIFO_RUN_LIMIT, || child.try_wait().unwrap().is_some());
    if !ended {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(ended, "the vessel blocked opening a FIFO: {said:?}");
    assert_eq!(said, "opened\nread: Invalid seek\n");
}
