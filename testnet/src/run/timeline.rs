//! The timeline: from t = 0, the scenario's deployments and events in time
//! order, a progress summary every SUMMARY_EVERY, and the threads that run
//! beside it (clients, checks, the vessel watcher) until the end.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::processes::Procs;
use super::{asserts, upgrade, vessels};
use crate::ctx::{interrupted, Ctx};
use crate::record::{median, MarkKind};
use crate::scenario::Action;
use crate::view::View;

/// How often the timeline looks for nodes that exited by themselves.
const REAP_EVERY: Duration = Duration::from_millis(100);
/// How often a progress summary is printed.
const SUMMARY_EVERY: Duration = Duration::from_secs(5);
/// The recent answers a client's median in the summary is taken over.
const SUMMARY_RECENT: usize = 20;

/// One step of the timeline.
enum Step {
    Deploy(usize),
    Event(usize),
}

/// Deployments and events in time order; deployments before events at the
/// same time, events at the same time in file order.
fn steps(ctx: &Ctx) -> Vec<(Duration, Step)> {
    let mut steps: Vec<(Duration, usize, Step)> = Vec::new();
    for (i, v) in ctx.sc.vessels.iter().enumerate() {
        steps.push((v.at, 0, Step::Deploy(i)));
    }
    for (i, e) in ctx.sc.events.iter().enumerate() {
        steps.push((e.at, 1, Step::Event(i)));
    }
    steps.sort_by_key(|s| (s.0, s.1));
    steps.into_iter().map(|(t, _, s)| (t, s)).collect()
}

/// Plays the run from t = 0 to its end, then decides the end-of-run
/// checks; Err for a setup failure (a node that would not restart).
pub fn play(ctx: &Arc<Ctx>, procs: &mut Procs, t0: Instant) -> Result<(), String> {
    let mut threads = start_clients(ctx, t0);
    threads.extend(asserts::start(ctx, t0));
    let cx = ctx.clone();
    threads.push(std::thread::spawn(move || sample_traffic(&cx, t0)));
    if ctx.sc.vessels.iter().any(|v| v.pending.is_none()) {
        let cx = ctx.clone();
        threads.push(std::thread::spawn(move || vessels::watch(&cx, t0)));
    }
    let played = run_steps(ctx, procs, t0, &mut threads);
    ctx.stop.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    played?;
    if !interrupted() {
        asserts::at_end(ctx);
    }
    Ok(())
}

/// How often the router's per-node counts are snapshotted: windows of
/// traffic are measured between snapshots, so to within this.
const TRAFFIC_EVERY: Duration = Duration::from_secs(1);

/// Snapshots the router's per-node counts every TRAFFIC_EVERY from t = 0
/// to the end (and once at the end).
fn sample_traffic(ctx: &Ctx, t0: Instant) {
    let mut next = Duration::ZERO;
    loop {
        let more = ctx.sleep_until(t0, next);
        ctx.traffic
            .push(t0.elapsed().as_secs_f64(), ctx.router.node_traffic());
        if !more {
            return;
        }
        next += TRAFFIC_EVERY;
    }
}

fn start_clients(ctx: &Arc<Ctx>, t0: Instant) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for (i, c) in ctx.sc.clients.iter().enumerate() {
        if let Some(p) = &c.pending {
            ctx.rec
                .say(format!("client {}: pending ({p}); not started", c.name));
            continue;
        }
        let cx = ctx.clone();
        threads.push(std::thread::spawn(move || {
            crate::clients::run(&*cx, &cx.sc.clients[i], i, t0)
        }));
    }
    threads
}

/// The steps, summaries and reaping until the end of the run (or Ctrl-C).
fn run_steps(
    ctx: &Arc<Ctx>,
    procs: &mut Procs,
    t0: Instant,
    threads: &mut Vec<JoinHandle<()>>,
) -> Result<(), String> {
    let end = ctx.sc.duration;
    let mut next_summary = SUMMARY_EVERY;
    let mut steps = steps(ctx).into_iter().peekable();
    loop {
        procs.reap_exited(ctx);
        let next_step = steps.peek().map(|s| s.0);
        let until = next_step.unwrap_or(end).min(next_summary).min(end);
        if !ctx.sleep_until(t0, until.min(t0.elapsed() + REAP_EVERY)) {
            return Ok(());
        }
        if t0.elapsed() < until {
            continue;
        }
        procs.reap_exited(ctx);
        if next_step.is_some_and(|t| t <= until) {
            let (_, step) = steps.next().unwrap();
            threads.extend(step_now(ctx, procs, step)?);
            continue;
        }
        if until == end {
            return Ok(());
        }
        if until == next_summary {
            summary(ctx);
            next_summary += SUMMARY_EVERY;
        }
    }
}

/// Runs one step; slow ones (deploy, migrate) return their thread.
fn step_now(
    ctx: &Arc<Ctx>,
    procs: &mut Procs,
    step: Step,
) -> Result<Option<JoinHandle<()>>, String> {
    match step {
        Step::Deploy(v) => {
            let cx = ctx.clone();
            Ok(Some(std::thread::spawn(move || vessels::deploy(&cx, v))))
        }
        Step::Event(e) => event(ctx, procs, e),
    }
}

