//! The thread that runs one vessel in fuel slices. Between two slices it
//! takes commands: copy the memory for a pre-copy round (the vessel keeps
//! running), pause at the next migration point (the vessel unwinds and is
//! captured), or stop.

use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::vessel::VesselId;
use tokio::sync::oneshot;

use super::log::VesselLog;
use crate::dock::{Capture, Exit, Slice, Vessel};

/// How long a vessel that unwound from inside a blocking call waits for
/// the pause command that raised the interrupt (it is sent right after).
pub const PAUSE_COMMAND_WAIT: Duration = Duration::from_secs(5);

pub enum Command {
    /// Copy the memory as it is between two slices.
    CopyMemory(oneshot::Sender<Vec<u8>>),
    /// Unwind at the next migration point and hand over the capture.
    Pause(oneshot::Sender<Result<Paused, String>>),
    Stop,
}

/// A vessel that unwound at a migration point and will not run again.
pub struct Paused {
    /// Its state, without the memory (`capture.memory` is empty).
    pub capture: Capture,
    /// The spent vessel, kept for its memory ([`Vessel::memory`]): the
    /// final round reads it in place instead of copying it in the pause.
    /// Dropping it frees the memory (milliseconds for a large one: drop it
    /// after the pause, off the async runtime).
    pub vessel: Vessel,
    /// When the vessel stopped running.
    pub at: Instant,
}

impl Paused {
    /// The capture with its memory, as [`Vessel::capture`] takes it.
    pub fn into_capture(self) -> Capture {
        let mut capture = self.capture;
        capture.memory = self.vessel.memory().to_vec();
        capture
    }
}

#[derive(Debug, Clone)]
enum State {
    Running,
    Paused,
    Ended(String, Option<i32>),
}

struct Shared {
    state: Mutex<State>,
    run_ms: Mutex<u64>,
    /// The vessel's linear memory, as of its last slice (placement needs to
    /// know whether a node has room for it).
    memory_bytes: std::sync::atomic::AtomicU64,
}

/// The handle the host keeps.
pub struct Runner {
    /// Raised with a pause: makes a vessel that waits in `poll_oneoff` give
    /// up the wait and unwind from inside it.
    interrupt: Arc<std::sync::atomic::AtomicBool>,
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    _thread: JoinHandle<()>,
}

