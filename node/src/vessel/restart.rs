//! `deploy --restart on-failure|always` (issue 16): the host runs a vessel
//! that ended again, after an exponential back-off.
//!
//! A restart runs the module afresh from its deployment (`Resume::Fresh`),
//! with its volumes as they are now and its log going on: a checkpoint
//! would only replay the failure. The restart writes a fresh image (the
//! volumes packed, the log so far) and points the record at it, under the
//! same epoch, so a crash of the node afterwards resumes the restarted run,
//! not the one that failed. The policy is in the signed deployment, so it
//! holds wherever the vessel moves or fails over to; the count of restarts
//! is the host's own (it starts again at a new host).

use std::time::{Duration, Instant};

use protocol::vessel::{Resume, VesselImage, VESSEL_VERSION};
use tracing::{info, warn};

use super::{Host, HostError, Record};
use protocol::refusal::RefusalCode;

/// The first restart's wait.
pub const RESTART_BACKOFF_INITIAL: Duration = Duration::from_secs(1);

/// The longest wait: each restart in a row waits twice the one before, up
/// to this, so a vessel that fails at once costs its host little.
pub const RESTART_BACKOFF_CAP: Duration = Duration::from_secs(60);

/// A run at least this long was a healthy one: the next restart waits
/// [`RESTART_BACKOFF_INITIAL`] again, and counts from 1.
pub const RESTART_RESET_AFTER: Duration = Duration::from_secs(60);

/// A vessel waiting to run again.
#[derive(Debug, Clone)]
pub struct Restarting {
    /// Which restart in a row this is (1 first).
    pub attempt: u32,
    /// When it runs again.
    pub at: Instant,
    /// How its last run ended.
    pub exit: String,
}

/// The wait before restart number `attempt` (1 first) of a row.
pub fn backoff(attempt: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    RESTART_BACKOFF_INITIAL
        .saturating_mul(1 << doublings)
        .min(RESTART_BACKOFF_CAP)
}

/// `ps`'s state of a vessel waiting to restart: `restarting (3) in 4s`.
pub fn state_of(r: &Restarting, now: Instant) -> String {
    let secs = r.at.saturating_duration_since(now).as_secs_f64().ceil() as u64;
    format!("restarting ({}) in {secs}s", r.attempt)
}

impl Host {
    /// Called when the runner of `id` (owned here, not stopped by a user)
    /// ended with `exit`/`code`: whether its policy runs it again, and if
    /// so, when (the vessel then waits, its record unchanged).
    pub(super) fn plan_restart(
        &mut self,
        id: protocol::vessel::VesselId,
        exit: &str,
        code: Option<i32>,
    ) -> bool {
        let Some(l) = self.vessels.get_mut(&id) else {
            return false;
        };
        let Some(policy) = l.deployment.body.restart else {
            return false;
        };
        if l.stopped || l.restarting.is_some() || !policy.restarts(code) {
            return l.restarting.is_some();
        }
        let healthy = l.started.elapsed() >= RESTART_RESET_AFTER;
        let attempt = if healthy { 1 } else { l.restarts_in_a_row + 1 };
        let wait = backoff(attempt);
        info!(vessel = %id, attempt, wait_ms = wait.as_millis() as u64, "ended ({exit}): restarting ({})", policy.name());
        l.restarting = Some(Restarting {
            attempt,
            at: Instant::now() + wait,
            exit: exit.to_string(),
        });
        true
    }

    /// Restarts every vessel whose wait is over.
    pub(super) fn restart_due(&mut self) {
        let now = Instant::now();
        let due: Vec<_> = self
            .vessels
            .iter()
            .filter(|(_, l)| !l.stopped && l.restarting.as_ref().is_some_and(|r| r.at <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            if let Err(e) = self.restart(id) {
                warn!(vessel = %id, "cannot restart it: {e}");
                // Tried again after the next wait, not at every tick.
                if let Some(r) = self
                    .vessels
                    .get_mut(&id)
                    .and_then(|l| l.restarting.as_mut())
                {
                    r.at = now + backoff(r.attempt + 1);
                }
            }
        }
    }

    /// Runs `id` afresh from its deployment, with its volumes as they are
    /// and its log so far, under the epoch it has.
    fn restart(&mut self, id: protocol::vessel::VesselId) -> Result<(), HostError> {
        let l = self.vessels.get(&id).expect("listed");
        let restarts = l.restarts;
        let (Record::Owned { epoch, image: last }, Some(r)) =
            (l.record.clone(), l.restarting.clone())
        else {
            return Ok(());
        };
        let store_err = |source| HostError::Store { vessel: id, source };
        let internal = |e: String| HostError::refused(id, RefusalCode::Internal, e);
        let bytes = self.store.get_image_doc(&last).map_err(store_err)?;
        let before: VesselImage =
            protocol::cbor::decode(&bytes).map_err(|e| internal(e.to_string()))?;
        let dirs = super::image::volume_dirs(&self.vessel_dir(id), l.deployment.body.volumes.len());
        let mut volumes = Vec::new();
        for (v, dir) in l.deployment.body.volumes.iter().zip(&dirs) {
            volumes.push(super::image::pack_volume(&self.store, dir, &v.guest).map_err(internal)?);
        }
        let log =
            super::image::pack_log(&self.store, &crate::sync::lock(&l.log)).map_err(internal)?;
        let image = VesselImage {
            version: VESSEL_VERSION,
            deployment: l.deployment.clone(),
            epoch,
            resume: Resume::Fresh,
            module: before.module,
            manifest: Vec::new(),
            volumes,
            log,
            migrations: l.migrations,
            run_ms: l.run_ms(),
            hub: Default::default(),
            placement: protocol::vessel::VesselPlacement {
                pinned: l.pinned,
                last_move: before.placement.last_move,
            },
        };
        let (bytes, h) = image.encode_and_hash();
        self.store.put_image_doc(&bytes, true).map_err(store_err)?;
        let record = Record::Owned { epoch, image: h };
        self.write_record(id, &record)?;
        let reason = format!("restarted ({}) after: {}", r.attempt, r.exit);
        self.start_from_image(image, record, reason, None)?;
        if let Some(l) = self.vessels.get_mut(&id) {
            l.restarts_in_a_row = r.attempt;
            l.restarts = restarts + 1;
        }
        info!(vessel = %id, attempt = r.attempt, "restarted afresh from its deployment");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), RESTART_BACKOFF_INITIAL);
        assert_eq!(backoff(2), 2 * RESTART_BACKOFF_INITIAL);
        assert_eq!(backoff(4), 8 * RESTART_BACKOFF_INITIAL);
        assert_eq!(backoff(40), RESTART_BACKOFF_CAP);
        let r = Restarting {
            attempt: 3,
            at: Instant::now() + Duration::from_millis(3_500),
            exit: "trap".into(),
        };
        assert_eq!(state_of(&r, Instant::now()), "restarting (3) in 4s");
    }
}
