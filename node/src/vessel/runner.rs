//! The thread that runs one vessel in fuel slices, and the commands it
//! takes: copy the memory for a pre-copy round (the vessel keeps running),
//! pause at the next migration point (the vessel unwinds and is captured),
//! or stop.
//!
//! Commands wait in an [`Inbox`]. The thread takes them between two slices,
//! and a vessel blocked in a host call (a sleep, a socket) hears of them
//! at once: the inbox is the dock's [`Owner`], and [`Runner::send`] rings
//! the doorbell that wakes the call (dock::wasi's `wait`). The call copies
//! the memory right there, which is exact because the guest runs no code
//! while it waits; for a pause it gives up its wait and the vessel unwinds
//! from inside it. A stop, or the host dropping its [`Runner`] (the node
//! shuts down, or forgets the vessel), ends any wait, also of a call that
//! cannot unwind: the run ends there, the thread ends and frees the
//! vessel's memory, and only then is the vessel reported ended, so a
//! vessel that no longer counts toward the node's vessel limit holds
//! nothing any more (issue 14, item 9).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use protocol::vessel::VesselId;
use tokio::sync::oneshot;

use super::lease_gate::{LeaseGate, HELD_POLL};
use super::log::VesselLog;
use crate::boot_clock::BootInstant;
use crate::dock::dirty::{WriteMark, WriteTracker};
use crate::dock::wasi::{Attend, Doorbell, Owner, WasiCtx};
use crate::dock::{Capture, Exit, Slice, Vessel};

/// A copy of a vessel's memory, and when it was taken as write tracking
/// counts (`dock::dirty`): a final pause asks which chunks were written
/// since, and compares only those with the copy.
pub struct MemoryCopy {
    pub bytes: Vec<u8>,
    pub mark: WriteMark,
}

pub enum Command {
    /// Copy the memory as it is between two slices, or inside a host call
    /// that waits.
    CopyMemory(oneshot::Sender<MemoryCopy>),
    /// Unwind at the next migration point, or from inside a blocking call
    /// that waits, and hand over the capture.
    Pause(oneshot::Sender<Result<Paused, String>>),
    /// Unwind at the next migration point (or from inside a blocking call
    /// that waits), hand the state to the function, then rewind in place
    /// and run on: a periodic checkpoint. The function runs in the pause,
    /// on the vessel's thread, so it must only take what it needs and
    /// leave the slow work (hashing, writing) to others.
    AtPoint(AtPointFn),
    Stop,
}

/// What a checkpoint sees in its pause.
pub struct AtPoint<'a> {
    /// The state, without the memory (`capture.memory` is empty).
    pub capture: Capture,
    /// The memory, in place.
    pub memory: &'a [u8],
    /// Which pages of it were written, and when last asked.
    pub writes: &'a crate::dock::dirty::WriteTracker,
    /// The vessel's WASI context (to ask which files changed).
    pub wasi: &'a mut WasiCtx,
    /// When the vessel stopped running.
    pub at: Instant,
}

/// Why a checkpoint's function got no state to see.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AtPointRefused {
    /// A pause (a migration's final round, a clean stop) came first: the
    /// vessel is handed over, not run on.
    #[error("it paused to move away first")]
    Pausing,
    #[error("the vessel ended first ({0})")]
    Ended(String),
    /// It unwound, but its state could not be taken (it runs on).
    #[error("cannot capture its state: {0}")]
    Capture(String),
}