/// Runs one event, says it and marks it; a migrate returns its thread.
fn event(ctx: &Arc<Ctx>, procs: &mut Procs, e: usize) -> Result<Option<JoinHandle<()>>, String> {
    let label = match &ctx.sc.events[e].action {
        Action::SetLink { a, b, change } => {
            ctx.router.change_link(*a, *b, change);
            set_link_words(ctx, *a, *b)
        }
        Action::Partition { group } => {
            ctx.router.set_sides(group);
            partition_words(ctx, group)
        }
        Action::Heal => {
            ctx.router.set_sides(&vec![0; ctx.sc.nodes.len()]);
            "heal: every node reaches every other".into()
        }
        Action::Kill { node, term } => kill(ctx, procs, *node, *term),
        Action::Restart { node, env } => restart(ctx, procs, *node, env)?,
        Action::Migrate { vessel, to } => return Ok(migrate(ctx, *vessel, *to)),
        Action::Upgrade { via } => return Ok(upgrade::start(ctx, *via)),
        Action::MoveClient { client, to } => {
            let from = ctx.clients[*client].node.swap(*to, Ordering::SeqCst);
            format!(
                "client {} moves {} → {}",
                ctx.sc.clients[*client].name, ctx.nodes[from].name, ctx.nodes[*to].name
            )
        }
    };
    ctx.rec.say(format!("event: {label}"));
    ctx.rec.mark(MarkKind::Event, label);
    Ok(None)
}

fn set_link_words(ctx: &Ctx, a: usize, b: usize) -> String {
    let p = ctx.router.params(a, b);
    format!(
        "link {}–{}: latency {} ms, jitter {} ms, loss {}, bandwidth {}",
        ctx.nodes[a].name,
        ctx.nodes[b].name,
        p.latency_ms,
        p.jitter_ms,
        p.loss,
        if p.bandwidth_kbps > 0.0 {
            format!("{} kbit/s", p.bandwidth_kbps)
        } else {
            "unlimited".into()
        }
    )
}

/// `partition: {a,b} | {c}`
fn partition_words(ctx: &Ctx, group: &[u32]) -> String {
    let max = group.iter().copied().max().unwrap_or(0);
    let sides: Vec<String> = (0..=max)
        .map(|g| {
            let members: Vec<&str> = (0..group.len())
                .filter(|i| group[*i] == g)
                .map(|i| ctx.nodes[i].name.as_str())
                .collect();
            members.join(",")
        })
        .filter(|m| !m.is_empty())
        .map(|m| format!("{{{m}}}"))
        .collect();
    format!("partition: {}", sides.join(" | "))
}

fn kill(ctx: &Ctx, procs: &mut Procs, node: usize, term: bool) -> String {
    procs.reap_exited(ctx);
    let n = &ctx.nodes[node];
    let Some(c) = procs.nodes[node].as_mut().filter(|_| n.is_up()) else {
        return format!("kill {}: it is not running", n.name);
    };
    if term {
        // SAFETY: signals a child we own.
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
    } else {
        let _ = c.kill();
    }
    n.up.store(false, Ordering::SeqCst);
    format!(
        "kill {} ({})",
        n.name,
        if term { "SIGTERM" } else { "SIGKILL" }
    )
}

fn restart(
    ctx: &Ctx,
    procs: &mut Procs,
    node: usize,
    env: &Option<Vec<(String, String)>>,
) -> Result<String, String> {
    procs.reap_exited(ctx);
    let n = &ctx.nodes[node];
    if n.is_up() {
        return Ok(format!(
            "restart {}: it is still running (kill it first)",
            n.name
        ));
    }
    if let Some(mut c) = procs.nodes[node].take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let mut with = String::new();
    if let Some(env) = env {
        *n.env.lock().unwrap() = env.clone();
        let words: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        with = if env.is_empty() {
            " (no extra environment)".into()
        } else {
            format!(" with {}", words.join(" "))
        };
    }
    procs.start_node(ctx, node)?;
    Ok(format!("restart {}{with}", n.name))
}

/// A `migrate` event: said and marked now, run on a thread of its own.
fn migrate(ctx: &Arc<Ctx>, vessel: usize, to: usize) -> Option<JoinHandle<()>> {
    let v = &ctx.sc.vessels[vessel];
    let to_name = &ctx.nodes[to].name;
    if let Some(p) = &v.pending {
        ctx.rec.say(format!(
            "migrate {} → {to_name}: skipped, the vessel is pending ({p})",
            v.name
        ));
        return None;
    }
    let label = format!("migrate {} → {to_name}", v.name);
    ctx.rec.say(format!("event: {label}"));
    ctx.rec.mark(MarkKind::Event, label);
    let cx = ctx.clone();
    Some(std::thread::spawn(move || {
        vessels::migrate(&cx, vessel, to)
    }))
}

/// The progress summary: each RTT series' latest value, and each counting
/// client's answers and recent median.
fn summary(ctx: &Ctx) {
    let mut parts = Vec::new();
    let samples = ctx.rec.samples();
    let mut series: Vec<&str> = samples.iter().map(|s| s.series.as_str()).collect();
    series.sort();
    series.dedup();
    for s in series {
        if let (Some(pair), Some(v)) = (s.strip_prefix("rtt "), ctx.rec.latest(s)) {
            parts.push(format!("{pair} {v:.1}ms"));
        }
    }
    for (i, c) in ctx.sc.clients.iter().enumerate() {
        if !c.load.counts_requests() || c.pending.is_some() {
            continue;
        }
        let st = ctx.clients[i].stats.lock().unwrap();
        let mut recent: Vec<f64> = st
            .latencies
            .iter()
            .rev()
            .take(SUMMARY_RECENT)
            .map(|x| x.1)
            .collect();
        let m = median(&mut recent)
            .map(|m| format!("{m:.1}ms"))
            .unwrap_or("-".into());
        parts.push(format!(
            "{}: {} ok, {} failed, {} resets, median {m}",
            c.name, st.ok, st.failed, st.resets
        ));
    }
    if !parts.is_empty() {
        ctx.rec.say(format!("status: {}", parts.join("; ")));
    }
}
