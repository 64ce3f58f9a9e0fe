//! The host's side of service ingress (protocol::ingress): a [`BufferHub`]
//! whose connections are held by entry nodes elsewhere in the mesh.
//!
//! [`IngressHub`] knows which entry holds each connection, takes client
//! bytes by offset, hands out the vessel's bytes until the entry confirms
//! them, and freezes for a capture: while a vessel is being captured its
//! hub takes nothing more, so that what the image carries is exactly what
//! the host confirmed. It knows no network; the mesh moves its frames.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use protocol::ingress::{HubImage, InSegment, InStatus, OutSegment, OutStatus};

use super::released::ReleasedMarks;
use super::{BufferHub, ConnId, StreamEnd};

/// Most vessel bytes of one connection in one egress frame: enough to fill
/// a link for a few milliseconds, small enough that one busy connection
/// does not hold up the others in the same frame.
pub const EGRESS_SEGMENT_BYTES: usize = 64 * 1024;

/// A service vessel's hub on the node that runs it.
pub struct IngressHub {
    hub: Arc<BufferHub>,
    /// The entry node (PeerId bytes) that holds each connection's client.
    entries: Mutex<HashMap<ConnId, Vec<u8>>>,
    /// Per connection: what the entry last confirmed (end offset, FIN,
    /// close), so that a confirmed state is not sent again.
    confirmed: Mutex<HashMap<ConnId, (u64, bool, bool)>>,
    frozen: AtomicBool,
    stopped: AtomicBool,
    /// A `--durability sync` vessel's output commit: what it may release
    /// (`None`: everything, at once, as an async vessel does).
    released: Mutex<Option<ReleasedMarks>>,
}

impl IngressHub {
    /// A fresh vessel's hub: one service per port, named by its number.
    pub fn new(ports: &[u16]) -> IngressHub {
        let hub = BufferHub::new();
        for p in ports {
            hub.net_add_service(&p.to_string());
        }
        Self::with(hub, HashMap::new())
    }

    /// The hub a captured vessel had (an image's [`HubImage`], checked).
    pub fn from_image(image: &HubImage) -> IngressHub {
        let entries = image
            .conns
            .iter()
            .map(|c| (c.id, c.entry.0.clone()))
            .collect();
        Self::with(BufferHub::import(image), entries)
    }

    fn with(hub: BufferHub, entries: HashMap<ConnId, Vec<u8>>) -> IngressHub {
        IngressHub {
            hub: Arc::new(hub),
            entries: Mutex::new(entries),
            confirmed: Mutex::new(HashMap::new()),
            frozen: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            released: Mutex::new(None),
        }
    }

    /// The hub the vessel's sockets talk to.
    pub fn hub(&self) -> Arc<BufferHub> {
        self.hub.clone()
    }

    fn released(&self) -> std::sync::MutexGuard<'_, Option<ReleasedMarks>> {
        self.released.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes this a sync vessel's hub: from now on it releases nothing
    /// that no acknowledged checkpoint holds ([`ReleasedMarks`]).
    pub fn hold_output(&self) {
        *self.released() = Some(ReleasedMarks::default());
    }

    /// Every replica acknowledged a checkpoint with these marks: release
    /// up to them, and wake the pump.
    pub fn release(&self, marks: ReleasedMarks) {
        if let Some(r) = self.released().as_mut() {
            r.advance(marks);
        }
        self.hub.net_wake();
    }

