//! How a host call that blocks hears from the vessel's owner.
//!
//! A vessel runs in fuel slices, and its owner (the node's runner thread)
//! takes commands between two slices. A vessel blocked in a host call
//! (`poll_oneoff` on a sleep, `sock_accept`, `sock_recv`, a full
//! `sock_send`) reaches the end of its slice only when the call returns,
//! which may be an hour away. So every wait of the WASI layer also listens
//! to the owner: the owner rings a [`Doorbell`] with each command, the wait
//! wakes, and asks the [`Owner`] to [`attend`](Owner::attend) with the
//! guest's memory as it stands.
//!
//! - A command that only reads memory (a copy for a pre-copy round) is
//!   served right there: while the call waits the guest runs no code, so
//!   its memory is exactly what it would be at the end of the slice. The
//!   call then waits on, for what is left of its wait; nothing it waits for
//!   is lost (a socket's bytes stay in the hub), and a sleep still ends at
//!   its deadline on the guest's clock.
//! - A command that needs the vessel's frames (a pause, a stop; a
//!   checkpoint later) makes the call give up its wait, if it is a
//!   blocking import of the rewriter (docs/rewriter.md §3.4): it has done
//!   nothing the guest can see, the vessel unwinds from inside it, and on
//!   rewind the same call is issued again and waits for what was left. A
//!   call that cannot unwind (`sock_send`, or any call of a module that is
//!   not instrumented) keeps waiting; the command waits for the slice end.
//! - A command that ends the vessel (a stop, or the owner letting it go at
//!   a node's shutdown) ends every wait, whether or not the call could
//!   unwind: nothing of the vessel is kept, so nothing needs to be resumed.
//!   The call returns at once and its host function ends the vessel's run
//!   (a trap of kind [`ENDED_BY_OWNER`]); the thread then ends and frees
//!   the memory. This is what makes a stop reach a vessel blocked in
//!   `sock_send` or in any call of a module that is not instrumented
//!   (issue 14, item 9).

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use super::abi::Errno;
use super::ctx::WasiCtx;
use crate::dock::services::ServiceHub;

/// What a waiting call does after its owner attended to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attend {
    /// Nothing (more) is asked of it: wait on.
    Wait,
    /// The owner wants the vessel to unwind (a pause, a checkpoint): give
    /// up the wait if this call can.
    Unwind,
    /// The owner wants the vessel gone (a stop, or it let the vessel go):
    /// give up the wait whatever the call, and end the run.
    End,
}

/// The trap text of a run ended from inside a waiting host call because
/// its owner wanted the vessel gone (see [`Attend::End`]).
pub const ENDED_BY_OWNER: &str = "ended by its owner while waiting in a host call";

/// The vessel's owner, as a blocked host call sees it.
pub trait Owner: Send + Sync {
    /// Serves, with the guest's memory as it stands, every queued command
    /// that needs only the memory, and says whether one that needs the
    /// vessel to unwind, or to end, is queued. Called on the vessel's thread, inside a
    /// host call, before each wait and after each ring.
    fn attend(&self, memory: &[u8]) -> Attend;

    /// Whether the vessel may run guest code now (its lease holds, issue
    /// 15). A call that waited does not return to the guest until it may.
    fn may_run(&self) -> bool {
        true
    }

    /// The guest stopped running code: a call is about to wait (the lease
    /// gate measures how long guest code ran unchecked).
    fn guest_stopped(&self) {}
}

/// Rung by the owner with each command; wakes a waiting host call.
pub struct Doorbell {
    rings: Mutex<u64>,
    rung: Condvar,
    /// The vessel's socket hub: a call that waits for it waits on the hub's
    /// own condition, so a ring wakes that too.
    hub: Option<Arc<dyn ServiceHub>>,
}

impl Doorbell {
    fn new(hub: Option<Arc<dyn ServiceHub>>) -> Doorbell {
        Doorbell {
            rings: Mutex::new(0),
            rung: Condvar::new(),
            hub,
        }
    }

    /// Wakes the vessel's waiting call, if any, so that it attends to the
    /// owner. Ring after the command is queued: a call that looked at the
    /// queue before it then wakes at once.
    pub fn ring(&self) {
        *self.rings.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.rung.notify_all();
        if let Some(hub) = &self.hub {
            hub.wake();
        }
    }

