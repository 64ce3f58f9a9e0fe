//! The simulation's driver of the real source machine
//! ([`crate::migration::source::Source`]): it performs each output on the
//! simulated node and network and feeds back what happened, as the node's
//! driver does with real ones. Its request link retries an idempotent
//! request whose answer did not come, but never while the vessel is paused
//! (the rule of `mesh::link`).

use protocol::migrate::OfferKind;
use protocol::snapshot::Hash;
use protocol::vessel::VesselId;

use super::node::{self, LocalStep, Msg, Request, Response};
use super::{faults, liveness, Event, NodeId, World, REQUEST_TIMEOUT_MS};
use crate::migration::error::ErrorKind;
use crate::migration::record::{offer_epoch, reported_epoch, Record};
use crate::migration::source::{Input, Output, Source, SourcePlan};

/// Tries of an idempotent request whose answer did not come.
const LINK_RETRIES: u32 = 4;

/// One migration a simulated node is running as its source.
pub struct SourceRun {
    pub machine: Source,
    /// Distinguishes this run from an earlier one of the same vessel.
    pub run: u64,
    pub to: NodeId,
    /// The epoch the vessel runs under here, and the one it moves under.
    pub epoch: u64,
    pub new_epoch: u64,
    /// The image offered last (a warm round's, then the final one).
    pub image: Hash,
    /// Chunks the destination lacks, from its last answer.
    pub lacking: Vec<Hash>,
    /// The request awaiting its answer, with its body and tries.
    pub outstanding: Option<(u64, Request, u32)>,
}

pub fn start(w: &mut World, node: NodeId, vessel: VesselId, to: NodeId) {
    w.stats.started += 1;
    let n = &w.nodes[node as usize];
    let Some(epoch) = n.record(vessel).map(Record::epoch) else {
        return;
    };
    let reported = n.reported_epochs.get(&vessel).copied();
    let Some(new_epoch) = offer_epoch(epoch, reported) else {
        return;
    };
    let rounds = w.rng.below(4) as u32;
    let (machine, out) = Source::start(SourcePlan {
        warm_rounds: rounds,
    });
    let run = w.request_id();
    let image = w.fresh_hash();
    let s = SourceRun {
        machine,
        run,
        to,
        epoch,
        new_epoch,
        image,
        lacking: Vec::new(),
        outstanding: None,
    };
    w.nodes[node as usize].sources.insert(vessel, s);
    perform(w, node, vessel, out);
}

/// After a restart: a `Left` record not yet acknowledged.
pub fn finish_commit(w: &mut World, node: NodeId, vessel: VesselId, record: &Record, to: NodeId) {
    let (machine, out) = Source::finish_commit();
    let run = w.request_id();
    let e = record.epoch();
    let s = SourceRun {
        machine,
        run,
        to,
        epoch: e - 1,
        new_epoch: e,
        image: record.image(),
        lacking: Vec::new(),
        outstanding: None,
    };
    w.nodes[node as usize].sources.insert(vessel, s);
    perform(w, node, vessel, out);
}

/// Feeds `input` to the run `run` of `vessel`'s source, if it still runs.
pub fn feed(w: &mut World, node: NodeId, vessel: VesselId, run: u64, input: Input) {
    let Some(s) = w.nodes[node as usize]
        .sources
        .get_mut(&vessel)
        .filter(|s| s.run == run)
    else {
        return;
    };
    let out = s.machine.handle(input);
    perform(w, node, vessel, out);
}

fn perform(w: &mut World, node: NodeId, vessel: VesselId, outputs: Vec<Output>) {
    for o in outputs {
        if !w.nodes[node as usize].sources.contains_key(&vessel) {
            return;
        }
        perform_one(w, node, vessel, o);
    }
}

