//! Running the assertions: a thread per windowed check (judged every
//! CHECK_EVERY from its `at` until it holds or its window ends), a thread
//! per check that samples, and the checks decided at the end.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::checks::{AssertResult, Timing, Verdict};
use crate::ctx::{sleep_until_unless_interrupted, Ctx};
use crate::record::MarkKind;
use crate::scenario::secs;

/// How often windowed assertions are checked.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Starts the threads of the checks that are not pending: windowed ones,
/// and those that sample the run.
pub fn start(ctx: &Arc<Ctx>, t0: Instant) -> Vec<JoinHandle<()>> {
    let mut threads = Vec::new();
    for (i, a) in ctx.sc.asserts.iter().enumerate() {
        if a.pending.is_some() {
            continue;
        }
        if a.check.timing() == Timing::Window {
            let cx = ctx.clone();
            threads.push(std::thread::spawn(move || check_window(&cx, i, t0)));
        }
        if ctx.judges[i].samples() {
            let cx = ctx.clone();
            threads.push(std::thread::spawn(move || cx.judges[i].sample(&*cx, t0)));
        }
    }
    threads
}

fn check_window(ctx: &Ctx, i: usize, t0: Instant) {
    let a = &ctx.sc.asserts[i];
    if !sleep_until_unless_interrupted(t0, a.at) {
        return;
    }
    let end = a.at + a.within;
    let mut last = String::new();
    loop {
        let (ok, detail) = ctx.judges[i].judge(ctx);
        if ok {
            let after = (t0.elapsed().as_secs_f64() - a.at.as_secs_f64()).max(0.0);
            decide(ctx, i, true, format!("{detail} (after {after:.1}s)"));
            return;
        }
        if !detail.is_empty() {
            last = detail;
        }
        if t0.elapsed() >= end {
            let detail = format!("not true within {}; last: {last}", secs(a.within));
            decide(ctx, i, false, detail);
            return;
        }
        let next = (t0.elapsed() + CHECK_EVERY).min(end);
        if !sleep_until_unless_interrupted(t0, next) {
            return;
        }
    }
}

/// Judges the checks decided at the end of the run.
pub fn at_end(ctx: &Ctx) {
    for (i, a) in ctx.sc.asserts.iter().enumerate() {
        if a.pending.is_none() && a.check.timing() == Timing::AtEnd {
            let (ok, detail) = ctx.judges[i].judge(ctx);
            decide(ctx, i, ok, detail);
        }
    }
}

/// Records assertion `i`'s verdict, says it and marks it.
fn decide(ctx: &Ctx, i: usize, ok: bool, detail: String) {
    let t = ctx.rec.t();
    let what = ctx.sc.describe(&ctx.sc.asserts[i]);
    let word = if ok { "PASS" } else { "FAIL" };
    ctx.rec.say(format!("{word} {what}: {detail}"));
    ctx.rec.mark(
        if ok { MarkKind::Pass } else { MarkKind::Fail },
        format!("assert[{i}]"),
    );
    ctx.results.lock().unwrap()[i] = AssertResult {
        verdict: if ok { Verdict::Pass } else { Verdict::Fail },
        t: Some(t),
        detail,
    };
}