    /// Releases everything from now on (the vessel ended: no checkpoint
    /// will hold more, and it will not run again here).
    pub fn release_all(&self) {
        if self.released().take().is_some() {
            self.hub.net_wake();
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<ConnId, Vec<u8>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Client bytes from the entry node `entry`: per segment, how far the
    /// hub holds the stream now.
    pub fn take(&self, entry: &[u8], segments: &[InSegment]) -> Vec<(u64, InStatus)> {
        segments
            .iter()
            .map(|s| (s.conn, self.take_one(entry, s)))
            .collect()
    }

    fn take_one(&self, entry: &[u8], s: &InSegment) -> InStatus {
        if self.frozen.load(Ordering::SeqCst) {
            return InStatus::Moving;
        }
        if !self.hub.net_knows(s.conn) {
            // Only a connection's first frame opens it; anything else for
            // an unknown connection is for one the vessel closed or never
            // had (it restarted from an older image).
            if s.at != 0 || self.entries().contains_key(&s.conn) {
                return InStatus::Reset;
            }
            if self.hub.net_open(&s.service, s.conn).is_err() {
                return InStatus::Reset;
            }
            self.entries().insert(s.conn, entry.to_vec());
        } else if self.entries().get(&s.conn).is_some_and(|e| e != entry) {
            // Another node claims a connection it does not hold.
            return InStatus::Reset;
        }
        match self.hub.net_deliver_at(s.conn, s.at, &s.data) {
            Ok(taken) => {
                if let Some(end) = s.end {
                    if taken == s.at + s.data.len() as u64 {
                        self.hub.net_end(s.conn, StreamEnd::from_wire(end));
                    }
                }
                let taken = match self.released().as_ref() {
                    Some(marks) => marks.confirmable(s.conn, s.at, taken),
                    None => taken,
                };
                InStatus::Taken { taken }
            }
            Err(super::HubError::Reset) => match self.released().as_ref() {
                // A sync vessel's reset waits for a checkpoint that holds
                // it: until then the entry is told to ask again shortly.
                Some(marks) if !marks.reset_released(s.conn) => InStatus::Moving,
                _ => InStatus::Reset,
            },
            Err(_) => InStatus::Reset,
        }
    }

    /// The vessel's bytes that entries have not confirmed, by entry node,
    /// at most `max_segments` per entry.
    pub fn egress(&self, max_segments: usize) -> BTreeMap<Vec<u8>, Vec<OutSegment>> {
        let mut out: BTreeMap<Vec<u8>, Vec<OutSegment>> = BTreeMap::new();
        let entries = self.entries().clone();
        let confirmed = self
            .confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let released = self.released().clone();
        for id in self.hub.net_conn_ids() {
            let Some(entry) = entries.get(&id) else {
                continue;
            };
            let Ok(o) = self.hub.net_peek(id, EGRESS_SEGMENT_BYTES) else {
                continue;
            };
            let o = match released.as_ref() {
                Some(marks) => match marks.releasable(id, o) {
                    Some(o) => o,
                    None => continue,
                },
                None => o,
            };
            let end = o.at + o.data.len() as u64;
            if o.data.is_empty() && confirmed.get(&id) == Some(&(end, o.fin, o.closed)) {
                continue;
            }
            if o.data.is_empty() && !o.fin && !o.closed {
                continue;
            }
            let segs = out.entry(entry.clone()).or_default();
            if segs.len() < max_segments {
                segs.push(OutSegment {
                    conn: id,
                    at: o.at,
                    data: o.data,
                    fin: o.fin,
                    closed: o.closed,
                });
            }
        }
        out
    }

    /// What an entry answered for one connection of an egress frame.
    pub fn confirm(&self, sent: &OutSegment, status: OutStatus) {
        match status {
            OutStatus::Written { written, done } => {
                self.hub.net_confirm(sent.conn, written);
                if done {
                    self.forget(sent.conn);
                } else if written >= sent.at + sent.data.len() as u64 {
                    self.confirmed
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(sent.conn, (written, sent.fin, sent.closed));
                }
            }
            OutStatus::Unknown => {
                self.hub.net_end(sent.conn, StreamEnd::Reset);
                self.forget(sent.conn);
            }
        }
    }

    fn forget(&self, id: ConnId) {
        self.hub.net_forget(id);
        self.confirmed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        // The entry stays known: a late frame for the connection is then
        // answered with a reset rather than opening it again.
    }

    /// Stops taking client bytes and returns the hub as plain data, for a
    /// capture. [`thaw`](Self::thaw) undoes the stop if the move fails.
    pub fn freeze_and_export(&self) -> HubImage {
        self.frozen.store(true, Ordering::SeqCst);
        let entries = self.entries().clone();
        self.hub
            .export(|id| entries.get(&id).cloned().unwrap_or_default())
    }

    /// The hub as it is, for a checkpoint taken while the vessel runs on:
    /// unlike [`freeze_and_export`](Self::freeze_and_export) it keeps
    /// taking client bytes.
    pub fn export(&self) -> HubImage {
        let entries = self.entries().clone();
        self.hub
            .export(|id| entries.get(&id).cloned().unwrap_or_default())
    }

    pub fn thaw(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// The vessel left or ended: whoever pumps this hub's bytes stops.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Connections still held.
    pub fn connections(&self) -> usize {
        self.hub.net_connections()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dock::services::ServiceHub;
    use protocol::ingress::StreamEnd as WireEnd;

    fn seg(conn: u64, at: u64, data: &[u8], end: Option<WireEnd>) -> InSegment {
        InSegment {
            conn,
            service: "8080".into(),
            at,
            data: data.to_vec(),
            end,
        }
    }

    #[test]
    fn resent_client_bytes_are_taken_once_and_a_frozen_hub_takes_none() {
        let h = IngressHub::new(&[8080]);
        let r = h.take(b"E", &[seg(5, 0, b"abc", None)]);
        assert_eq!(r, vec![(5, InStatus::Taken { taken: 3 })]);
        // A resend that overlaps: only "d" is new.
        let r = h.take(b"E", &[seg(5, 1, b"bcd", None)]);
        assert_eq!(r, vec![(5, InStatus::Taken { taken: 4 })]);
        assert_eq!(h.hub().take_connection("8080"), Some(5));
        assert_eq!(h.hub().receive(5, 0, 100).unwrap().data, b"abcd");
        // Another node cannot speak for connection 5.
        assert_eq!(h.take(b"X", &[seg(5, 4, b"e", None)])[0].1, InStatus::Reset);
        let image = h.freeze_and_export();
        assert_eq!(
            h.take(b"E", &[seg(5, 4, b"e", None)])[0].1,
            InStatus::Moving
        );
        // The image continues where the hub stood; bytes from the entry's
        // resend that it had are skipped.
        let moved = IngressHub::from_image(&image);
        let r = moved.take(b"E", &[seg(5, 2, b"cdef", Some(WireEnd::Fin))]);
        assert_eq!(r, vec![(5, InStatus::Taken { taken: 6 })]);
        let got = moved.hub().receive(5, 4, 100).unwrap();
        assert_eq!(
            (got.data.as_slice(), got.end),
            (&b"ef"[..], Some(StreamEnd::Fin))
        );
        // An unknown connection past offset 0 is reset, not opened.
        assert_eq!(
            moved.take(b"E", &[seg(9, 3, b"x", None)])[0].1,
            InStatus::Reset
        );
    }

    #[test]
    fn vessel_bytes_stay_until_the_entry_confirms_them_and_travel_in_the_image() {
        let h = IngressHub::new(&[8080]);
        h.take(b"E", &[seg(1, 0, b"", None)]);
        let hub = h.hub();
        assert_eq!(hub.take_connection("8080"), Some(1));
        hub.send(1, 0, b"hello").unwrap();
        let out = h.egress(16);
        let segs = &out[&b"E".to_vec()];
        assert_eq!((segs[0].at, segs[0].data.as_slice()), (0, &b"hello"[..]));
        h.confirm(
            &segs[0],
            OutStatus::Written {
                written: 2,
                done: false,
            },
        );
        // Unconfirmed bytes are sent again, from the confirmed offset, and
        // are in the image.
        let again = h.egress(16);
        assert_eq!(again[&b"E".to_vec()][0].at, 2);
        let image = h.freeze_and_export();
        assert_eq!(image.conns[0].outbound, b"llo");
        assert_eq!(image.conns[0].entry.0, b"E");
        hub.close(1);
        let moved = IngressHub::from_image(&image);
        let segs = moved.egress(16).remove(b"E".as_slice()).unwrap();
        assert_eq!(segs[0].data, b"llo");
        moved.confirm(
            &segs[0],
            OutStatus::Written {
                written: 5,
                done: false,
            },
        );
        assert!(
            moved.egress(16).is_empty(),
            "confirmed bytes are not sent again"
        );
    }

    #[test]
    fn a_sync_hub_lets_out_and_confirms_only_what_an_acknowledged_checkpoint_holds() {
        let h = IngressHub::new(&[8080]);
        h.hold_output();
        h.take(b"E", &[seg(1, 0, b"", None)]);
        let hub = h.hub();
        assert_eq!(hub.take_connection("8080"), Some(1));
        // The client's request is in the hub, but no checkpoint holds it.
        let r = h.take(b"E", &[seg(1, 0, b"GET a\n", None)]);
        assert_eq!(r, vec![(1, InStatus::Taken { taken: 0 })]);
        hub.send(1, 0, b"VAL 1\n").unwrap();
        assert!(h.egress(16).is_empty(), "the reply waits for the replicas");
        // A checkpoint with the request and the reply; every replica has it.
        let checkpoint = h.export();
        hub.send(1, 6, b"more").unwrap();
        h.release(ReleasedMarks::of_hub(&checkpoint));
        let segs = h.egress(16).remove(b"E".as_slice()).unwrap();
        assert_eq!(segs[0].data, b"VAL 1\n", "only what the checkpoint holds");
        let r = h.take(b"E", &[seg(1, 0, b"GET a\n", None)]);
        assert_eq!(r, vec![(1, InStatus::Taken { taken: 6 })]);
        // An ended vessel lets out the rest.
        h.release_all();
        let segs = h.egress(16).remove(b"E".as_slice()).unwrap();
        assert_eq!(segs[0].data, b"VAL 1\nmore");
    }
}