fn perform_one(w: &mut World, node: NodeId, vessel: VesselId, output: Output) {
    let s = &w.nodes[node as usize].sources[&vessel];
    let (run, to, new_epoch, image) = (s.run, s.to, s.new_epoch, s.image);
    match output {
        Output::CopyMemory { .. } => copy(w, node, vessel, run),
        Output::AskNonce => request(w, node, vessel, Request::Nonce),
        Output::Offer { kind, nonce } => {
            let image = if kind == OfferKind::Warm {
                w.fresh_hash()
            } else {
                image
            };
            request(
                w,
                node,
                vessel,
                Request::Offer {
                    vessel,
                    epoch: new_epoch,
                    kind,
                    image,
                    nonce,
                },
            )
        }
        Output::SendLacking { .. } => {
            let chunks = w.nodes[node as usize].sources[&vessel].lacking.clone();
            request(
                w,
                node,
                vessel,
                Request::Chunks {
                    vessel,
                    epoch: new_epoch,
                    chunks,
                },
            )
        }
        Output::Pause => {
            node::stop_running(w, node, vessel);
            let d = 1 + w.rng.below(20);
            later(
                w,
                node,
                d,
                LocalStep::Source {
                    vessel,
                    run,
                    input: Input::Paused,
                },
            );
        }
        Output::Pack => pack(w, node, vessel, run),
        Output::Prepare => request(
            w,
            node,
            vessel,
            Request::Prepare {
                vessel,
                epoch: new_epoch,
                image,
            },
        ),
        Output::WriteLeft => {
            let d = 1 + w.rng.below(10);
            later(w, node, d, LocalStep::WriteLeft { vessel, run })
        }
        Output::SendCommit => request(
            w,
            node,
            vessel,
            Request::Commit {
                vessel,
                epoch: new_epoch,
                image,
            },
        ),
        Output::RetryAfter(d) => {
            let incarnation = w.nodes[node as usize].incarnation;
            w.at(
                d.as_millis() as u64,
                Event::Retry {
                    node,
                    incarnation,
                    vessel,
                    run,
                },
            );
        }
        Output::ResumeFromCapture => {
            let epoch = w.nodes[node as usize].sources[&vessel].epoch;
            node::start_running(w, node, vessel, epoch);
        }
        Output::RestartFromRecord => restart_from_record(w, node, vessel),
        Output::SendAbort => {
            let id = w.request_id();
            let body = Request::Abort {
                vessel,
                epoch: new_epoch,
                image,
            };
            w.send(node, to, Msg::Request { id, body });
        }
        Output::MarkAcked => mark_acked(w, node, vessel),
        Output::RoundDone { .. } | Output::Phase(_) => {}
        Output::Finished(result) => finished(w, node, vessel, result.map_err(|e| e.to_string())),
    }
}

fn later(w: &mut World, node: NodeId, delay_ms: u64, step: LocalStep) {
    let incarnation = w.nodes[node as usize].incarnation;
    w.at(
        delay_ms,
        Event::Local {
            node,
            incarnation,
            step,
        },
    );
}

/// One copy in five does not come within the driver's wait (a vessel in
/// one long slice, or in a wait that cannot hear commands): the machine
/// goes to the final round. The others come in a few milliseconds.
fn copy(w: &mut World, node: NodeId, vessel: VesselId, run: u64) {
    let input = match w.rng.below(5) {
        0 => Input::CopyTimedOut,
        _ => Input::Copied {
            changed_chunks: w.rng.below(200) as usize,
        },
    };
    let delay = if input == Input::CopyTimedOut {
        200
    } else {
        1 + w.rng.below(5)
    };
    later(w, node, delay, LocalStep::Source { vessel, run, input });
}

/// One pack in a hundred fails (a disk error).
fn pack(w: &mut World, node: NodeId, vessel: VesselId, run: u64) {
    let input = match w.rng.below(100) {
        0 => Input::Failed(ErrorKind::Local("simulated disk error".into())),
        _ => {
            let image = w.fresh_hash();
            let n = &mut w.nodes[node as usize];
            n.disk.unsynced_images.insert(image);
            n.sources.get_mut(&vessel).expect("running").image = image;
            Input::Packed
        }
    };
    let d = 1 + w.rng.below(10);
    later(w, node, d, LocalStep::Source { vessel, run, input });
}

fn restart_from_record(w: &mut World, node: NodeId, vessel: VesselId) {
    let record = w.nodes[node as usize].record(vessel).cloned();
    if let Some(Record::Owned { epoch, image }) = record {
        if w.nodes[node as usize].disk.images.contains(&image) {
            node::start_running(w, node, vessel, epoch);
        }
    }
}

fn request(w: &mut World, node: NodeId, vessel: VesselId, body: Request) {
    let (to, tries) = {
        let s = &w.nodes[node as usize].sources[&vessel];
        let tries = match &s.outstanding {
            Some((_, _, t)) => *t,
            None => 0,
        };
        (s.to, tries)
    };
    send_request(w, node, vessel, to, body, tries);
}

