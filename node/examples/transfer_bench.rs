//! Transfer throughput on loopback, for the migration benchmark
//! (scripts/bench_migration.py, docs/benchmarks.md): the same bytes
//!
//! - `tcp`: over a plain TCP socket (no encryption, no framing), and
//! - `quic` / `libp2p-tcp`: over libp2p with the node's own transport
//!   settings (node/src/mesh/behaviour.rs: QUIC with its idle timeout and
//!   keep-alive, or TCP with nodelay + noise + yamux) and the node's own
//!   request-response codec (`CborCodec`, the same limits as the vessel
//!   protocol), in requests of one 4 MiB byte string, 4 in flight, as
//!   meshnode sends chunk batches (64 × 64 KiB, `CHUNK_BATCHES_IN_FLIGHT`),
//!   but without chunks, hashing or the chunk store.
//!
//! Both ends run in this one process: libp2p on a two-worker tokio runtime,
//! plain TCP on two threads.
//!
//!     cargo run --release -p meshnode --example transfer_bench -- \
//!         [--mib 256] [--repeats 3] [--modes tcp,quic,libp2p-tcp]
//!
//! Prints one JSON object per line: {"mode", "bytes", "secs", "mib_per_s"},
//! the modes interleaved, `repeats` rounds.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, Message, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{noise, tcp, yamux, Multiaddr, StreamProtocol, Swarm};
use meshnode::mesh::behaviour::{
    PEER_REQUEST_TIMEOUT, QUIC_KEEP_ALIVE_INTERVAL, QUIC_MAX_IDLE_TIMEOUT_MS,
};
use meshnode::mesh::codec::CborCodec;
use meshnode::mesh::vessels::CHUNK_BATCHES_IN_FLIGHT;
use protocol::limits::{MAX_PEER_REQUEST_BYTES, MAX_PEER_RESPONSE_BYTES};
use protocol::migrate::ChunkBytes;
use std::io::{Read, Write};

const BATCH: usize = 4 * 1024 * 1024;

type Codec = CborCodec<ChunkBytes, u64>;
type Behaviour = request_response::Behaviour<Codec>;

