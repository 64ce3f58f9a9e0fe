//! The router: one thread that moves IP packets between the nodes' TUN
//! devices through the emulated links.
//!
//! It waits in `ppoll` on every TUN descriptor (and an eventfd that stops
//! it), with a timeout that ends when the next queued packet is due. A
//! packet read from node i's TUN goes, for a unicast destination 10.77.0.j,
//! through link i→j ([`crate::link::Link`]) into one time-ordered queue; a
//! multicast (224.0.0.0/4, mDNS) or broadcast packet goes through every link
//! i→j, j ≠ i, as its own copy. Due packets are written to the destination's
//! TUN. IPv6 is dropped (the nodes listen on IPv4). The thread asks for
//! SCHED_FIFO when it may (root), so a busy machine delays it less; how late
//! it delivered is measured and goes in the report.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering as AtOrd};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::link::{Link, LinkStats, Verdict};
use crate::netns::{read_packet, write_packet};
use crate::rng::Rng;
use crate::scenario::{LinkChange, LinkParams};
use crate::traffic::NodeTraffic;

/// The largest packet read from a TUN (its MTU is 1500).
const MAX_PACKET: usize = 65536;
/// Packets read from one TUN before the others get a turn.
const BURST_PER_FD: usize = 64;
/// A packet due within this much is sent now rather than slept for.
const EARLY_SECS: f64 = 20e-6;
/// How often the forwarding thread adds its counts to the shared stats.
const FLUSH_EVERY: Duration = Duration::from_millis(100);

struct Table {
    n: usize,
    /// `links[src * n + dst]`.
    links: Vec<Link>,
    /// Partition side of each node; different sides cannot talk.
    side: Vec<u32>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RouterStats {
    pub no_route: u64,
    pub not_ipv4: u64,
    pub write_errors: u64,
    pub delivered: u64,
    /// How late packets were written, against when they were due.
    pub late_sum: f64,
    pub late_max: f64,
    pub late_over_1ms: u64,
    pub realtime: bool,
}

struct Shared {
    table: Mutex<Table>,
    stats: Mutex<RouterStats>,
    /// Per node, what it sent and received (flushed with `stats`).
    traffic: Mutex<Vec<NodeTraffic>>,
    stop: AtomicBool,
}

pub struct Router {
    shared: Arc<Shared>,
    wake: OwnedFd,
    thread: Mutex<Option<std::thread::JoinHandle<io::Result<()>>>>,
    pub epoch: Instant,
}

struct Queued {
    at: f64,
    seq: u64,
    dst: usize,
    pkt: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at && self.seq == o.seq
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    // A max-heap: the earliest (then the first queued) is the greatest.
    fn cmp(&self, o: &Self) -> Ordering {
        o.at.total_cmp(&self.at).then(o.seq.cmp(&self.seq))
    }
}

/// Which nodes an IPv4 packet is for, given its source node.
pub fn destinations(pkt: &[u8], src: usize, n: usize) -> Option<Vec<usize>> {
    if pkt.len() < 20 || pkt[0] >> 4 != 4 {
        return None;
    }
    let d = [pkt[16], pkt[17], pkt[18], pkt[19]];
    if (224..=239).contains(&d[0]) || d == [255, 255, 255, 255] || d == [10, 77, 0, 255] {
        return Some((0..n).filter(|j| *j != src).collect());
    }
    if d[0] == 10 && d[1] == 77 && d[2] == 0 && d[3] >= 1 && (d[3] as usize) <= n {
        let j = d[3] as usize - 1;
        if j != src {
            return Some(vec![j]);
        }
    }
    Some(Vec::new())
}

impl Router {
    /// Starts forwarding between `tuns` (node i's TUN is `tuns[i]`) with the
    /// initial `links[i][j]` and streams from `seed` and the node `names`.
    pub fn start(
        tuns: Vec<OwnedFd>,
        links: &[Vec<LinkParams>],
        names: &[String],
        seed: u64,
    ) -> io::Result<Router> {
        let n = tuns.len();
        let mut table = Vec::with_capacity(n * n);
        for (i, row) in links.iter().enumerate() {
            for (j, p) in row.iter().enumerate() {
                table.push(Link::new(*p, Rng::for_link(seed, &names[i], &names[j])));
            }
        }
        let shared = Arc::new(Shared {
            table: Mutex::new(Table {
                n,
                links: table,
                side: vec![0; n],
            }),
            stats: Mutex::new(RouterStats::default()),
            traffic: Mutex::new(vec![NodeTraffic::default(); n]),
            stop: AtomicBool::new(false),
        });
        // SAFETY: eventfd returns a new descriptor or -1.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor we own.
        let wake = unsafe { OwnedFd::from_raw_fd(raw) };
        let wake_fd = wake.as_raw_fd();
        let epoch = Instant::now();
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("router".into())
            .spawn(move || forward(sh, tuns, wake_fd, epoch))?;
        Ok(Router {
            shared,
            wake,
            thread: Mutex::new(Some(thread)),
            epoch,
        })
    }

