//! The node under systemd (`packaging/deb/meshnode.service`, `Type=notify`):
//! it says when it is ready and when it stops, and pings the watchdog from
//! its event loop, so that systemd restarts a node whose loop hangs. Outside
//! systemd (no `NOTIFY_SOCKET`) every call does nothing.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tracing::{debug, warn};

/// How many pings per watchdog interval: two, as sd_watchdog_enabled(3)
/// advises, so that one late tick is not a restart.
const PINGS_PER_WATCHDOG_INTERVAL: u32 = 2;

/// The watchdog interval systemd set for this process, as
/// sd_watchdog_enabled(3) reads it: `WATCHDOG_USEC`, unless `WATCHDOG_PID`
/// names another process. (sd-notify's own `watchdog_enabled` also wants
/// `WATCHDOG_PID`, which systemd sets, but a caller need not.)
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    let for_me = match std::env::var("WATCHDOG_PID") {
        Ok(pid) => pid.parse::<u32>().is_ok_and(|p| p == std::process::id()),
        Err(_) => true,
    };
    (for_me && usec > 0).then_some(usec)
}

/// The node's link to systemd.
#[derive(Debug)]
pub struct Service {
    /// Under systemd's notify protocol at all.
    notify: bool,
    /// How often to ping the watchdog, if systemd set one.
    ping_every: Option<Duration>,
    last_ping: Instant,
}

impl Service {
    /// Reads what systemd passed in the environment.
    pub fn from_env() -> Service {
        let notify = std::env::var_os("NOTIFY_SOCKET").is_some();
        let ping_every = watchdog_usec()
            .filter(|_| notify)
            .map(|usec| Duration::from_micros(usec) / PINGS_PER_WATCHDOG_INTERVAL);
        Service {
            notify,
            ping_every,
            last_ping: Instant::now(),
        }
    }

    /// The node is up: listening, its vessels resumed.
    pub fn ready(&self) {
        self.send(&[NotifyState::Ready, NotifyState::Status("running")]);
    }

    /// The node is stopping (writing its vessels down).
    pub fn stopping(&self) {
        self.send(&[
            NotifyState::Stopping,
            NotifyState::Status("writing vessels down"),
        ]);
    }

    /// Pings the watchdog if a ping is due; called from the event loop's
    /// tick, so a loop that hangs stops the pings.
    pub fn tick(&mut self, now: Instant) {
        let Some(every) = self.ping_every else { return };
        if now.duration_since(self.last_ping) >= every {
            self.last_ping = now;
            self.send(&[NotifyState::Watchdog]);
        }
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.notify {
            return;
        }
        match sd_notify::notify(false, states) {
            Ok(()) => debug!(?states, "told systemd"),
            Err(e) => warn!("cannot tell systemd {states:?}: {e}"),
        }
    }
}
