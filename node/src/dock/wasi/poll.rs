//! `poll_oneoff`: clocks as deadlines on the guest's monotonic clock,
//! files and stdio, and sockets through their service hub. Every wait
//! listens to the vessel's owner (see `wait`): a migration may copy the
//! memory during it, or end it so that the vessel unwinds.

use std::time::Duration;

use protocol::wasi::DescriptorKind;

use super::abi::*;
use super::ctx::WasiCtx;
use super::rights::Op;
use super::stdio::{stdin_ready, InputSource};

/// How often a wait on sockets also looks at an inherited stdin: the hub
/// cannot wake it for stdin.
const STDIN_TICK: Duration = Duration::from_millis(10);

/// One `poll_oneoff` event: `(userdata, errno, type, nbytes, flags)`.
pub type Event = (u64, Errno, u8, u64, u16);

/// One `poll_oneoff` subscription.
pub enum Subscription {
    Clock {
        id: u32,
        timeout_ns: u64,
        absolute: bool,
    },
    FdRead(u32),
    FdWrite(u32),
}

/// A clock subscription: `(userdata, deadline on the guest monotonic clock)`.
type ClockDeadline = (u64, u64);

impl WasiCtx {
    /// Waits for subscriptions. Each subscription is `(userdata, kind)`;
    /// returns events as `(userdata, errno, type, nbytes, flags)`.
    ///
    /// Every clock subscription becomes a deadline on the guest's monotonic
    /// clock. Files and stdio other than an inherited stdin are always
    /// ready; sockets when their hub says so. If something is ready now, the
    /// call returns at once with it (and with any clock already due);
    /// otherwise it waits for the earliest deadline, stdin or a socket, and
    /// reports exactly what is ready then.
    ///
    /// `memory` is the guest's memory, which the vessel's owner may copy
    /// while the call waits. `Err(Errno::INTR)` with `interrupted` set: the
    /// call gave up its wait so that the vessel unwinds; the deadlines stay
    /// in the state, so the re-issued call waits only for what is left.
    pub fn poll(
        &mut self,
        subs: &[(u64, Subscription)],
        memory: &[u8],
    ) -> Result<Vec<Event>, Errno> {
        if subs.is_empty() {
            return Err(Errno::INVAL);
        }
        let (errors, clocks) = self.clock_deadlines(subs);
        let sockets = subs.iter().any(|(_, s)| match *s {
            Subscription::FdRead(fd) | Subscription::FdWrite(fd) => self.is_socket(fd),
            Subscription::Clock { .. } => false,
        });
        let r = if sockets {
            self.poll_with_sockets(subs, errors, &clocks, memory)
        } else {
            self.poll_without_sockets(subs, errors, &clocks, memory)
        };
        if self.interrupted {
            self.interrupt_poll(&clocks);
        }
        r
    }

    /// The deadline of every clock subscription, and an error event for
    /// each one whose clock does not exist. A call re-issued after a move
    /// waits for what was left of it.
    fn clock_deadlines(
        &mut self,
        subs: &[(u64, Subscription)],
    ) -> (Vec<Event>, Vec<ClockDeadline>) {
        let started_ns = self.clock.now_ns();
        let mut errors = Vec::new();
        let mut resumed = self
            .state
            .pending_poll_deadlines_ns
            .take()
            .map(|d| d.into_iter());
        let mut clocks = Vec::new();
        for &(userdata, ref sub) in subs {
            let Subscription::Clock {
                id,
                timeout_ns,
                absolute,
            } = *sub
            else {
                continue;
            };
            let now = match self.clock_time(id) {
                Ok(now) => now,
                Err(e) => {
                    errors.push((userdata, e, EVENTTYPE_CLOCK, 0, 0));
                    continue;
                }
            };
            let wait = if absolute {
                timeout_ns.saturating_sub(now)
            } else {
                timeout_ns
            };
            let deadline = match resumed.as_mut().and_then(|d| d.next()) {
                Some(d) => d,
                None => started_ns.saturating_add(wait),
            };
            clocks.push((userdata, deadline));
        }
        (errors, clocks)
    }

