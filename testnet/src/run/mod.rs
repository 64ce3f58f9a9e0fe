//! `testnet run`: find the tools and build the programs (`tools`), set up
//! the namespaces, links and nodes (`setup`, `processes`), play the
//! scenario's timeline (`timeline`, with `vessels` for the CLI's vessel
//! operations and `asserts` for the checks), and write the report.

mod asserts;
mod processes;
mod setup;
mod timeline;
mod tools;
mod upgrade;
mod vessels;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

pub use crate::outcome::{
    Outcome, EXIT_ERROR, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PASSED, EXIT_SKIPPED,
};
pub use tools::find_meshnode;
pub use vessels::{last_line, where_it_is};

use crate::checks::{AssertResult, Verdict};
use crate::ctx::{catch_ctrl_c, interrupted, Ctx, VesselSeen};
use crate::netns::capability_problem;
use crate::nodes::Binaries;
use crate::record::Recorder;
use crate::router::Router;
use crate::scenario::{secs, Scenario};
use crate::view::ClientRt;
use processes::Procs;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub out: Option<PathBuf>,
    pub seed: Option<u64>,
    pub meshnode: Option<PathBuf>,
    pub quiet: bool,
}

/// What is known before anything starts: the scenario, the binaries, the
/// output directory and the built programs.
struct Prepared {
    sc: Scenario,
    bins: Binaries,
    out: PathBuf,
    wasm: Vec<Option<PathBuf>>,
}

/// Runs a scenario file.
pub fn run(path: &Path, opts: &Options) -> Outcome {
    let p = match prepare(path, opts) {
        Ok(p) => p,
        Err(o) => return o,
    };
    catch_ctrl_c();
    let rec = Recorder::new(opts.quiet);
    if let Ok(f) = std::fs::File::create(p.out.join("progress.log")) {
        rec.log_to(f);
    }
    rec.say(format!(
        "scenario {} ({}), seed {}, {} nodes, run {} after the mesh is up; output in {}",
        p.sc.name,
        p.sc.file.display(),
        p.sc.seed,
        p.sc.nodes.len(),
        secs(p.sc.duration),
        p.out.display()
    ));
    let ctx = match context(p, rec) {
        Ok(ctx) => Arc::new(ctx),
        Err(e) => return Outcome::Error(e),
    };
    let mut procs = Procs::new(ctx.nodes.len());
    let played = play(&ctx, &mut procs);
    // Teardown.
    ctx.stop.store(true, Ordering::SeqCst);
    procs.stop_all(&ctx);
    let router_err = ctx.router.stop().err();
    if let Some(e) = &router_err {
        ctx.rec.say(format!("router failed: {e}"));
    }
    let outcome = outcome(&ctx, played, router_err.is_some());
    finish(&ctx, &outcome);
    outcome
}

/// The scenario, the tools, the output directory and the programs: what
/// can refuse (exit 2) or skip (exit 77) before anything starts.
fn prepare(path: &Path, opts: &Options) -> Result<Prepared, Outcome> {
    let sc = Scenario::load_seeded(path, opts.seed).map_err(|e| Outcome::Error(e.0))?;
    let meshnode = tools::find_meshnode(opts.meshnode.as_deref()).map_err(Outcome::Error)?;
    let foreign = tools::find_foreign(&sc).map_err(Outcome::Skipped)?;
    let frozen = tools::find_frozen(&sc).map_err(Outcome::Skipped)?;
    if let Some(why) = capability_problem() {
        return Err(Outcome::Skipped(why));
    }
    let out = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("testnet-out").join(&sc.name));
    setup::prepare_out(&out).map_err(Outcome::Error)?;
    let out = out.canonicalize().unwrap_or(out);
    let wasm = tools::build_programs(&sc, &out)?;
    Ok(Prepared {
        sc,
        bins: Binaries {
            versions: versions(&meshnode, frozen.as_deref())?,
            meshnode,
            foreign,
            frozen,
        },
        out,
        wasm,
    })
}