/// The function a checkpoint runs in the pause: `Err` says why there is
/// no state to take.
pub type AtPointFn = Box<dyn FnOnce(Result<AtPoint<'_>, AtPointRefused>) + Send>;

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

/// The commands sent to one vessel and not taken yet.
#[derive(Default)]
struct Queue {
    commands: VecDeque<Command>,
    /// A pause or a stop was sent, or the host dropped its [`Runner`]: the
    /// vessel must unwind (or end) and never run on here.
    unwind: bool,
    /// A stop was sent, or the host dropped its [`Runner`]: the vessel is
    /// not wanted any more, and any wait ends (`Attend::End`).
    end: bool,
    /// Checkpoints asked for and not served yet: the vessel unwinds for
    /// them (also from inside a wait), and runs on afterwards.
    at_points: usize,
    /// The host dropped its [`Runner`]: nobody will ask anything more.
    closed: bool,
    /// The thread has ended: a command sent now would never be taken.
    ended: bool,
}

/// Where the host's commands wait for the vessel's thread.
struct Inbox {
    queue: Mutex<Queue>,
    /// The vessel's write tracking, for copies taken inside a wait.
    writes: Arc<WriteTracker>,
    /// Whether the vessel's lease lets it run (`lease_gate`).
    gate: Arc<LeaseGate>,
}

impl Inbox {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every queued command, and whether the host has gone.
    fn take(&self) -> (Vec<Command>, bool) {
        let mut q = self.lock();
        (q.commands.drain(..).collect(), q.closed)
    }

    /// The thread ends: commands still queued are dropped (their senders
    /// learn it), and later ones are refused.
    fn end(&self) {
        let mut q = self.lock();
        q.ended = true;
        q.commands.clear();
    }
}

impl Owner for Inbox {
    /// Inside a host call that waits: copies the memory for every queued
    /// copy request (the guest runs no code meanwhile, so this is the
    /// memory a slice end would show), and leaves the rest for the thread.
    fn attend(&self, memory: &[u8]) -> Attend {
        let (copies, attend) = {
            let mut q = self.lock();
            let mut copies = Vec::new();
            let mut rest = VecDeque::new();
            for cmd in q.commands.drain(..) {
                match cmd {
                    Command::CopyMemory(reply) => copies.push(reply),
                    other => rest.push_back(other),
                }
            }
            q.commands = rest;
            let attend = if q.end {
                Attend::End
            } else if q.unwind || q.at_points > 0 {
                Attend::Unwind
            } else {
                Attend::Wait
            };
            (copies, attend)
        };
        // Copied without the lock: a send meanwhile does not wait for it.
        for reply in copies {
            let _ = reply.send(copy_of(memory, &self.writes));
        }
        attend
    }

    fn may_run(&self) -> bool {
        self.gate.may_run(BootInstant::now())
    }

    fn guest_stopped(&self) {
        self.gate.ran_until(BootInstant::now());
    }
}

/// A copy of `memory` and the mark that dates it: taken where the guest
/// runs no code (between slices, or inside a wait), so the two agree.
fn copy_of(memory: &[u8], writes: &WriteTracker) -> MemoryCopy {
    let (_, mark) = writes.look(memory, None);
    MemoryCopy {
        bytes: memory.to_vec(),
        mark,
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
    /// Its lease does not let it run: its thread runs no guest code.
    held: std::sync::atomic::AtomicBool,
    /// When its thread started: until it ends, its run time is the time
    /// since then, read live. `run_ms` alone is written after each slice,
    /// and a vessel that sleeps in one host call finishes no slice for
    /// minutes (`ps` showed 0.0s after 4 minutes, issue 16).
    started: Mutex<Option<Instant>>,
    /// Fuel its slices used here (`/metrics`).
    fuel_used: std::sync::atomic::AtomicU64,
}

/// The handle the host keeps.
pub struct Runner {
    inbox: Arc<Inbox>,
    /// Wakes the vessel's host call if it waits, so that it attends to the
    /// inbox.
    bell: Arc<Doorbell>,
    shared: Arc<Shared>,
    thread: JoinHandle<()>,
}

impl Runner {
    /// Queues a command for the vessel: it is taken at the end of the
    /// running slice, or at once if the vessel waits in a host call.
    pub fn send(&self, cmd: Command) -> Result<(), String> {
        {
            let mut q = self.inbox.lock();
            if q.ended {
                return Err("the vessel ended before it could move".to_string());
            }
            q.unwind |= matches!(cmd, Command::Pause(_) | Command::Stop);
            q.end |= matches!(cmd, Command::Stop);
            q.at_points += usize::from(matches!(cmd, Command::AtPoint(_)));
            q.commands.push_back(cmd);
        }
        self.bell.ring();
        Ok(())
    }

    /// Whether the vessel's thread has ended (and with it the vessel's
    /// instance and memory, unless a pause handed them over).
    pub fn finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// How it ended: (text, exit code or None for a trap). Set only once
    /// the instance and its memory are freed (or handed over by a pause).
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
        let last_slice = *self.shared.run_ms.lock().unwrap_or_else(|p| p.into_inner());
        let ended = matches!(
            *self.shared.state.lock().unwrap_or_else(|p| p.into_inner()),
            State::Ended(..)
        );
        let started = *self
            .shared
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match started {
            Some(at) if !ended => (at.elapsed().as_millis() as u64).max(last_slice),
            _ => last_slice,
        }
    }

    /// The vessel's linear memory in bytes, as of its last slice.
    pub fn memory_bytes(&self) -> u64 {
        self.shared
            .memory_bytes
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fuel its slices used on this node, as of its last slice.
    pub fn fuel_used(&self) -> u64 {
        self.shared
            .fuel_used
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether its lease keeps it from running (between slices: a vessel
    /// held inside a call that waited is not told apart from a waiting one).
    pub fn held(&self) -> bool {
        self.shared.held.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for Runner {
    /// The host forgot the vessel: its thread ends at its next look at the
    /// inbox, also from inside a wait.
    fn drop(&mut self) {
        {
            let mut q = self.inbox.lock();
            q.closed = true;
            q.unwind = true;
            q.end = true;
        }
        self.bell.ring();
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
    gate: Arc<LeaseGate>,
) -> std::io::Result<Runner> {
    let inbox = Arc::new(Inbox {
        queue: Mutex::default(),
        writes: vessel.write_tracker().clone(),
        gate: gate.clone(),
    });
    let bell = vessel.wasi_mut().set_owner(inbox.clone());
    let shared = Arc::new(Shared {
        state: Mutex::new(State::Running),
        run_ms: Mutex::new(0),
        memory_bytes: std::sync::atomic::AtomicU64::new(vessel.memory().len() as u64),
        held: std::sync::atomic::AtomicBool::new(false),
        started: Mutex::new(None),
        fuel_used: std::sync::atomic::AtomicU64::new(0),
    });
    let worker = Worker {
        gate,
        vessel,
        inbox: inbox.clone(),
        shared: shared.clone(),
        log,
        pace: slice_pace(),
        pause: None,
        at_points: Vec::new(),
        asked: false,
        outcome: None,
    };
    let thread = std::thread::Builder::new()
        .name(format!("vessel-{id}"))
        .spawn(move || worker.run())?;
    Ok(Runner {
        inbox,
        bell,
        shared,
        thread,
    })
}

type PauseReply = oneshot::Sender<Result<Paused, String>>;

/// The vessel's thread: runs slices and takes commands between them.
struct Worker {
    /// Whether its lease lets the vessel run; looked at before each slice.
    gate: Arc<LeaseGate>,
    vessel: Vessel,
    inbox: Arc<Inbox>,
    shared: Arc<Shared>,
    log: Arc<Mutex<VesselLog>>,
    pace: Option<Duration>,
    /// The pause asked for, until the vessel unwinds.
    pause: Option<PauseReply>,
    /// The checkpoints asked for, until the vessel unwinds.
    at_points: Vec<AtPointFn>,
    /// Whether the unwind was requested of the vessel yet.
    asked: bool,
    /// How the vessel ended, told to the host only once the vessel is
    /// freed ([`Worker::finish`]).
    outcome: Option<State>,
}

/// What the thread does after taking the queued commands.
enum Next {
    Run,
    /// The vessel ended here (stopped, or the host dropped its runner).
    End,
}

impl Worker {
    fn run(mut self) {
        let started = Instant::now();
        *self
            .shared
            .started
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(started);
        loop {
            if let Next::End = self.take_commands() {
                break;
            }
            if (self.pause.is_some() || !self.at_points.is_empty()) && !self.asked {
                // False while rewinding: ask again after the next slice.
                self.asked = self.vessel.request_unwind();
            }
            if !self.lease_lets_run() {
                continue;
            }
            let slice = self.vessel.run_slice();
            self.gate.ran_until(BootInstant::now());
            *self.shared.run_ms.lock().unwrap_or_else(|p| p.into_inner()) =
                started.elapsed().as_millis() as u64;
            self.shared.memory_bytes.store(
                self.vessel.memory().len() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
            self.shared.fuel_used.store(
                self.vessel.fuel_used(),
                std::sync::atomic::Ordering::Relaxed,
            );
            match slice {
                Slice::Yielded => {
                    if let Some(p) = self.pace {
                        std::thread::sleep(p);
                    }
                }
                Slice::Unwound => {
                    // A pause or a stop queued meanwhile wins over the
                    // checkpoints: it is looked at first.
                    if let Next::End = self.take_commands() {
                        break;
                    }
                    if self.pause.is_none() && !self.at_points.is_empty() {
                        self.serve_at_points();
                        continue;
                    }
                    return self.unwound();
                }
                // Ended from inside a wait for a stop or the host's
                // leaving: said as the stop says it, not as a trap.
                Slice::Exited(_) if self.inbox.lock().end => {
                    self.take_commands();
                    break;
                }
                Slice::Exited(exit) => {
                    self.exited(exit);
                    break;
                }
            }
        }
        self.finish();
    }

    /// Whether the vessel's lease lets it run a slice now. If not, waits a
    /// little for it (the caller then takes the commands that came
    /// meanwhile, and asks again): a held vessel runs no guest code.
    fn lease_lets_run(&self) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        if self.gate.may_run(BootInstant::now()) {
            self.shared.held.store(false, Relaxed);
            return true;
        }
        self.shared.held.store(true, Relaxed);
        self.gate.wait_may_run(HELD_POLL);
        false
    }

    /// The thread ends: later commands are refused, the vessel's instance
    /// and memory are freed, and only then is the outcome told, so that a
    /// vessel reported ended (and no longer counted toward the node's
    /// vessel limit) holds nothing.
    fn finish(self) {
        let Worker {
            vessel,
            inbox,
            shared,
            outcome,
            ..
        } = self;
        inbox.end();
        drop(vessel);
        if let Some(state) = outcome {
            set(&shared, state);
        }
    }

    /// Takes the queued commands between two slices.
    fn take_commands(&mut self) -> Next {
        let (commands, closed) = self.inbox.take();
        for cmd in commands {
            match cmd {
                Command::CopyMemory(reply) => {
                    let writes = self.vessel.write_tracker().clone();
                    let _ = reply.send(copy_of(self.vessel.memory(), &writes));
                }
                Command::Pause(reply) => {
                    self.pause = Some(reply);
                    self.asked = false;
                }
                Command::AtPoint(f) => self.at_points.push(f),
                Command::Stop => {
                    self.outcome = Some(State::Ended("stopped".into(), None));
                    return Next::End;
                }
            }
        }
        // The host dropped us: stop.
        if closed {
            return Next::End;
        }
        Next::Run
    }

    /// Serves the checkpoints in the pause, then rewinds the vessel in
    /// place; the next slice runs on from where it stopped.
    fn serve_at_points(&mut self) {
        let at = Instant::now();
        let waiting = std::mem::take(&mut self.at_points);
        self.inbox.lock().at_points -= waiting.len();
        self.asked = false;
        let capture = self
            .vessel
            .capture_state_and_rewind(0)
            .map_err(|e| AtPointRefused::Capture(e.to_string()));
        let writes = self.vessel.write_tracker().clone();
        let (memory, wasi) = self.vessel.memory_and_wasi();
        for f in waiting {
            f(capture.clone().map(|capture| AtPoint {
                capture,
                memory,
                writes: &writes,
                wasi: &mut *wasi,
                at,
            }));
        }
    }

    /// The vessel unwound, at a migration point or from inside a blocking
    /// call that gave up its wait: the command that asked for it is a pause
    /// (taken already, or still queued), a stop, or the host's leaving.
    fn unwound(mut self) {
        let at = Instant::now();
        if let Next::End = self.take_commands() {
            return self.finish();
        }
        for f in self.at_points.drain(..) {
            f(Err(AtPointRefused::Pausing));
        }
        let Some(reply) = self.pause.take() else {
            self.outcome = Some(State::Ended(
                "unwound with nobody to capture it".into(),
                None,
            ));
            return self.finish();
        };
        let capture = self.vessel.capture_state(0).map_err(|e| e.to_string());
        set(&self.shared, State::Paused);
        self.inbox.end();
        let vessel = self.vessel;
        let _ = reply.send(capture.map(|capture| Paused {
            capture,
            vessel,
            at,
        }));
    }

    /// The vessel ended by itself: an exit or a trap.
    fn exited(&mut self, exit: Exit) {
        let (text, code) = match exit {
            Exit::Code(c) => (format!("exit code {c}"), Some(c as i32)),
            Exit::Trap(t) => (format!("trap: {t}"), None),
        };
        for f in self.at_points.drain(..) {
            f(Err(AtPointRefused::Ended(text.clone())));
        }
        // A pause asked of an ending vessel: it ended first.
        if let Some(reply) = self.pause.take() {
            let _ = reply.send(Err(format!(
                "the vessel ended before it could move ({text})"
            )));
        }
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .bytes
            .shrink_to_fit();
        self.outcome = Some(State::Ended(text, code));
    }
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