    /// `poll_oneoff` with sockets: looks at everything, and until something
    /// is ready waits for the hub to change, the earliest deadline, or the
    /// next look at stdin, or the owner rings.
    fn poll_with_sockets(
        &mut self,
        subs: &[(u64, Subscription)],
        errors: Vec<Event>,
        clocks: &[ClockDeadline],
        memory: &[u8],
    ) -> Result<Vec<Event>, Errno> {
        let earliest = clocks.iter().map(|&(_, d)| d).min();
        loop {
            // Taken before looking, so that a change while we look ends the
            // wait at once.
            let seen = self.hub_generation();
            let mut events = errors.clone();
            let mut wants_stdin = Vec::new();
            self.poll_fds(subs, &mut events, &mut wants_stdin)?;
            if !wants_stdin.is_empty() && stdin_ready(Some(Duration::ZERO))? {
                for u in wants_stdin.drain(..) {
                    events.push((u, Errno::SUCCESS, EVENTTYPE_FD_READ, 0, 0));
                }
            }
            let now = self.clock.now_ns();
            push_due(clocks, now, &mut events);
            if !events.is_empty() {
                return Ok(events);
            }
            let timeout = socket_wait_timeout(earliest, now, !wants_stdin.is_empty());
            self.wait_blocked(memory, Some(seen), timeout)?;
        }
    }

    /// Gives up a wait for a migration: the deadlines stay in the state, so
    /// the re-issued call (after the rewind) waits only for what is left.
    fn interrupt_poll(&mut self, clocks: &[ClockDeadline]) {
        self.state.pending_poll_deadlines_ns = Some(clocks.iter().map(|&(_, d)| d).collect());
    }

    /// Readiness of every fd subscription now. An inherited stdin cannot be
    /// judged without waiting: its userdata goes to `wants_stdin`.
    fn poll_fds(
        &mut self,
        subs: &[(u64, Subscription)],
        events: &mut Vec<Event>,
        wants_stdin: &mut Vec<u64>,
    ) -> Result<(), Errno> {
        for &(userdata, ref sub) in subs {
            let (fd, ty) = match *sub {
                Subscription::FdRead(fd) => (fd, EVENTTYPE_FD_READ),
                Subscription::FdWrite(fd) => (fd, EVENTTYPE_FD_WRITE),
                Subscription::Clock { .. } => continue,
            };
            // A subscription needs POLL_FD_READWRITE and the right to read
            // or write; a missing one is reported in its event.
            let op = if ty == EVENTTYPE_FD_READ {
                Op::PollRead
            } else {
                Op::PollWrite
            };
            let desc = match self.require(fd, op).and_then(|()| self.desc(fd)) {
                Ok(d) => d,
                Err(e) => {
                    events.push((userdata, e, ty, 0, 0));
                    continue;
                }
            };
            match (&desc.kind, ty) {
                (DescriptorKind::Listener(_) | DescriptorKind::Connection(_), _) => {
                    match self.socket_ready(fd, ty == EVENTTYPE_FD_WRITE) {
                        Ok(Some((e, nbytes, flags))) => {
                            events.push((userdata, e, ty, nbytes, flags))
                        }
                        Ok(None) => {}
                        Err(e) => events.push((userdata, e, ty, 0, 0)),
                    }
                }
                (DescriptorKind::Stdin, EVENTTYPE_FD_READ) => match self.stdio.stdin {
                    InputSource::Inherit => wants_stdin.push(userdata),
                    _ => events.push((userdata, Errno::SUCCESS, ty, 0, 0)),
                },
                (DescriptorKind::File { offset, .. }, EVENTTYPE_FD_READ) => {
                    let offset = *offset;
                    let size = self
                        .file(fd)
                        .and_then(|f| f.metadata().map_err(Errno::from))
                        .map(|m| m.len());
                    match size {
                        Ok(size) => events.push((
                            userdata,
                            Errno::SUCCESS,
                            ty,
                            size.saturating_sub(offset),
                            0,
                        )),
                        Err(e) => events.push((userdata, e, ty, 0, 0)),
                    }
                }
                (DescriptorKind::File { .. }, _)
                | (DescriptorKind::Stdout, EVENTTYPE_FD_WRITE)
                | (DescriptorKind::Stderr, EVENTTYPE_FD_WRITE) => {
                    events.push((userdata, Errno::SUCCESS, ty, 0, 0))
                }
                _ => events.push((userdata, Errno::BADF, ty, 0, 0)),
            }
        }
        Ok(())
    }

