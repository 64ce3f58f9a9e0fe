//! The processes a run owns: each node's `meshnode start` and the servers
//! outside the mesh. Starting a node, noticing one that exited by itself,
//! and stopping them all at the end.

use std::process::Child;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::ctx::{interrupted, Ctx};
use crate::record::MarkKind;
use crate::scenario::Discovery;

/// How long nodes get to stop after SIGTERM at the end.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How often a stopping node, or a starting one, is looked at.
const STOP_POLL: Duration = Duration::from_millis(20);
const READY_POLL: Duration = Duration::from_millis(100);

/// The processes of a run.
pub struct Procs {
    /// Per node, its `meshnode start` (None before its first start).
    pub nodes: Vec<Option<Child>>,
    pub servers: Vec<Child>,
}

impl Procs {
    pub fn new(nodes: usize) -> Procs {
        Procs {
            nodes: (0..nodes).map(|_| None).collect(),
            servers: Vec::new(),
        }
    }

    /// Starts node `i`'s `meshnode start`, with a node that is up as its
    /// peer (unless discovery is mDNS only).
    pub fn start_node(&mut self, ctx: &Ctx, i: usize) -> Result<(), String> {
        let n = &ctx.nodes[i];
        let peers = peers_for(ctx, i);
        let child = n
            .start(&ctx.sc, &ctx.bins, &ctx.user_key, &peers)
            .map_err(|e| format!("cannot start node {}: {e}", n.name))?;
        self.nodes[i] = Some(child);
        n.up.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Marks the nodes whose `meshnode start` exited by itself (a crash, or
    /// a fault injection's exit) as down, and says so with the end of its
    /// log: CLI calls, checks and clients then treat it as a killed node,
    /// and a `restart` starts it again.
    pub fn reap_exited(&mut self, ctx: &Ctx) {
        for (i, c) in self.nodes.iter_mut().enumerate() {
            let n = &ctx.nodes[i];
            if !n.is_up() {
                continue;
            }
            if let Some(Ok(Some(status))) = c.as_mut().map(|c| c.try_wait()) {
                n.up.store(false, Ordering::SeqCst);
                let last = n.log_tail(1);
                ctx.rec.say(format!(
                    "node {} exited by itself ({status}); its log ends: {}",
                    n.name,
                    last.trim()
                ));
                ctx.rec
                    .mark(MarkKind::Event, format!("{} exited ({status})", n.name));
            }
        }
    }

    /// A node that exited while the mesh was forming, in words.
    pub fn exited_early(&mut self, ctx: &Ctx) -> Option<String> {
        self.nodes.iter_mut().enumerate().find_map(|(i, c)| {
            let status = c.as_mut()?.try_wait().ok()??;
            let n = &ctx.nodes[i];
            Some(format!(
                "node {} exited ({status}) before the mesh was up; its log ends:\n{}",
                n.name,
                n.log_tail(20)
            ))
        })
    }

    /// Waits until node `i` has written its addresses.
    pub fn wait_ready(&mut self, ctx: &Ctx, i: usize, deadline: Instant) -> Result<(), String> {
        let n = &ctx.nodes[i];
        loop {
            if let Some(Ok(Some(status))) = self.nodes[i].as_mut().map(|c| c.try_wait()) {
                return Err(format!(
                    "node {} exited ({status}) while starting; its log ({}) ends:\n{}",
                    n.name,
                    n.log.display(),
                    n.log_tail(20)
                ));
            }
            if let Some(q) = n.ready_addr() {
                let id = q.rsplit("/p2p/").next().unwrap_or_default().to_string();
                let _ = n.peer_id.set(id);
                *n.quic.lock().unwrap() = Some(q);
                return Ok(());
            }
            if interrupted() {
                return Err("interrupted".into());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "node {} did not start within the setup timeout; its log ({}) ends:\n{}",
                    n.name,
                    n.log.display(),
                    n.log_tail(20)
                ));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    /// Kills the servers, and stops the nodes: SIGTERM, then SIGKILL after
    /// STOP_GRACE.
    pub fn stop_all(&mut self, ctx: &Ctx) {
        for s in self.servers.iter_mut() {
            let _ = s.kill();
            let _ = s.wait();
        }
        for (i, c) in self.nodes.iter_mut().enumerate() {
            if let Some(c) = c {
                // Only a child that has not been reaped: the pid of one that
                // exited by itself (reaped by `reap_exited`) may be another
                // process's by now.
                if let Ok(None) = c.try_wait() {
                    // SAFETY: signals a child we own, still running or a zombie.
                    unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
                }
                ctx.nodes[i].up.store(false, Ordering::SeqCst);
            }
        }
        let deadline = Instant::now() + STOP_GRACE;
        for c in self.nodes.iter_mut().flatten() {
            while Instant::now() < deadline {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(STOP_POLL);
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn peers_for(ctx: &Ctx, i: usize) -> Vec<String> {
    if ctx.sc.discovery == Discovery::Mdns {
        return Vec::new();
    }
    // The first other node that is up and known.
    ctx.nodes
        .iter()
        .filter(|n| n.index != i && n.is_up())
        .filter_map(|n| n.quic.lock().unwrap().clone())
        .take(1)
        .collect()
}