    fn rings(&self) -> u64 {
        *self.rings.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until a ring after `seen`, or `timeout` (`None`: no timeout).
    fn wait(&self, seen: u64, timeout: Option<Duration>) {
        let guard = self.rings.lock().unwrap_or_else(|p| p.into_inner());
        let still = |rings: &mut u64| *rings == seen;
        match timeout {
            None => drop(self.rung.wait_while(guard, still)),
            Some(t) => drop(self.rung.wait_timeout_while(guard, t, still)),
        }
    }
}

/// The owner and its doorbell, as the WASI context keeps them.
#[derive(Clone)]
pub(super) struct OwnerLink {
    owner: Arc<dyn Owner>,
    bell: Arc<Doorbell>,
}

impl WasiCtx {
    /// Lets `owner` reach the vessel while it waits in a host call. Returns
    /// the doorbell the owner rings after queueing each command.
    pub fn set_owner(&mut self, owner: Arc<dyn Owner>) -> Arc<Doorbell> {
        let bell = Arc::new(Doorbell::new(self.hub.clone()));
        self.owner = Some(OwnerLink {
            owner,
            bell: bell.clone(),
        });
        bell
    }

    /// The one way a WASI call waits: until the hub's generation is no
    /// longer `hub_seen` (when given; taken before the call looked at what
    /// it waits for), `timeout` passes, or the owner rings. Before waiting
    /// it lets the owner attend, with `memory`, the guest's memory.
    ///
    /// Returns `Err(Errno::INTR)` with `interrupted` set when the owner
    /// wants the vessel to unwind and the running call is a blocking import
    /// of an instrumented module: the call must then return at once, having
    /// done nothing the guest can see, and its host function unwinds the
    /// vessel. Returns `Err(Errno::INTR)` with `ended` set, for any call,
    /// when the owner wants the vessel gone: its host function ends the
    /// run. Returns `Ok` on any wake; the caller looks again.
    pub(super) fn wait_blocked(
        &mut self,
        memory: &[u8],
        hub_seen: Option<u64>,
        timeout: Option<Duration>,
    ) -> Result<(), Errno> {
        let Some(link) = self.owner.clone() else {
            match hub_seen {
                Some(seen) => self.wait_hub(seen, timeout),
                None => std::thread::sleep(timeout.unwrap_or(Duration::MAX)),
            }
            return Ok(());
        };
        // Taken before attending: a command queued after it rings, and the
        // wait below ends at once.
        let rings = link.bell.rings();
        link.owner.guest_stopped();
        self.attend_owner(&link, memory)?;
        match (hub_seen, &self.hub) {
            // A ring bumps the hub's generation as well.
            (Some(seen), Some(hub)) => {
                hub.wait(seen, timeout);
            }
            _ => link.bell.wait(rings, timeout),
        }
        self.wait_for_lease(&link, memory)
    }

    /// Lets the owner attend; `Err(INTR)` if the call must give up its
    /// wait (see [`WasiCtx::wait_blocked`]).
    fn attend_owner(&mut self, link: &OwnerLink, memory: &[u8]) -> Result<(), Errno> {
        match link.owner.attend(memory) {
            Attend::End => {
                self.ended = true;
                Err(Errno::INTR)
            }
            Attend::Unwind if self.interruptible => {
                self.interrupted = true;
                Err(Errno::INTR)
            }
            Attend::Unwind | Attend::Wait => Ok(()),
        }
    }

    /// A call that waited returns to the guest only while the vessel's
    /// lease lets it run (issue 15): a host that lost its lease while the
    /// vessel slept must not run it on. Meanwhile it attends to the owner
    /// as any wait does (a stop ends it, a pause unwinds it).
    fn wait_for_lease(&mut self, link: &OwnerLink, memory: &[u8]) -> Result<(), Errno> {
        while !link.owner.may_run() {
            let rings = link.bell.rings();
            self.attend_owner(link, memory)?;
            link.bell
                .wait(rings, Some(crate::vessel::lease_gate::HELD_POLL));
        }
        Ok(())
    }
}
