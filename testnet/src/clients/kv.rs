//! `kv`: one TCP connection at a time from the node the client is attached
//! to, speaking kvserver's line protocol, one request per interval:
//! SETs alternate with GETs that read back an earlier write
//! ([`kv_request`]), so a write lost in a move or a restart shows as a
//! wrong answer. A reset, a timeout or a wrong answer is a failed request
//! and the connection is made again. It stops at its `stop` time or the end
//! of the run.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{ClientSpec, Kind, Load};
use crate::fields::{KindFields, ScenarioError, Table};
use crate::record::MarkKind;
use crate::view::{ClientRt, View};

/// The keys a kv client cycles through: each GET reads back the write
/// made this many SETs before (about 6 s at 100 ms a request).
pub const KV_KEYS: u64 = 32;
/// Failed requests shown per client in the progress (all are counted).
const MAX_FAILURES_SHOWN: u64 = 5;
/// How long a request may wait for its answer by default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub const KIND: Kind = Kind {
    fields: KindFields {
        name: "kv",
        fields: &["target", "timeout"],
    },
    parse,
};

#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// A fixed node's address.
    Node(usize, u16),
    /// The node the client is attached to (it follows `move-client`).
    Local(u16),
}

#[derive(Debug)]
pub struct Kv {
    pub target: Target,
    pub timeout: Duration,
}

fn parse(t: &Table) -> Result<Box<dyn Load>, ScenarioError> {
    let target = t.str(
        "target",
        "\"NODE:PORT\", or \":PORT\" for the node the client is at",
    )?;
    let (host, port) = target.rsplit_once(':').ok_or_else(|| {
        t.err(
            "target",
            format!("{target:?} is not \"NODE:PORT\" or \":PORT\""),
        )
    })?;
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| t.err("target", format!("{port:?} is not a port (1-65535)")))?;
    let target = if host.is_empty() {
        Target::Local(port)
    } else {
        Target::Node(t.ck.node(&t.field("target"), host)?, port)
    };
    Ok(Box::new(Kv {
        target,
        timeout: t.dur_or("timeout", DEFAULT_TIMEOUT)?,
    }))
}

impl Load for Kv {
    fn kind(&self) -> &'static str {
        KIND.fields.name
    }

    fn counts_requests(&self) -> bool {
        true
    }

    fn service_port(&self) -> Option<u16> {
        match self.target {
            Target::Node(_, p) | Target::Local(p) => Some(p),
        }
    }

    fn run(&self, view: &dyn View, spec: &ClientSpec, client: usize, t0: Instant) {
        let mut c = KvClient {
            kv: self,
            view,
            spec,
            rt: view.client(client),
            t0,
            stop: spec.stop.unwrap_or(view.duration()),
            may: vec![vec![None]; KV_KEYS as usize],
            next: spec.start,
            seq: 0,
            set_at: Vec::new(),
        };
        while !view.stopping() && t0.elapsed() < c.stop && c.connection() {}
        if spec.stop.is_some() && !view.stopping() {
            view.rec().say(format!("client {} stops", spec.name));
        }
    }
}

/// What a kv client may read back from one key: every value it may hold
/// (None: NOT_FOUND, never written). One value once a SET was answered or
/// a GET told; more while a SET got no answer (it may or may not have been
/// applied).
type MayHold = Vec<Option<String>>;

/// One kv client's run.
struct KvClient<'a> {
    kv: &'a Kv,
    view: &'a dyn View,
    spec: &'a ClientSpec,
    rt: &'a ClientRt,
    t0: Instant,
    stop: Duration,
    may: Vec<MayHold>,
    /// When the next request is due.
    next: Duration,
    seq: u64,
    /// When (scenario t) each request was sent, by seq − 1: a lost write
    /// is dated by the SET that made the value the server forgot.
    set_at: Vec<f64>,
}