fn send_request(
    w: &mut World,
    node: NodeId,
    vessel: VesselId,
    to: NodeId,
    body: Request,
    tries: u32,
) {
    let id = w.request_id();
    let n = &mut w.nodes[node as usize];
    n.pending.insert(id, vessel);
    if let Some(s) = n.sources.get_mut(&vessel) {
        s.outstanding = Some((id, body.clone(), tries));
    }
    let incarnation = n.incarnation;
    w.send(node, to, Msg::Request { id, body });
    w.at(
        REQUEST_TIMEOUT_MS,
        Event::Timeout {
            node,
            incarnation,
            request: id,
        },
    );
}

/// An answer came back to `node`.
pub fn answered(w: &mut World, node: NodeId, id: u64, body: Response) {
    let Some(vessel) = w.nodes[node as usize].pending.remove(&id) else {
        return;
    };
    let Some(s) = w.nodes[node as usize].sources.get_mut(&vessel) else {
        return;
    };
    if s.outstanding.as_ref().map(|o| o.0) != Some(id) {
        return;
    }
    let offered = matches!(s.outstanding.take(), Some((_, Request::Offer { .. }, _)));
    let input = match body {
        Response::Nonce(n) => Input::Nonce(n),
        Response::Lacking { chunks, next_nonce } => {
            s.lacking = chunks;
            Input::Lacking { next_nonce }
        }
        Response::Stored => Input::ChunksSent,
        Response::Prepared => Input::Prepared,
        Response::Committed => Input::Committed,
        Response::Aborted => return,
        Response::Refused(r) => {
            if let Some(k) = reported_epoch(&r).filter(|_| offered) {
                let n = &mut w.nodes[node as usize];
                let e = n.reported_epochs.entry(vessel).or_insert(0);
                *e = (*e).max(k);
            }
            Input::Failed(ErrorKind::Refused(r))
        }
    };
    let run = w.nodes[node as usize].sources[&vessel].run;
    feed(w, node, vessel, run, input);
}

/// No answer in time: the link tries an idempotent request again (not an
/// offer, which spends its nonce, and never while the vessel is paused);
/// otherwise the machine hears that the peer is unreachable.
pub fn timed_out(w: &mut World, node: NodeId, id: u64) {
    let Some(vessel) = w.nodes[node as usize].pending.remove(&id) else {
        return;
    };
    let Some(s) = w.nodes[node as usize].sources.get_mut(&vessel) else {
        return;
    };
    let Some((oid, body, tries)) = s.outstanding.clone() else {
        return;
    };
    if oid != id {
        return;
    }
    s.outstanding = None;
    let idempotent = !matches!(body, Request::Offer { .. });
    if idempotent && !s.machine.is_paused() && tries < LINK_RETRIES {
        let to = s.to;
        return send_request(w, node, vessel, to, body, tries + 1);
    }
    let run = s.run;
    feed(
        w,
        node,
        vessel,
        run,
        Input::Failed(ErrorKind::Unreachable("no answer".into())),
    );
}

/// The commit point: the `Left` record is durable.
pub fn left_written(w: &mut World, node: NodeId, vessel: VesselId, run: u64) {
    let Some(s) = w.nodes[node as usize]
        .sources
        .get(&vessel)
        .filter(|s| s.run == run)
    else {
        return;
    };
    let record = Record::Left {
        epoch: s.new_epoch,
        image: s.image,
        to: vec![s.to],
        acked: false,
    };
    // The final image is on this node's disk too (kept for a return trip).
    let image = s.image;
    w.nodes[node as usize].disk.images.insert(image);
    node::write_record(w, node, vessel, record);
    feed(w, node, vessel, run, Input::LeftDurable);
}

fn mark_acked(w: &mut World, node: NodeId, vessel: VesselId) {
    if let Some(Record::Left {
        epoch, image, to, ..
    }) = w.nodes[node as usize].record(vessel).cloned()
    {
        node::write_record(
            w,
            node,
            vessel,
            Record::Left {
                epoch,
                image,
                to,
                acked: true,
            },
        );
    }
}

fn finished(w: &mut World, node: NodeId, vessel: VesselId, result: Result<(), String>) {
    let s = w.nodes[node as usize]
        .sources
        .remove(&vessel)
        .expect("running");
    match result {
        Ok(()) => {
            w.stats.committed += 1;
            w.note(format!(
                "n{node} {vessel} moved to n{} at epoch {}",
                s.to, s.new_epoch
            ));
            liveness::succeeded(w, vessel, s.to);
        }
        Err(e) => {
            w.stats.aborted += 1;
            w.note(format!(
                "n{node} {vessel} migration to n{} failed: {e}",
                s.to
            ));
            match w.faults_on {
                true => faults::maybe_ask_again(w, node, vessel, s.to),
                false => liveness::failed(w, vessel, e),
            }
        }
    }
}
