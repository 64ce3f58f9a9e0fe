//! A handoff's source side: the migration layer's real source machine
//! ([`Source`], stop-and-copy: the final round only) driven on the
//! simulated host, as `mesh::migrate` drives it: it pauses the vessel
//! (a paused host runs nothing), packs, asks the destination for a nonce,
//! offers the final image with the handoff certificate its voters signed
//! (the destination prepares it in its answer, as the node's final offer
//! with its push), writes its commit point (`Left`) once prepared, and
//! sends the commit until it is acknowledged. Every failure before the
//! commit point is decided by the machine's failure table: retry, or
//! resume here and tell the destination the move is off.

use protocol::membership::Nonce;
use protocol::refusal::Refusal;

use super::handoff::{self, Handing};
use super::node::{local, node_of};
use super::{Msg, NodeId, World};
use crate::migration::error::ErrorKind;
use crate::migration::source::{Input, Output, Source, SourcePlan};

/// How long a request of the source waits for its answer (local time).
const REQUEST_TIMEOUT_MS: u64 = 1_000;

/// The handoff's certificate formed: the machine starts the final round.
pub fn start(w: &mut World, host: NodeId, mut h: Handing) {
    let (machine, out) = Source::start(SourcePlan { warm_rounds: 0 });
    h.machine = Some(machine);
    w.nodes[host].handing = Some(h);
    perform(w, host, out);
}

/// Feeds `input` to the host's machine, if it still runs one.
pub fn feed(w: &mut World, host: NodeId, input: Input) {
    let Some(m) = w.nodes[host]
        .handing
        .as_mut()
        .and_then(|h| h.machine.as_mut())
    else {
        return;
    };
    let out = m.handle(input);
    perform(w, host, out);
}

fn perform(w: &mut World, host: NodeId, outputs: Vec<Output>) {
    for o in outputs {
        if w.nodes[host].handing.is_none() {
            return;
        }
        perform_one(w, host, o);
    }
}

fn perform_one(w: &mut World, host: NodeId, output: Output) {
    if !matches!(output, Output::Phase(_) | Output::RoundDone { .. }) {
        w.note(format!("n{host} handoff source: {output:?}"));
    }
    match output {
        // The vessel stops at once (a paused host runs nothing), and its
        // image packs at once: neither takes simulated time.
        Output::Pause => feed(w, host, Input::Paused),
        Output::Pack => feed(w, host, Input::Packed),
        Output::AskNonce => request(w, host, Msg::AskNonce),
        Output::Offer { nonce, .. } => {
            let h = w.nodes[host].handing.as_ref().expect("handing");
            let msg = Msg::Offer(Box::new(h.cert.clone()), h.image, nonce);
            request(w, host, msg)
        }
        // Nothing lacks (the offer's push carried it), and the destination
        // prepared in its answer: the node's driver skips both requests.
        Output::SendLacking { .. } => feed(w, host, Input::ChunksSent),
        Output::Prepare => feed(w, host, Input::Prepared),
        Output::WriteLeft => match handoff::left(w, host) {
            true => feed(w, host, Input::LeftDurable),
            false => feed(
                w,
                host,
                Input::Failed(ErrorKind::Local("no longer the owner".into())),
            ),
        },
        Output::SendCommit => {
            handoff::send_commit(w, host);
            wait(w, host);
        }
        Output::RetryAfter(d) => {
            let at = local(w, host) + d.as_millis() as u64;
            if let Some(h) = w.nodes[host].handing.as_mut() {
                h.retry_at_ms = Some(at);
            }
        }
        Output::SendAbort => {
            let h = w.nodes[host].handing.as_ref().expect("handing");
            let (epoch, image) = (h.cert.body.epoch, h.image);
            if let Some(to) = node_of(w, &h.cert.body.owner) {
                w.send(host, to, Msg::Abort(epoch, image));
            }
        }
        Output::MarkAcked => handoff::mark_acked(w, host),
        Output::Finished(result) => finished(w, host, result.map_err(|e| e.to_string())),
        // Resuming is the host's run going on once the machine is done
        // (it runs again if it still owns its epoch and holds its lease).
        Output::ResumeFromCapture
        | Output::RestartFromRecord
        | Output::CopyMemory { .. }
        | Output::RoundDone { .. }
        | Output::Phase(_) => {}
    }
}