impl KvClient<'_> {
    /// One connection, from connect to its end; false when the client is
    /// done.
    fn connection(&mut self) -> bool {
        let at = self.rt.node.load(Ordering::SeqCst);
        if let Err(e) = self.view.enter_node(at) {
            self.rt.stats.lock().unwrap().last_error = Some(format!("setns: {e}"));
            return false;
        }
        let (node, port) = match self.kv.target {
            Target::Node(j, p) => (j, p),
            Target::Local(p) => (at, p),
        };
        let addr = SocketAddr::from((self.view.node_addr(node), port));
        let stream = match TcpStream::connect_timeout(&addr, self.kv.timeout) {
            Ok(s) => s,
            Err(e) => return self.connect_failed(addr, at, e),
        };
        let t = self.view.rec().t();
        let mut st = self.rt.stats.lock().unwrap();
        st.connects += 1;
        st.entries.push((t, at));
        drop(st);
        let _ = stream.set_nodelay(true);
        let _ = stream.set_read_timeout(Some(self.kv.timeout));
        let _ = stream.set_write_timeout(Some(self.kv.timeout));
        let Ok(w) = stream.try_clone() else {
            return true;
        };
        self.requests(at, addr, w, BufReader::new(stream))
    }

    /// Counts a failed connect and waits an interval; false when the client
    /// is done.
    fn connect_failed(&mut self, addr: SocketAddr, at: usize, e: std::io::Error) -> bool {
        let mut st = self.rt.stats.lock().unwrap();
        st.connect_failures += 1;
        st.last_error = Some(format!(
            "connect {addr} from {}: {e}",
            self.view.node_name(at)
        ));
        drop(st);
        self.view.rec().mark(
            MarkKind::ClientError,
            format!("{}: connect failed", self.spec.name),
        );
        self.next = self.t0.elapsed().max(self.next) + self.spec.interval;
        self.next < self.stop && self.view.sleep_until(self.t0, self.next)
    }

    /// Requests on one connection until one fails (true: connect again),
    /// the client moves (true), or it is done (false).
    fn requests(
        &mut self,
        at: usize,
        addr: SocketAddr,
        mut w: TcpStream,
        mut r: BufReader<TcpStream>,
    ) -> bool {
        loop {
            if self.next >= self.stop || !self.view.sleep_until(self.t0, self.next) {
                let _ = w.shutdown(std::net::Shutdown::Both);
                return false;
            }
            self.next = next_request(self.next, self.t0.elapsed(), self.spec.interval);
            if self.rt.node.load(Ordering::SeqCst) != at {
                self.rt.stats.lock().unwrap().moves += 1;
                let _ = w.shutdown(std::net::Shutdown::Both);
                return true;
            }
            if let Err(err) = self.request(addr, &mut w, &mut r) {
                self.failed(err);
                return true;
            }
        }
    }

    /// One request and its answer, counted; Err(the failure) when it
    /// failed.
    fn request(
        &mut self,
        addr: SocketAddr,
        w: &mut TcpStream,
        r: &mut BufReader<TcpStream>,
    ) -> Result<(), String> {
        self.seq += 1;
        let (req, key, set) = kv_request(&self.spec.name, self.seq);
        let started = Instant::now();
        let t = self.view.rec().t();
        self.set_at.push(t);
        // What the key held by the last answered SET (or GET), before
        // this answer replaces it: the write a wrong GET lost.
        let held = self.may[key].first().cloned().flatten();
        let mut line = String::new();
        let res = w
            .write_all(req.as_bytes())
            .and_then(|_| r.read_line(&mut line));
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let mut st = self.rt.stats.lock().unwrap();
        st.requests += 1;
        let err = match res {
            Ok(0) => format!("{addr} closed the connection"),
            Ok(_) => match kv_judge(&mut self.may[key], set.as_deref(), line.trim_end()) {
                Ok(()) => {
                    st.ok += 1;
                    st.latencies.push((t, ms));
                    drop(st);
                    self.view
                        .rec()
                        .sample(format!("client {}", self.spec.name), ms);
                    return Ok(());
                }
                Err((what, lost)) => {
                    st.wrong += 1;
                    st.lost += u64::from(lost);
                    if lost {
                        if let Some(at) = held.as_deref().and_then(|v| self.written_at(v)) {
                            st.lost_writes_at.push(at);
                        }
                    }
                    format!("{}: {what}", req.trim_end())
                }
            },
            Err(e) => {
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) {
                    st.resets += 1;
                }
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) {
                    st.timeouts += 1;
                }
                // A SET without an answer may or may not have been applied.
                if let Some(v) = &set {
                    self.may[key].push(Some(v.clone()));
                }
                format!("{addr}: {e}")
            }
        };
        st.failed += 1;
        st.last_error = Some(err.clone());
        Err(err)
    }

    /// When the SET that wrote `value` (`v<seq>`) was sent.
    fn written_at(&self, value: &str) -> Option<f64> {
        let seq: usize = value.strip_prefix('v')?.parse().ok()?;
        self.set_at.get(seq.checked_sub(1)?).copied()
    }

    /// Marks a failed request, and says so for the first few.
    fn failed(&self, err: String) {
        let name = &self.spec.name;
        let rec = self.view.rec();
        rec.mark(MarkKind::ClientError, format!("{name}: {err}"));
        let failures = self.rt.stats.lock().unwrap().failed;
        if failures <= MAX_FAILURES_SHOWN {
            rec.say(format!("client {name}: request failed: {err}"));
        }
        if failures == MAX_FAILURES_SHOWN {
            rec.say(format!(
                "client {name}: further failures are counted and marked on the timeline, not shown"
            ));
        }
    }
}