    /// `poll_oneoff` without sockets: files and stdio are answered at once;
    /// otherwise it sleeps until the earliest deadline, or waits for stdin.
    fn poll_without_sockets(
        &mut self,
        subs: &[(u64, Subscription)],
        mut events: Vec<Event>,
        clocks: &[ClockDeadline],
        memory: &[u8],
    ) -> Result<Vec<Event>, Errno> {
        let earliest = clocks.iter().map(|&(_, d)| d).min();
        let mut wants_stdin = Vec::new();
        self.poll_fds(subs, &mut events, &mut wants_stdin)?;
        if !events.is_empty() {
            push_due(clocks, self.clock.now_ns(), &mut events);
            return Ok(events);
        }
        if !wants_stdin.is_empty() {
            let now = self.clock.now_ns();
            let timeout = earliest.map(|d| Duration::from_nanos(d.saturating_sub(now)));
            // The node's own stdin (`meshnode run` only): a wait the owner
            // cannot reach; no vessel of a mesh inherits stdin.
            if stdin_ready(timeout)? {
                for u in wants_stdin {
                    events.push((u, Errno::SUCCESS, EVENTTYPE_FD_READ, 0, 0));
                }
            }
        } else if let Some(deadline) = earliest {
            self.sleep_until(deadline, memory)?;
        } else {
            // Only unanswerable subscriptions and no clock: nothing can wake us.
            return Err(Errno::NOTSUP);
        }
        // The earliest deadline has passed unless stdin woke us first; the
        // sleep never ends early, so at least one clock is due then.
        let now = self.clock.now_ns();
        push_due(clocks, now, &mut events);
        if events.is_empty() {
            // stdin's poll ended at the timeout, a hair before our clock.
            push_due(clocks, earliest.unwrap_or(now).max(now), &mut events);
        }
        Ok(events)
    }

    /// Sleeps until `deadline` on the guest's monotonic clock, attending to
    /// the owner whenever it rings; never wakes before the deadline unless
    /// the owner wants the vessel to unwind (`Err(Errno::INTR)`).
    fn sleep_until(&mut self, deadline: u64, memory: &[u8]) -> Result<(), Errno> {
        loop {
            let now = self.clock.now_ns();
            if now >= deadline {
                return Ok(());
            }
            self.wait_blocked(memory, None, Some(Duration::from_nanos(deadline - now)))?;
        }
    }
}

/// How long a wait on sockets may last: until the earliest deadline, and
/// no longer than the next look at stdin (the hub cannot wake it for stdin).
fn socket_wait_timeout(earliest: Option<u64>, now: u64, wants_stdin: bool) -> Option<Duration> {
    let timeout = earliest.map(|d| Duration::from_nanos(d.saturating_sub(now)));
    if wants_stdin {
        return Some(timeout.map_or(STDIN_TICK, |t| t.min(STDIN_TICK)));
    }
    timeout
}

/// Adds an event for every clock whose deadline is `now` or earlier.
fn push_due(clocks: &[ClockDeadline], now: u64, events: &mut Vec<Event>) {
    for &(userdata, deadline) in clocks {
        if deadline <= now {
            events.push((userdata, Errno::SUCCESS, EVENTTYPE_CLOCK, 0, 0));
        }
    }
}