    pub fn change_link(&self, a: usize, b: usize, change: &LinkChange) {
        let mut t = self.shared.table.lock().unwrap();
        let n = t.n;
        change.apply(&mut t.links[a * n + b].params);
        change.apply(&mut t.links[b * n + a].params);
    }

    pub fn params(&self, a: usize, b: usize) -> LinkParams {
        let t = self.shared.table.lock().unwrap();
        t.links[a * t.n + b].params
    }

    pub fn set_sides(&self, side: &[u32]) {
        self.shared.table.lock().unwrap().side = side.to_vec();
    }

    /// Per-direction statistics, `[src][dst]`.
    pub fn link_stats(&self) -> Vec<Vec<LinkStats>> {
        let t = self.shared.table.lock().unwrap();
        (0..t.n)
            .map(|i| (0..t.n).map(|j| t.links[i * t.n + j].stats).collect())
            .collect()
    }

    pub fn stats(&self) -> RouterStats {
        *self.shared.stats.lock().unwrap()
    }

    /// Per node, its counts so far (as of the last flush, at most
    /// FLUSH_EVERY ago).
    pub fn node_traffic(&self) -> Vec<NodeTraffic> {
        self.shared.traffic.lock().unwrap().clone()
    }

    /// Stops the thread; returns its error, if it failed.
    pub fn stop(&self) -> io::Result<()> {
        self.shared.stop.store(true, AtOrd::SeqCst);
        let one: u64 = 1;
        // SAFETY: an 8-byte write to our eventfd.
        unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        let thread = self.thread.lock().unwrap().take();
        match thread {
            Some(t) => t
                .join()
                .map_err(|_| io::Error::other("the router thread panicked"))?,
            None => Ok(()),
        }
    }

    /// Whether the thread is still forwarding.
    pub fn alive(&self) -> bool {
        self.thread
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

fn try_realtime() -> bool {
    // SAFETY: plain syscalls on the calling thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
        let p = libc::sched_param { sched_priority: 10 };
        libc::sched_setscheduler(0, libc::SCHED_FIFO, &p) == 0
    }
}

/// The forwarding thread's state: the TUN devices, the packets waiting for
/// their time, and the counts not yet flushed to the shared stats.
struct Forwarder {
    sh: Arc<Shared>,
    tuns: Vec<OwnedFd>,
    /// The TUN devices, then the wake-up pipe.
    pfds: Vec<libc::pollfd>,
    epoch: Instant,
    queue: BinaryHeap<Queued>,
    seq: u64,
    buf: Vec<u8>,
    local: RouterStats,
    /// Per node, counts not yet flushed.
    traffic: Vec<NodeTraffic>,
}

fn forward(sh: Arc<Shared>, tuns: Vec<OwnedFd>, wake: RawFd, epoch: Instant) -> io::Result<()> {
    let rt = try_realtime();
    sh.stats.lock().unwrap().realtime = rt;
    let pollin = |fd: RawFd| libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    let mut pfds: Vec<libc::pollfd> = tuns.iter().map(|t| pollin(t.as_raw_fd())).collect();
    pfds.push(pollin(wake));
    let n = tuns.len();
    let mut f = Forwarder {
        sh,
        tuns,
        pfds,
        epoch,
        queue: BinaryHeap::new(),
        seq: 0,
        buf: vec![0u8; MAX_PACKET],
        local: RouterStats::default(),
        traffic: vec![NodeTraffic::default(); n],
    };
    let mut last_flush = Instant::now();
    while !f.sh.stop.load(AtOrd::SeqCst) {
        if f.poll()? > 0 {
            f.read_ready()?;
        }
        f.deliver_due();
        if last_flush.elapsed() > FLUSH_EVERY {
            f.flush();
            last_flush = Instant::now();
        }
    }
    f.flush();
    Ok(())
}

impl Forwarder {
    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    /// Waits for a packet, the wake-up pipe, the next packet's time, or
    /// FLUSH_EVERY.
    fn poll(&mut self) -> io::Result<i32> {
        // At most FLUSH_EVERY, so that counts reach the shared stats even
        // when nothing more comes.
        let flush = FLUSH_EVERY.as_secs_f64();
        let secs = self
            .queue
            .peek()
            .map_or(flush, |q| (q.at - self.now()).clamp(0.0, flush));
        let ts = libc::timespec {
            tv_sec: secs as libc::time_t,
            tv_nsec: ((secs.fract()) * 1e9) as libc::c_long,
        };
        let tsp = &ts as *const libc::timespec;
        for p in self.pfds.iter_mut() {
            p.revents = 0;
        }
        // SAFETY: pfds is a valid array of pollfd; tsp is null or points
        // at a timespec that lives through the call.
        let r = unsafe {
            libc::ppoll(
                self.pfds.as_mut_ptr(),
                self.pfds.len() as libc::nfds_t,
                tsp,
                std::ptr::null(),
            )
        };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(r)
    }