/// `--version` of the run's meshnode and of the frozen build.
fn versions(meshnode: &Path, frozen: Option<&Path>) -> Result<(String, Option<String>), Outcome> {
    let current = crate::nodes::version_of(meshnode).map_err(Outcome::Error)?;
    let frozen = frozen
        .map(crate::nodes::version_of)
        .transpose()
        .map_err(Outcome::Error)?;
    Ok((current, frozen))
}

/// Namespaces, the router and the user key: the run's shared context.
fn context(p: Prepared, rec: Recorder) -> Result<Ctx, String> {
    let (nodes, tuns) = setup::namespaces(&p.sc, &p.out, &rec)?;
    let names: Vec<String> = p.sc.nodes.iter().map(|n| n.name.clone()).collect();
    let router =
        Router::start(tuns, &p.sc.links, &names, p.sc.seed).map_err(|e| format!("router: {e}"))?;
    rec.say(format!(
        "{} namespaces up (10.77.0.1–10.77.0.{} on tn0), router forwarding",
        nodes.len(),
        nodes.len()
    ));
    let user_key = match setup::keygen(&p.bins.meshnode, &p.out) {
        Ok(k) => k,
        Err(e) => {
            let _ = router.stop();
            return Err(e);
        }
    };
    let sc = p.sc;
    let node_count = nodes.len();
    Ok(Ctx {
        clients: sc.clients.iter().map(|c| ClientRt::new(c.at)).collect(),
        judges: sc.asserts.iter().map(|a| a.check.begin()).collect(),
        results: Mutex::new(sc.asserts.iter().map(AssertResult::before).collect()),
        vessels: Mutex::new(vec![VesselSeen::default(); sc.vessels.len()]),
        sc,
        bins: p.bins,
        user_key,
        out: p.out,
        nodes,
        router,
        rec,
        stop: AtomicBool::new(false),
        wasm: p.wasm,
        migrations: Mutex::new(Vec::new()),
        setup_secs: Mutex::new(0.0),
        cold_start: std::sync::OnceLock::new(),
        converged: Mutex::new(vec![None; node_count]),
        traffic: Default::default(),
    })
}

/// The setup, then the timeline; Err for a setup failure.
fn play(ctx: &Arc<Ctx>, procs: &mut Procs) -> Result<(), String> {
    if !setup::bring_up(ctx, procs)? {
        return Ok(());
    }
    let t0 = ctx.rec.set_t0();
    let setup = *ctx.setup_secs.lock().unwrap();
    ctx.rec.say(match ctx.sc.wait_for_mesh {
        true => format!("mesh up: every node sees every other ({setup:.1}s of setup); t = 0"),
        false => format!("every node started ({setup:.1}s of setup; wait_for_mesh = false); t = 0"),
    });
    timeline::play(ctx, procs, t0)
}

fn outcome(ctx: &Ctx, played: Result<(), String>, router_failed: bool) -> Outcome {
    match played {
        Ok(()) if interrupted() => Outcome::Interrupted,
        Ok(()) => {
            let results = ctx.results.lock().unwrap();
            if results.iter().any(|r| r.verdict == Verdict::Fail) || router_failed {
                Outcome::Failed
            } else {
                Outcome::Passed
            }
        }
        Err(_) if interrupted() => Outcome::Interrupted,
        Err(e) => Outcome::Error(e),
    }
}

/// Writes the report and says the run's last line.
fn finish(ctx: &Ctx, outcome: &Outcome) {
    for s in crate::report::stall::stalls(ctx) {
        ctx.rec.say(s.line());
    }
    if let Err(e) = crate::report::write(ctx, outcome) {
        ctx.rec.say(format!("cannot write the report: {e}"));
    }
    let results = ctx.results.lock().unwrap();
    let count = |v: Verdict| results.iter().filter(|r| r.verdict == v).count();
    let word = match outcome.reason() {
        Some(why) => format!("{} ({why})", outcome.word()),
        None => outcome.word().to_string(),
    };
    ctx.rec.say(format!(
        "{word}: {} passed, {} failed, {} pending, {} not run; report: {}",
        count(Verdict::Pass),
        count(Verdict::Fail),
        count(Verdict::Pending),
        count(Verdict::NotRun),
        ctx.out.join("report.md").display()
    ));
}