/// The request number `seq` (from 1) of a kv client: odd ones SET the key
/// `seq / 2 mod KV_KEYS` to `v<seq>`, even ones GET the key the next SET
/// will write, i.e. read back the write made KV_KEYS − 1 SETs before.
/// Returns (request line, key index, the value a SET writes).
pub fn kv_request(client: &str, seq: u64) -> (String, usize, Option<String>) {
    let m = (seq - 1) / 2;
    if seq % 2 == 1 {
        let k = (m % KV_KEYS) as usize;
        let v = format!("v{seq}");
        (format!("SET {client}-k{k} {v}\n"), k, Some(v))
    } else {
        let k = ((m + 1) % KV_KEYS) as usize;
        (format!("GET {client}-k{k}\n"), k, None)
    }
}

/// Judges the answer `line` to a kv request against what the key may
/// hold, and updates it: Ok(()) for a right answer, Err((what, lost)).
pub fn kv_judge(may: &mut MayHold, set: Option<&str>, line: &str) -> Result<(), (String, bool)> {
    let Some(v) = set else {
        return judge_get(may, line);
    };
    if line == "OK" {
        *may = vec![Some(v.to_string())];
        Ok(())
    } else {
        may.push(Some(v.to_string()));
        Err((format!("SET answered {line:?}"), false))
    }
}

fn judge_get(may: &mut MayHold, line: &str) -> Result<(), (String, bool)> {
    let got = if line == "NOT_FOUND" {
        None
    } else if let Some(v) = line.strip_prefix("VALUE ") {
        Some(v.to_string())
    } else {
        return Err((format!("GET answered {line:?}"), false));
    };
    let ok = may.contains(&got);
    let want = may
        .iter()
        .map(|v| v.as_deref().unwrap_or("NOT_FOUND"))
        .collect::<Vec<_>>()
        .join(" or ");
    // From now on the key holds what the server said: a lost write is
    // counted once.
    *may = vec![got];
    if ok {
        Ok(())
    } else {
        Err((format!("lost write: expected {want}, got {line:?}"), true))
    }
}

/// When a kv client sends its next request, given when this one was due
/// and now: one interval later, except after a stall (a request that
/// waited for a migration or a partition), where the slots it missed are
/// skipped rather than sent back to back.
pub fn next_request(due: Duration, now: Duration, interval: Duration) -> Duration {
    if now > due + interval {
        now + interval
    } else {
        due + interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stalled_kv_client_does_not_fire_its_missed_requests_at_once() {
        let ms = Duration::from_millis;
        // On time, or a little late: the schedule holds.
        assert_eq!(next_request(ms(1000), ms(1000), ms(100)), ms(1100));
        assert_eq!(next_request(ms(1000), ms(1060), ms(100)), ms(1100));
        // A request that waited 5 s: the next one comes an interval after
        // it, not 49 requests back to back.
        assert_eq!(next_request(ms(1000), ms(6000), ms(100)), ms(6100));
    }

    #[test]
    fn a_kv_get_reads_back_the_oldest_write() {
        assert_eq!(
            kv_request("c", 1),
            ("SET c-k0 v1\n".into(), 0, Some("v1".into()))
        );
        assert_eq!(kv_request("c", 2), ("GET c-k1\n".into(), 1, None));
        assert_eq!(
            kv_request("c", 3),
            ("SET c-k1 v3\n".into(), 1, Some("v3".into()))
        );
        // After a full round the GET reads the key the next SET writes,
        // written KV_KEYS − 1 SETs before.
        let round = 2 * KV_KEYS;
        assert_eq!(kv_request("c", round).1, 0);
        assert_eq!(kv_request("c", round + 1).1, 0);
        assert_eq!(kv_request("c", round + 2), ("GET c-k1\n".into(), 1, None));
    }

    #[test]
    fn a_lost_write_is_a_wrong_answer_counted_once() {
        let mut may: MayHold = vec![None];
        assert!(kv_judge(&mut may, None, "NOT_FOUND").is_ok());
        assert!(kv_judge(&mut may, Some("v1"), "OK").is_ok());
        assert!(kv_judge(&mut may, None, "VALUE v1").is_ok());
        // A server that restarted from an older state forgot v1.
        let e = kv_judge(&mut may, None, "NOT_FOUND").unwrap_err();
        assert!(e.1 && e.0.contains("expected v1"), "{e:?}");
        // What it said is what the key holds now.
        assert!(kv_judge(&mut may, None, "NOT_FOUND").is_ok());
        // A SET without an answer may or may not have been applied.
        may = vec![Some("v1".into()), Some("v3".into())];
        assert!(kv_judge(&mut may.clone(), None, "VALUE v1").is_ok());
        assert!(kv_judge(&mut may, None, "VALUE v3").is_ok());
        assert_eq!(may, vec![Some("v3".to_string())]);
        let e = kv_judge(&mut may, Some("v5"), "ERR").unwrap_err();
        assert!(!e.1, "{e:?}");
        assert!(kv_judge(&mut may, None, "garbage").is_err());
    }
}