    /// Reads up to BURST_PER_FD packets from each TUN device that has one.
    fn read_ready(&mut self) -> io::Result<()> {
        for src in 0..self.tuns.len() {
            let pfd = self.pfds[src];
            if pfd.revents & libc::POLLIN == 0 {
                continue;
            }
            for _ in 0..BURST_PER_FD {
                let Some(len) = read_packet(pfd.fd, &mut self.buf)? else {
                    break;
                };
                self.traffic[src].bytes_out += len as u64;
                self.traffic[src].packets_out += 1;
                self.route(src, len);
            }
        }
        Ok(())
    }

    /// Queues the packet in `buf[..len]` from node `src` on each link it
    /// goes through, as each link's model decides.
    fn route(&mut self, src: usize, len: usize) {
        let n = self.tuns.len();
        let pkt = &self.buf[..len];
        let Some(dsts) = destinations(pkt, src, n) else {
            self.local.not_ipv4 += 1;
            return;
        };
        if dsts.is_empty() {
            self.local.no_route += 1;
            return;
        }
        let now = self.now();
        let mut t = self.sh.table.lock().unwrap();
        for dst in dsts {
            let blocked = t.side[src] != t.side[dst];
            let link = &mut t.links[src * n + dst];
            if let Verdict::Deliver(at) = link.decide(now, len, blocked) {
                self.seq += 1;
                self.queue.push(Queued {
                    at,
                    seq: self.seq,
                    dst,
                    pkt: pkt.to_vec(),
                });
            }
        }
    }