/// Sends a request to the handoff's destination and waits for its answer.
fn request(w: &mut World, host: NodeId, msg: Msg) {
    let to = w.nodes[host]
        .handing
        .as_ref()
        .and_then(|h| node_of(w, &h.cert.body.owner));
    if let Some(to) = to {
        w.send(host, to, msg);
    }
    wait(w, host);
}

fn wait(w: &mut World, host: NodeId) {
    let until = local(w, host) + REQUEST_TIMEOUT_MS;
    if let Some(h) = w.nodes[host].handing.as_mut() {
        h.answer_by_ms = Some(until);
    }
}

/// An answer came. One the machine does not wait for (a duplicate, a
/// late one) changes nothing, and the request it waits for still times
/// out; one it takes ends the wait.
pub fn answered(w: &mut World, host: NodeId, input: Input) {
    let Some(h) = w.nodes[host].handing.as_mut() else {
        return;
    };
    let Some(m) = h.machine.as_mut() else {
        return;
    };
    let out = m.handle(input);
    if out.is_empty() {
        return;
    }
    h.answer_by_ms = None;
    perform(w, host, out);
}

/// The host's tick: a request unanswered in time failed (the peer is
/// unreachable), a retry timer fired.
pub fn tick(w: &mut World, host: NodeId) {
    let now = local(w, host);
    let Some(h) = w.nodes[host].handing.as_mut() else {
        return;
    };
    if h.answer_by_ms.is_some_and(|t| now >= t) {
        h.answer_by_ms = None;
        let why = ErrorKind::Unreachable("no answer".into());
        return feed(w, host, Input::Failed(why));
    }
    if h.retry_at_ms.is_some_and(|t| now >= t) {
        h.retry_at_ms = None;
        feed(w, host, Input::RetryDue);
    }
}

/// The destination's answers to the source's requests.
pub fn nonce(w: &mut World, host: NodeId, n: Nonce) {
    answered(w, host, Input::Nonce(n));
}

pub fn prepared(w: &mut World, from: NodeId, host: NodeId, epoch: u64, next_nonce: Nonce) {
    if is_ours(w, from, host, epoch) {
        answered(w, host, Input::Lacking { next_nonce });
    }
}

pub fn refused(w: &mut World, from: NodeId, host: NodeId, epoch: u64, r: Refusal) {
    if is_ours(w, from, host, epoch) {
        answered(w, host, Input::Failed(ErrorKind::Refused(r)));
    }
}

pub fn committed(w: &mut World, from: NodeId, host: NodeId, epoch: u64) {
    if is_ours(w, from, host, epoch) {
        answered(w, host, Input::Committed);
    }
}

fn is_ours(w: &World, from: NodeId, host: NodeId, epoch: u64) -> bool {
    w.nodes[host]
        .handing
        .as_ref()
        .is_some_and(|h| h.cert.body.epoch == epoch && node_of(w, &h.cert.body.owner) == Some(from))
}

fn finished(w: &mut World, host: NodeId, result: Result<(), String>) {
    let Some(h) = w.nodes[host].handing.take() else {
        return;
    };
    let epoch = h.cert.body.epoch;
    match result {
        Ok(()) => w.note(format!("n{host} handed off at epoch {epoch}")),
        Err(e) => {
            if !h.left {
                w.stats.handoffs_abandoned += 1;
            }
            w.note(format!("n{host} handoff at epoch {epoch} failed: {e}"));
        }
    }
}