impl Runner {
    pub fn send(&self, cmd: Command) -> Result<(), String> {
        if matches!(cmd, Command::Pause(_)) {
            self.interrupt
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.tx
            .send(cmd)
            .map_err(|_| "the vessel ended before it could move".to_string())
    }

    /// How it ended: (text, exit code or None for a trap).
    pub fn exit(&self) -> Option<(String, Option<i32>)> {
        match &*self.shared.state.lock().unwrap_or_else(|p| p.into_inner()) {
            State::Ended(t, c) => Some((t.clone(), *c)),
            _ => None,
        }
    }

    pub fn paused(&self) -> bool {
        matches!(
            &*self.shared.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Paused
        )
    }

    pub fn run_ms(&self) -> u64 {
        *self.shared.run_ms.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The vessel's linear memory in bytes, as of its last slice.
    pub fn memory_bytes(&self) -> u64 {
        self.shared
            .memory_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

fn set(shared: &Shared, s: State) {
    *shared.state.lock().unwrap_or_else(|p| p.into_inner()) = s;
}

/// Starts the vessel's thread.
pub fn spawn(
    id: VesselId,
    mut vessel: Vessel,
    _dir: PathBuf,
    log: Arc<Mutex<VesselLog>>,
) -> std::io::Result<Runner> {
    let (tx, rx) = mpsc::channel::<Command>();
    let interrupt = Arc::new(std::sync::atomic::AtomicBool::new(false));
    vessel.wasi_mut().set_interrupt(interrupt.clone());
    let shared = Arc::new(Shared {
        state: Mutex::new(State::Running),
        run_ms: Mutex::new(0),
        memory_bytes: std::sync::atomic::AtomicU64::new(vessel.memory().len() as u64),
    });
    let s = shared.clone();
    let pace = slice_pace();
    let thread = std::thread::Builder::new()
        .name(format!("vessel-{id}"))
        .spawn(move || {
            let started = Instant::now();
            let mut pause: Option<oneshot::Sender<Result<Paused, String>>> = None;
            let mut asked = false;
            loop {
                loop {
                    match rx.try_recv() {
                        Ok(Command::CopyMemory(reply)) => {
                            let _ = reply.send(vessel.memory().to_vec());
                        }
                        Ok(Command::Pause(reply)) => {
                            pause = Some(reply);
                            asked = false;
                        }
                        Ok(Command::Stop) => {
                            set(&s, State::Ended("stopped".into(), None));
                            return;
                        }
                        Err(mpsc::TryRecvError::Empty) => break,
                        // The host dropped us: stop.
                        Err(mpsc::TryRecvError::Disconnected) => return,
                    }
                }
                if pause.is_some() && !asked {
                    // False while rewinding: ask again after the next slice.
                    asked = vessel.request_unwind();
                }
                let slice = vessel.run_slice();
                *s.run_ms.lock().unwrap_or_else(|p| p.into_inner()) =
                    started.elapsed().as_millis() as u64;
                s.memory_bytes.store(
                    vessel.memory().len() as u64,
                    std::sync::atomic::Ordering::Relaxed,
                );
                match slice {
                    Slice::Yielded => {
                        if let Some(p) = pace {
                            std::thread::sleep(p);
                        }
                    }
                    Slice::Unwound => {
                        let at = Instant::now();
                        // Unwound from inside a blocking call: the pause was
                        // raised from outside, its command is still queued.
                        while pause.is_none() {
                            match rx.recv_timeout(PAUSE_COMMAND_WAIT) {
                                Ok(Command::Pause(reply)) => pause = Some(reply),
                                Ok(Command::CopyMemory(reply)) => {
                                    let _ = reply.send(vessel.memory().to_vec());
                                }
                                Ok(Command::Stop) | Err(_) => break,
                            }
                        }
                        let capture = vessel.capture_state(0).map_err(|e| e.to_string());
                        set(&s, State::Paused);
                        match pause.take() {
                            Some(reply) => {
                                let _ = reply.send(capture.map(|capture| Paused {
                                    capture,
                                    vessel,
                                    at,
                                }));
                            }
                            None => set(
                                &s,
                                State::Ended("unwound with nobody to capture it".into(), None),
                            ),
                        }
                        return;
                    }
                    Slice::Exited(exit) => {
                        let (text, code) = match exit {
                            Exit::Code(c) => (format!("exit code {c}"), Some(c as i32)),
                            Exit::Trap(t) => (format!("trap: {t}"), None),
                        };
                        // A pause asked of an ending vessel: it ended first.
                        if let Some(reply) = pause.take() {
                            let _ = reply.send(Err(format!(
                                "the vessel ended before it could move ({text})"
                            )));
                        }
                        log.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .bytes
                            .shrink_to_fit();
                        set(&s, State::Ended(text, code));
                        return;
                    }
                }
            }
        })?;
    Ok(Runner {
        interrupt,
        tx,
        shared,
        _thread: thread,
    })
}

/// Test pacing: `MESHNODE_TEST_SLICE_PACE_MS=N` sleeps N ms after every
/// slice, so that the migration tests can move even a short program several
/// times while it runs. Never set in production; the workload is otherwise
/// unchanged (same instructions, same migration points).
fn slice_pace() -> Option<Duration> {
    let ms: u64 = std::env::var("MESHNODE_TEST_SLICE_PACE_MS")
        .ok()?
        .parse()
        .ok()?;
    (ms > 0).then(|| Duration::from_millis(ms))
}

/// Waits (polling) until `f` holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    f()
}