    /// Writes every packet that is due, and counts how late it was.
    fn deliver_due(&mut self) {
        let now = self.now();
        while self.queue.peek().is_some_and(|q| q.at <= now + EARLY_SECS) {
            let q = self.queue.pop().unwrap();
            let late = (self.now() - q.at).max(0.0);
            self.local.late_sum += late;
            self.local.late_max = self.local.late_max.max(late);
            if late > 0.001 {
                self.local.late_over_1ms += 1;
            }
            match write_packet(self.tuns[q.dst].as_raw_fd(), &q.pkt) {
                Ok(()) => {
                    self.local.delivered += 1;
                    self.traffic[q.dst].bytes_in += q.pkt.len() as u64;
                    self.traffic[q.dst].packets_in += 1;
                }
                Err(_) => self.local.write_errors += 1,
            }
        }
    }
}

impl Forwarder {
    /// Adds the local counts to the shared ones.
    fn flush(&mut self) {
        flush(&self.sh, &mut self.local);
        let mut t = self.sh.traffic.lock().unwrap();
        for (total, local) in t.iter_mut().zip(self.traffic.iter_mut()) {
            total.add(local);
            *local = NodeTraffic::default();
        }
    }
}

fn flush(sh: &Shared, local: &mut RouterStats) {
    let mut s = sh.stats.lock().unwrap();
    s.no_route += local.no_route;
    s.not_ipv4 += local.not_ipv4;
    s.write_errors += local.write_errors;
    s.delivered += local.delivered;
    s.late_sum += local.late_sum;
    s.late_max = s.late_max.max(local.late_max);
    s.late_over_1ms += local.late_over_1ms;
    let rt = s.realtime;
    *local = RouterStats {
        realtime: rt,
        ..RouterStats::default()
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4_to(d: [u8; 4]) -> Vec<u8> {
        let mut p = vec![0u8; 28];
        p[0] = 0x45;
        p[16..20].copy_from_slice(&d);
        p
    }

    #[test]
    fn destinations_unicast_multicast_and_strays() {
        assert_eq!(destinations(&ipv4_to([10, 77, 0, 2]), 0, 3), Some(vec![1]));
        assert_eq!(
            destinations(&ipv4_to([224, 0, 0, 251]), 1, 3),
            Some(vec![0, 2])
        );
        assert_eq!(
            destinations(&ipv4_to([10, 77, 0, 255]), 2, 3),
            Some(vec![0, 1])
        );
        assert_eq!(destinations(&ipv4_to([10, 77, 0, 9]), 0, 3), Some(vec![]));
        assert_eq!(destinations(&ipv4_to([10, 77, 0, 1]), 0, 3), Some(vec![]));
        assert_eq!(destinations(&ipv4_to([8, 8, 8, 8]), 0, 3), Some(vec![]));
        let mut v6 = vec![0u8; 40];
        v6[0] = 0x60;
        assert_eq!(destinations(&v6, 0, 3), None);
    }

    #[test]
    fn queue_pops_earliest_first_then_fifo() {
        let mut q = BinaryHeap::new();
        for (at, seq) in [(2.0, 1), (1.0, 2), (1.0, 3), (0.5, 4)] {
            q.push(Queued {
                at,
                seq,
                dst: 0,
                pkt: vec![],
            });
        }
        let order: Vec<u64> = std::iter::from_fn(|| q.pop().map(|x| x.seq)).collect();
        assert_eq!(order, vec![4, 2, 3, 1]);
    }

    /// A datagram socket pair stands in for a TUN device: one read is one
    /// packet, as with IFF_TUN | IFF_NO_PI.
    fn fake_tun() -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: socketpair fills two descriptors we then own.
        let r = unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
                fds.as_mut_ptr(),
            )
        };
        assert_eq!(r, 0);
        // SAFETY: fresh descriptors.
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
    }

    /// The router counts each node's packets and bytes out (read from its
    /// TUN, once, whatever their fate) and in (written to its TUN).
    #[test]
    fn per_node_traffic_is_counted_in_and_out() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let (mut router_ends, mut node_ends) = (Vec::new(), Vec::new());
        for _ in 0..3 {
            let (r, n) = fake_tun();
            router_ends.push(r);
            node_ends.push(n);
        }
        let links = vec![vec![LinkParams::default(); 3]; 3];
        let router = Router::start(router_ends, &links, &names, 1).unwrap();
        let send =
            |from: usize, pkt: &[u8]| write_packet(node_ends[from].as_raw_fd(), pkt).unwrap();
        // a → b twice (100 bytes), c → everyone once (multicast, 60 bytes),
        // b → nobody (10.77.0.9, 40 bytes).
        let mut unicast = ipv4_to([10, 77, 0, 2]);
        unicast.resize(100, 0);
        send(0, &unicast);
        send(0, &unicast);
        let mut multicast = ipv4_to([224, 0, 0, 251]);
        multicast.resize(60, 0);
        send(2, &multicast);
        let mut stray = ipv4_to([10, 77, 0, 9]);
        stray.resize(40, 0);
        send(1, &stray);
        // Each node reads what it got.
        let mut got = [0usize; 3];
        let mut buf = [0u8; 2048];
        let until = Instant::now() + Duration::from_secs(5);
        while got != [1, 3, 0] && Instant::now() < until {
            for (i, fd) in node_ends.iter().enumerate() {
                while read_packet(fd.as_raw_fd(), &mut buf).unwrap().is_some() {
                    got[i] += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(got, [1, 3, 0], "packets each node received");
        std::thread::sleep(FLUSH_EVERY * 3);
        let t = router.node_traffic();
        let counts = |bi, bo, pi, po| NodeTraffic {
            bytes_in: bi,
            bytes_out: bo,
            packets_in: pi,
            packets_out: po,
        };
        assert_eq!(t[0], counts(60, 200, 1, 2));
        assert_eq!(t[1], counts(260, 40, 3, 1));
        assert_eq!(t[2], counts(0, 60, 0, 1));
        router.stop().unwrap();
    }
}
