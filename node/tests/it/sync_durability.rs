//! `deploy --durability sync` (issue 15, item 3): output commit across the
//! death of a vessel's host, on three real nodes.
//!
//! Method: the *vessel* is examples/kvserver.c deployed with `--durability
//! sync` on node a; the *client* enters at another node and writes and
//! reads keys in lockstep, without pause (`SET kN vN`, then now and then
//! `GET` of an earlier key), on one connection; the *fault* is `kill -9`
//! of a, never restarted. The oracle: the client's connection is never
//! reset or closed (every answer comes, in order), and every write that
//! was acknowledged (`OK`) reads back after the failover, on the same
//! connection and on a new one.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::mesh::stderr;
use crate::mesh_vessels::Mesh;
use crate::support::compile_c;

/// The vessel's service port (the other mesh tests use others).
const PORT: u16 = 7415;

/// How long one answer may take: a failover (a lease hold of about 1.7 s,
/// a round of votes, the new host's first replicated checkpoint) and a
/// loaded CI machine, well inside the entry's 30 s hold.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(25);

/// How long to wait for the mesh's state to change.
const WAIT: Duration = Duration::from_secs(30);

/// Node `via`'s `ps --json` row of vessel `id`.
fn row(mesh: &Mesh, via: usize, id: &str) -> Option<Value> {
    mesh.ps(via).into_iter().find(|r| r["id"] == id)
}

/// A line client of the kv server.
struct Client {
    write: TcpStream,
    read: BufReader<TcpStream>,
}

impl Client {
    fn connect(node: usize) -> Client {
        let s = TcpStream::connect(Mesh::service_addr(node, PORT)).expect("connect");
        s.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Client {
            write: s.try_clone().unwrap(),
            read: BufReader::new(s),
        }
    }

    /// Sends one command and returns its answer line; the connection must
    /// hold (no reset, no end of stream, an answer within the timeout).
    fn ask(&mut self, line: &str) -> String {
        self.write
            .write_all(format!("{line}\n").as_bytes())
            .unwrap_or_else(|e| panic!("`{line}`: the connection broke on write: {e}"));
        let mut answer = String::new();
        let n = self
            .read
            .read_line(&mut answer)
            .unwrap_or_else(|e| panic!("`{line}`: the connection broke: {e}"));
        assert!(n > 0, "`{line}`: the connection was closed");
        answer.trim_end().to_string()
    }
}

/// Goal: a client of a sync vessel, entering at a node that survives,
/// keeps its connection through the host's `kill -9`, and loses no
/// acknowledged write: its last `OK`s before the kill were released only
/// once the replica held the checkpoint that made them.
#[test]
fn a_sync_vessels_client_keeps_its_connection_and_every_acknowledged_write() {
    let _cpu = crate::support::shared_cpu();
    let wasm = compile_c("examples/kvserver.c", &[]);
    let mut mesh = Mesh::new(0, 200_000);
    let port = PORT.to_string();
    let out = mesh.cli(
        0,
        &[
            "deploy",
            "--name",
            "kv",
            "--port",
            &port,
            "--durability",
            "sync",
            wasm.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "deploy: {}", stderr(&out));
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();

    // Leased from 3 voters, with a replica that holds a checkpoint.
    let deadline = Instant::now() + WAIT;
    let r = loop {
        let r = row(&mesh, 0, &id);
        let ready = r.as_ref().is_some_and(|r| {
            r["lease"]
                .as_str()
                .is_some_and(|l| l.starts_with("held at epoch 1 from 3 voters"))
                && r["replica_age_ms"].is_u64()
        });
        if ready {
            break r.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "not leased and replicated: {r:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(r["durability"], "sync 50ms", "ps shows the mode: {r}");

    // The client enters at the node that survives and is not the replica:
    // the service route must have reached it, and after the kill it must
    // follow the new epoch, which it does only with its certificate.
    let replica = r["replicas"][0]["node"].as_str().expect("a replica");
    let entry = (1..3)
        .find(|&i| mesh.ids[i] != replica)
        .expect("a node besides host and replica");
    let deadline = Instant::now() + WAIT;
    let mut client = loop {
        if let Ok(s) = TcpStream::connect(Mesh::service_addr(entry, PORT)) {
            drop(s);
            break Client::connect(entry);
        }
        assert!(Instant::now() < deadline, "no listener at the entry");
        std::thread::sleep(Duration::from_millis(100));
    };

    let mut acknowledged = 0u64;
    let set = |client: &mut Client, acknowledged: &mut u64| {
        let n = *acknowledged;
        assert_eq!(client.ask(&format!("SET k{n} v{n}")), "OK", "SET k{n}");
        *acknowledged += 1;
        if n % 7 == 3 {
            let k = n / 2;
            assert_eq!(client.ask(&format!("GET k{k}")), format!("VALUE v{k}"));
        }
    };
    for _ in 0..40 {
        set(&mut client, &mut acknowledged);
    }
    // The kill lands while writes are in flight: the writer goes on in
    // its thread, the host dies under it.
    let writer = std::thread::spawn(move || {
        let started = Instant::now();
        let mut latencies_after = Vec::new();
        // Writes until 2 s of writes went through after the failover.
        let mut slow_one_seen = false;
        let mut after_slow = 0;
        while after_slow < 40 && started.elapsed() < WAIT * 2 {
            let t = Instant::now();
            set(&mut client, &mut acknowledged);
            let took = t.elapsed();
            if took > Duration::from_millis(800) {
                slow_one_seen = true;
                latencies_after.push(took);
            } else if slow_one_seen {
                after_slow += 1;
            }
        }
        (client, acknowledged, latencies_after)
    });
    std::thread::sleep(Duration::from_millis(500));
    let _ = mesh.nodes[0].child.kill();
    let _ = mesh.nodes[0].child.wait();
    let killed = Instant::now();
    let (mut client, acknowledged, stalls) = writer.join().expect("the client held");
    eprintln!(
        "sync failover: {acknowledged} writes acknowledged, the client stalled {stalls:?} \
         across the host's death, {:?} after the kill",
        killed.elapsed()
    );
    assert!(!stalls.is_empty(), "the writes never waited for a failover");

    // Every acknowledged write reads back, on the same connection and on
    // a new one.
    for k in 0..acknowledged {
        assert_eq!(
            client.ask(&format!("GET k{k}")),
            format!("VALUE v{k}"),
            "k{k}"
        );
    }
    let mut fresh = Client::connect(entry);
    assert_eq!(fresh.ask("COUNT"), format!("COUNT {acknowledged}"));
    let r = row(&mesh, entry, &id).expect("the vessel runs on");
    // Taken over at a higher epoch (2, or more after a split vote), by a
    // node that survived.
    assert!(r["epoch"].as_u64().unwrap() >= 2, "taken over: {r}");
    assert_ne!(r["node"], mesh.ids[0].as_str(), "{r}");

    // The log goes on from the checkpoint the new host resumed: the lines
    // readers were shown before the kill are there once, and the new
    // client's line is released once a checkpoint holds it.
    let deadline = Instant::now() + WAIT;
    loop {
        let out = mesh.cli(entry, &["logs", &id]);
        assert!(out.status.success(), "logs: {}", stderr(&out));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let serving = text.matches("kvserver: serving on descriptor").count();
        assert_eq!(serving, 1, "the start is logged once:\n{text}");
        if text.matches(" connected").count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the new client's line:\n{text}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