fn swarm() -> Swarm<Behaviour> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            tcp::Config::default().nodelay(true),
            noise::Config::new,
            yamux::Config::default,
        )
        .expect("tcp")
        .with_quic_config(|mut c| {
            c.max_idle_timeout = QUIC_MAX_IDLE_TIMEOUT_MS;
            c.keep_alive_interval = QUIC_KEEP_ALIVE_INTERVAL;
            c
        })
        .with_behaviour(|_| {
            request_response::Behaviour::with_codec(
                CborCodec::new(MAX_PEER_REQUEST_BYTES, MAX_PEER_RESPONSE_BYTES),
                [(
                    StreamProtocol::new("/meshnode/transfer-bench/1"),
                    ProtocolSupport::Full,
                )],
                request_response::Config::default()
                    .with_request_timeout(PEER_REQUEST_TIMEOUT)
                    .with_max_concurrent_streams(64),
            )
        })
        .expect("behaviour")
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Sends `total` bytes in 4 MiB requests over libp2p (`listen` picks the
/// transport); returns seconds from the first request to the last answer.
async fn libp2p_once(listen: &str, total: usize) -> f64 {
    let mut server = swarm();
    server.listen_on(listen.parse().unwrap()).unwrap();
    let addr: Multiaddr = loop {
        if let SwarmEvent::NewListenAddr { address, .. } = server.select_next_some().await {
            break address;
        }
    };
    let server_id = *server.local_peer_id();
    let server_task = tokio::spawn(async move {
        loop {
            if let SwarmEvent::Behaviour(request_response::Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            }) = server.select_next_some().await
            {
                let n = request.0.len() as u64;
                let _ = server.behaviour_mut().send_response(channel, n);
            }
        }
    });

    let mut client = swarm();
    client
        .dial(addr.with(libp2p::multiaddr::Protocol::P2p(server_id)))
        .unwrap();
    loop {
        match client.select_next_some().await {
            SwarmEvent::ConnectionEstablished { .. } => break,
            SwarmEvent::OutgoingConnectionError { error, .. } => panic!("dial: {error}"),
            _ => {}
        }
    }
    let payload: Vec<u8> = (0..BATCH).map(|i| (i * 7 + 1) as u8).collect();
    // One request to warm the connection (stream set-up, congestion window).
    client
        .behaviour_mut()
        .send_request(&server_id, ChunkBytes(payload.clone()));
    wait_answers(&mut client, 1).await;

    let batches = total.div_ceil(BATCH);
    let started = Instant::now();
    let mut sent = 0;
    let mut answered = 0;
    while sent < batches.min(CHUNK_BATCHES_IN_FLIGHT) {
        client
            .behaviour_mut()
            .send_request(&server_id, ChunkBytes(payload.clone()));
        sent += 1;
    }
    while answered < batches {
        wait_answers(&mut client, 1).await;
        answered += 1;
        if sent < batches {
            client
                .behaviour_mut()
                .send_request(&server_id, ChunkBytes(payload.clone()));
            sent += 1;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    server_task.abort();
    secs
}

async fn wait_answers(client: &mut Swarm<Behaviour>, n: usize) {
    let mut got = 0;
    while got < n {
        match client.select_next_some().await {
            SwarmEvent::Behaviour(request_response::Event::Message {
                message: Message::Response { response, .. },
                ..
            }) => {
                assert_eq!(response as usize, BATCH);
                got += 1;
            }
            SwarmEvent::Behaviour(request_response::Event::OutboundFailure { error, .. }) => {
                panic!("request failed: {error}")
            }
            _ => {}
        }
    }
}

/// Sends `total` bytes over a plain loopback TCP socket in 4 MiB writes
/// (blocking std sockets, a thread per end); returns seconds from the first
/// write to the receiver's one-byte answer.
fn tcp_once(total: usize) -> f64 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_nodelay(true).unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0;
        while got < total {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "early end");
            got += n;
        }
        s.write_all(&[1]).unwrap();
    });
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_nodelay(true).unwrap();
    let payload: Vec<u8> = (0..BATCH).map(|i| (i * 7 + 1) as u8).collect();
    let started = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = left.min(BATCH);
        c.write_all(&payload[..n]).unwrap();
        left -= n;
    }
    let mut one = [0u8; 1];
    c.read_exact(&mut one).unwrap();
    let secs = started.elapsed().as_secs_f64();
    server.join().unwrap();
    secs
}

fn main() {
    let mut mib: usize = 256;
    let mut repeats = 3;
    let mut modes = vec!["tcp".to_string(), "quic".into(), "libp2p-tcp".into()];
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--mib" => mib = args.next().unwrap().parse().unwrap(),
            "--repeats" => repeats = args.next().unwrap().parse().unwrap(),
            "--modes" => modes = args.next().unwrap().split(',').map(String::from).collect(),
            _ => {
                eprintln!(
                    "usage: transfer_bench [--mib N] [--repeats N] [--modes tcp,quic,libp2p-tcp]"
                );
                std::process::exit(2);
            }
        }
    }
    let total = mib * 1024 * 1024;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..repeats {
        for m in &modes {
            let secs = match m.as_str() {
                "tcp" => tcp_once(total),
                "quic" => rt.block_on(libp2p_once("/ip4/127.0.0.1/udp/0/quic-v1", total)),
                "libp2p-tcp" => rt.block_on(libp2p_once("/ip4/127.0.0.1/tcp/0", total)),
                other => panic!("unknown mode {other}"),
            };
            println!(
                "{{\"mode\": \"{m}\", \"bytes\": {total}, \"secs\": {secs:.6}, \"mib_per_s\": {:.1}}}",
                mib as f64 / secs
            );
        }
    }
}
