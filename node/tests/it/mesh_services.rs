//! Service vessels on a mesh of real nodes: `meshnode deploy --port`, every
//! node accepting the vessel's clients, and open connections that survive
//! the vessel's moves.
//!
//! Goal: a client's TCP connection, entered at any node, keeps working
//! across live migrations of the vessel it talks to: no reset, no byte lost,
//! none duplicated, with bytes in flight both ways at each capture.
//!
//! Method: the *vessel* is examples/kvserver.c (poll, non-blocking sockets)
//! deployed with `--port` on node A. The *workload* is a set of clients,
//! each a writer thread that pipelines `SET k v` / `GET k` pairs with
//! seeded values of 1 byte to 96 KiB without waiting for answers (so the
//! vessel always has unread requests and unsent answers), and a reader
//! thread that checks every answer in order. The *mover* is the test
//! calling `meshnode migrate` A→B→C→A while the clients run. One client
//! enters at C (the vessel comes to it and leaves it again), one at A (the
//! host it starts on, which then holds the client as a plain entry).
//! The oracle: each answer is exactly what the command implies, the last
//! `QUIT` gets `BYE` and then end-of-file, and no read or write fails.
//! Replay a run with MESHNODE_TEST_SEED=N.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::mesh::stderr;
use crate::mesh_vessels::Mesh;
use crate::support::compile_c;

/// Long enough for routes to spread and a migration to finish on a loaded
/// CI machine.
const WAIT: Duration = Duration::from_secs(60);

/// Pairs a client sends ahead of the answers.
const MAX_UNANSWERED_PAIRS: u64 = 8;

/// Largest value a client sets: several hub buffers' worth in flight.
const MAX_VALUE_BYTES: usize = 96 * 1024;

struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn value(seed: u64, client: u64, i: u64) -> Vec<u8> {
    let mut rng = SplitMix64(seed ^ (client << 32) ^ i);
    let len = 1 + (rng.next() as usize % MAX_VALUE_BYTES);
    (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
}

/// A port free on every node's service address.
fn free_port() -> u16 {
    // Each call draws from its own stream: tests of this binary run at the
    // same time and must not pick the same port (regression: the seed was
    // the process id alone, `Instant::now().elapsed()` being ~0, so two
    // tests drew the same port and one timed out).
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let call = CALLS.fetch_add(1, Ordering::SeqCst);
    let mut rng = SplitMix64((std::process::id() as u64) << 16 ^ call.wrapping_mul(0x9e37_79b9));
    loop {
        let port = 20_000 + (rng.next() % 30_000) as u16;
        let free = (0..3)
            .all(|i| std::net::TcpListener::bind((Mesh::service_ip(i).as_str(), port)).is_ok());
        if free {
            return port;
        }
    }
}

/// Connects to a node's service address, waiting until the node has heard
/// of the service (its listener is up and a request is answered).
fn connect(addr: SocketAddr) -> TcpStream {
    let start = Instant::now();
    loop {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            s.set_read_timeout(Some(WAIT)).unwrap();
            let mut probe = s.try_clone().unwrap();
            if probe.write_all(b"COUNT\n").is_ok() {
                let mut line = String::new();
                let mut r = BufReader::new(s.try_clone().unwrap());
                if r.read_line(&mut line).is_ok() && line.starts_with("COUNT") {
                    return s;
                }
            }
        }
        assert!(start.elapsed() < WAIT, "{addr} never served the vessel");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One client: a pipelining writer and a checking reader.
struct Client {
    writer: std::thread::JoinHandle<Result<u64, String>>,
    reader: std::thread::JoinHandle<Result<u64, String>>,
    stop: Arc<AtomicBool>,
    answered: Arc<AtomicU64>,
}

impl Client {
    fn start(addr: SocketAddr, seed: u64, id: u64) -> Client {
        let stream = connect(addr);
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(AtomicU64::new(0));
        let mut w = stream.try_clone().unwrap();
        let (stop_w, answered_w) = (stop.clone(), answered.clone());
        let writer = std::thread::spawn(move || -> Result<u64, String> {
            let mut i = 0u64;
            while !stop_w.load(Ordering::SeqCst) {
                let v = value(seed, id, i);
                let mut cmd = format!("SET k{id}-{i} ").into_bytes();
                cmd.extend_from_slice(&v);
                cmd.extend_from_slice(format!("\nGET k{id}-{i}\n").as_bytes());
                w.write_all(&cmd)
                    .map_err(|e| format!("client {id}: write of pair {i}: {e}"))?;
                i += 1;
                // At most a few pairs unanswered: bytes in flight both ways
                // at any instant, and the run still ends soon after.
                while i >= answered_w.load(Ordering::SeqCst) + MAX_UNANSWERED_PAIRS
                    && !stop_w.load(Ordering::SeqCst)
                {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            w.write_all(b"QUIT\n")
                .map_err(|e| format!("client {id}: write of QUIT: {e}"))?;
            Ok(i)
        });
        let answered_r = answered.clone();
        let reader = std::thread::spawn(move || -> Result<u64, String> {
            let mut r = BufReader::with_capacity(256 * 1024, stream);
            let mut i = 0u64;
            let mut line = Vec::new();
            loop {
                line.clear();
                r.read_until(b'\n', &mut line)
                    .map_err(|e| format!("client {id}: read of answer {i}: {e}"))?;
                if line == b"BYE\n" {
                    break;
                }
                if line != b"OK\n" {
                    return Err(format!(
                        "client {id}: answer to SET {i}: {:?}",
                        String::from_utf8_lossy(&line[..line.len().min(80)])
                    ));
                }
                line.clear();
                r.read_until(b'\n', &mut line)
                    .map_err(|e| format!("client {id}: read of value {i}: {e}"))?;
                let mut want = b"VALUE ".to_vec();
                want.extend_from_slice(&value(seed, id, i));
                want.push(b'\n');
                if line != want {
                    return Err(format!(
                        "client {id}: GET {i}: {} bytes, expected {} (first difference at {:?})",
                        line.len(),
                        want.len(),
                        line.iter().zip(&want).position(|(a, b)| a != b)
                    ));
                }
                i += 1;
                answered_r.store(i, Ordering::SeqCst);
            }
            // After BYE the server closes: end-of-file, not a reset.
            let mut rest = Vec::new();
            r.read_to_end(&mut rest)
                .map_err(|e| format!("client {id}: after BYE: {e}"))?;
            if !rest.is_empty() {
                return Err(format!("client {id}: {} bytes after BYE", rest.len()));
            }
            Ok(i)
        });
        Client {
            writer,
            reader,
            stop,
            answered,
        }
    }

    fn finish(self) -> Result<(u64, u64), String> {
        self.stop.store(true, Ordering::SeqCst);
        let sent = self.writer.join().unwrap()?;
        let answered = self.reader.join().unwrap()?;
        if sent != answered {
            return Err(format!("{sent} pairs sent, {answered} answered"));
        }
        Ok((sent, answered))
    }
}

#[test]
fn client_connections_survive_moves_with_bytes_in_flight_both_ways() {
    let _cpu = crate::support::shared_cpu();
    let seed: u64 = std::env::var("MESHNODE_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x05e4_1ce5);
    eprintln!("MESHNODE_TEST_SEED={seed}");
    let mesh = Mesh::new(0, 200_000);
    let port = free_port();
    let wasm = compile_c("examples/kvserver.c", &[]);
    let vessel = mesh.deploy_service(0, "kv", port, &wasm);
    let at = |i: usize| Mesh::service_addr(i, port);

    let via_c = Client::start(at(2), seed, 1);
    let via_a = Client::start(at(0), seed, 2);
    let wait_progress = |c: &Client, from: u64| {
        let start = Instant::now();
        while c.answered.load(Ordering::SeqCst) < from + 3 {
            assert!(
                start.elapsed() < WAIT,
                "no answers for {WAIT:?}\n{}",
                mesh.logs_of_nodes()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let mut hops = Vec::new();
    for to in [1, 2, 0] {
        wait_progress(&via_c, via_c.answered.load(Ordering::SeqCst));
        wait_progress(&via_a, via_a.answered.load(Ordering::SeqCst));
        let r = mesh
            .migrate(0, &vessel, to)
            .unwrap_or_else(|e| panic!("migrate to {to}: {e}\n{}", mesh.logs_of_nodes()));
        hops.push(r);
    }
    wait_progress(&via_c, via_c.answered.load(Ordering::SeqCst));
    wait_progress(&via_a, via_a.answered.load(Ordering::SeqCst));
    let c = via_c.finish();
    let a = via_a.finish();
    eprintln!("entered at C: {c:?}; entered at A: {a:?}; moves: {hops:?}");
    let logs = mesh.logs_of_nodes();
    let (c, a) = (
        c.unwrap_or_else(|e| panic!("{e}\n{logs}")),
        a.unwrap_or_else(|e| panic!("{e}\n{logs}")),
    );
    assert!(c.0 > 3 && a.0 > 3, "the clients made progress");
    let row = mesh.row(0, &vessel).expect("the vessel is listed");
    assert_eq!(row["migrations"].as_u64(), Some(3), "{row}");
    assert_eq!(row["state"], "running", "{row}");
}

/// A host that dies and resumes from an older image has lost bytes its
/// entry had confirmed to the client: the entry must reset the client
/// (RST), not end its stream (FIN), or a request cut short would look
/// answered to a client that reads until end-of-file. Regression: the
/// entry's writer shut down its half as it was dropped, so the client read
/// a clean end-of-file before the reset (seen in testnet's faults
/// scenario: "closed the connection").
#[test]
fn a_client_whose_host_lost_its_bytes_is_reset_not_closed() {
    let _cpu = crate::support::shared_cpu();
    let mut mesh = Mesh::new(0, 200_000);
    let port = free_port();
    let wasm = compile_c("examples/kvserver.c", &[]);
    let p = port.to_string();
    // Hosted on b; the client enters at a.
    let out = mesh.cli(
        1,
        &[
            "deploy",
            "--name",
            "kv",
            "--port",
            &p,
            wasm.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let addr: SocketAddr = format!("{}:{port}", Mesh::service_ip(0)).parse().unwrap();
    let stream = connect(addr);
    let mut w = stream.try_clone().unwrap();
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    w.write_all(b"SET k v\n").unwrap();
    r.read_line(&mut line).unwrap();
    assert_eq!(line, "OK\n");
    // b dies; it resumes the vessel from its deployment, which never saw
    // this connection's bytes.
    mesh.restart(1, &[]);
    line.clear();
    let _ = w.write_all(b"GET k\n");
    match r.read_line(&mut line) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "expected a reset, got {other:?} ({line:?})\n{}",
            mesh.logs_of_nodes()
        ),
    }
}
