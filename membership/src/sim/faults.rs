//! The fault actor, separate from the nodes (as in VOPR): at planned
//! times it kills a share of the nodes at once, cuts the fleet in two and
//! heals it, and makes one link flap. Which nodes are hit is drawn from
//! the run's seed, so a run replays exactly.

use super::World;

#[derive(Clone, Debug, Default)]
pub struct FaultPlan {
    /// Kill this share of the (started, alive) nodes at once, at this time
    /// after the fleet converged (ms).
    pub kill: Option<(f64, u64)>,
    /// Cut this share of the nodes off from the rest from `start` to
    /// `end` (ms after convergence).
    pub partition: Option<(f64, u64, u64)>,
    /// One random link goes down and up every `period` ms, from
    /// convergence to the end of the run.
    pub flap_period_ms: Option<u64>,
}

/// What the actor did, for the checks.
#[derive(Default, Debug)]
pub struct FaultLog {
    pub killed: Vec<usize>,
    pub killed_at_us: Option<u64>,
    pub partitioned: Vec<usize>,
    pub healed_at_us: Option<u64>,
    pub flapping: Option<(usize, usize)>,
}

/// Applies what is due at `now_us`; `since_us` is when the fleet first
/// converged (faults are planned relative to it).
pub fn act(w: &mut World, plan: &FaultPlan, since_us: u64, now_us: u64) {
    let at = |ms: u64| since_us + ms * 1_000;
    if let Some((share, when)) = plan.kill {
        if w.faults.killed_at_us.is_none() && now_us >= at(when) {
            let victims = w.pick(share);
            for &v in &victims {
                w.nodes[v].alive = false;
            }
            w.faults.killed = victims;
            w.faults.killed_at_us = Some(now_us);
        }
    }
    if let Some((share, start, end)) = plan.partition {
        if w.faults.partitioned.is_empty() && now_us >= at(start) && now_us < at(end) {
            let cut = w.pick(share);
            for &v in &cut {
                w.net.side[v] = 1;
            }
            w.faults.partitioned = cut;
        }
        if !w.faults.partitioned.is_empty() && w.faults.healed_at_us.is_none() && now_us >= at(end)
        {
            w.net.side.iter_mut().for_each(|s| *s = 0);
            w.faults.healed_at_us = Some(now_us);
        }
    }
    if let Some(period) = plan.flap_period_ms {
        let (a, b) = *w.faults.flapping.get_or_insert_with(|| {
            let a = w.rng.below(w.nodes.len() as u64) as usize;
            let b = (a + 1 + w.rng.below(w.nodes.len() as u64 - 1) as usize) % w.nodes.len();
            (a.min(b), a.max(b))
        });
        let down = ((now_us - since_us) / 1_000 / period) % 2 == 1;
        let cut = w.net.cut_links.contains(&(a, b));
        if down && !cut {
            w.net.cut_links.push((a, b));
        } else if !down && cut {
            w.net.cut_links.retain(|l| *l != (a, b));
        }
    }
}
