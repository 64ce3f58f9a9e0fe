//! Issue 14, item 4: what a stranger can make a node spend before it is
//! checked. A real `meshnode start` process; twenty strangers, each a real
//! libp2p peer with its own key, send at once one control request and one
//! vessel-protocol request far over what a stranger may send: a control
//! request of 40 MiB behind a header signed by a user key the node does
//! not trust, and a 60 MiB vessel message from a peer that is not a
//! member. The requests are written from a small filler, so the test
//! itself holds none of them.
//!
//! Before the gate, a node read each whole request before it looked at the
//! sender (the vessel requests alone: 20 × 60 MiB). Now every one is
//! refused after its header or its first 64 KiB, the node's peak resident
//! memory (VmHWM) stays within 64 MiB of what it was before, and it still
//! answers its user.

use std::io;
use std::time::Duration;

use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, StreamProtocol, Swarm};
use meshnode::identity::NodeIdentity;
use protocol::control::{ControlHeader, HeaderAuth, HeaderBody};
use protocol::membership::{Domain, PublicKey};
use protocol::snapshot::Hash;

use crate::mesh::User;

const STRANGERS: usize = 20;
const CONTROL_BODY_BYTES: usize = 40 * 1024 * 1024;
const VESSEL_MESSAGE_BYTES: usize = 60 * 1024 * 1024;
/// The bound on the node's memory growth.
const MAX_GROWTH_BYTES: u64 = 64 * 1024 * 1024;

/// A request written as `prefix` and then `filler_bytes` zero bytes, from
/// one small buffer.
#[derive(Debug, Clone)]
struct Flood {
    prefix: Vec<u8>,
    filler_bytes: usize,
}

#[derive(Clone, Default)]
struct FloodCodec;

impl request_response::Codec for FloodCodec {
    type Protocol = StreamProtocol;
    type Request = Flood;
    type Response = Vec<u8>;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Flood>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("a stranger serves nothing"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        let mut buf = Vec::new();
        io.take(1 << 20).read_to_end(&mut buf).await?;
        Ok(buf)
    }

    async fn write_request<T>(&mut self, _: &StreamProtocol, io: &mut T, r: Flood) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&r.prefix).await?;
        let zeros = vec![0u8; 64 * 1024];
        let mut left = r.filler_bytes;
        while left > 0 {
            let n = left.min(zeros.len());
            io.write_all(&zeros[..n]).await?;
            left -= n;
        }
        io.close().await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Ok(())
    }
}

#[derive(libp2p::swarm::NetworkBehaviour)]
struct Stranger {
    control: request_response::Behaviour<FloodCodec>,
    vessel: request_response::Behaviour<FloodCodec>,
}

fn flood_behaviour(protocol: &'static str) -> request_response::Behaviour<FloodCodec> {
    request_response::Behaviour::with_codec(
        FloodCodec,
        [(StreamProtocol::new(protocol), ProtocolSupport::Outbound)],
        request_response::Config::default().with_request_timeout(Duration::from_secs(120)),
    )
}

/// A control request's prefix: a header that says `body_bytes` follow,
/// signed (correctly, for this node) by a user key the node does not trust.
fn untrusted_control_prefix(node_key: PublicKey, body_bytes: usize) -> Vec<u8> {
    let user = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let body_hash = Hash::of(b"a deployment the node never reads");
    let signed = HeaderBody {
        node: node_key,
        body_hash,
    };
    let header = ControlHeader {
        body_bytes: body_bytes as u64,
        auth: Some(HeaderAuth {
            user_key: PublicKey::of(&user),
            body_hash,
            signature: protocol::membership::sign(&user, Domain::ControlHeader, &signed),
        }),
    };
    let header = protocol::cbor::encode(&header);
    let mut prefix = (header.len() as u32).to_be_bytes().to_vec();
    prefix.extend_from_slice(&header);
    prefix
}

/// A CBOR byte string header announcing `len` bytes: the start of a
/// plausible vessel message, whose body the node would have to read.
fn byte_string_prefix(len: usize) -> Vec<u8> {
    let mut p = vec![0x5a];
    p.extend_from_slice(&(len as u32).to_be_bytes());
    p
}

fn stranger_swarm() -> Swarm<Stranger> {
    let id = NodeIdentity::ephemeral().unwrap();
    libp2p::SwarmBuilder::with_existing_identity(id.keypair.clone())
        .with_tokio()
        .with_quic()
        .with_behaviour(|_| Stranger {
            control: flood_behaviour(meshnode::mesh::CONTROL_PROTOCOL),
            vessel: flood_behaviour(meshnode::mesh::VESSEL_PROTOCOL),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

/// Sends one control and one vessel flood and waits for both outcomes:
/// `true` for each that the node answered (it should answer none).
async fn flood_once(addr: Multiaddr, node_key: PublicKey) -> usize {
    let node = meshnode::mesh::peers::peer_of(&addr).unwrap();
    let mut swarm = stranger_swarm();
    swarm.dial(addr).unwrap();
    let control = swarm.behaviour_mut().control.send_request(
        &node,
        Flood {
            prefix: untrusted_control_prefix(node_key, CONTROL_BODY_BYTES),
            filler_bytes: CONTROL_BODY_BYTES,
        },
    );
    let vessel = swarm.behaviour_mut().vessel.send_request(
        &node,
        Flood {
            prefix: byte_string_prefix(VESSEL_MESSAGE_BYTES),
            filler_bytes: VESSEL_MESSAGE_BYTES,
        },
    );
    let mut pending = vec![control, vessel];
    let mut answered = 0;
    while !pending.is_empty() {
        let ev = tokio::time::timeout(Duration::from_secs(120), swarm.select_next_some())
            .await
            .expect("every flood ends (refused or answered) within 120 s");
        use request_response::Event::{Message, OutboundFailure};
        let done = match ev {
            SwarmEvent::Behaviour(StrangerEvent::Control(Message { message, .. }))
            | SwarmEvent::Behaviour(StrangerEvent::Vessel(Message { message, .. })) => {
                match message {
                    request_response::Message::Response { request_id, .. } => {
                        answered += 1;
                        Some(request_id)
                    }
                    _ => None,
                }
            }
            SwarmEvent::Behaviour(StrangerEvent::Control(OutboundFailure {
                request_id, ..
            }))
            | SwarmEvent::Behaviour(StrangerEvent::Vessel(OutboundFailure {
                request_id, ..
            })) => Some(request_id),
            _ => None,
        };
        pending.retain(|r| Some(*r) != done);
    }
    answered
}

/// `VmRSS` or `VmHWM` of a process, in bytes.
fn memory_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn oversize_requests_from_strangers_are_refused_before_they_are_read() {
    let user = User::new();
    let mut node = user.start("a", &[], &[]);
    let addr: Multiaddr = node.wait_ready().parse().unwrap();
    // The node answers its user before (and its memory settles).
    let out = user.run(&["peers", "--data-dir", node.dir()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let node_key = {
        let peer = meshnode::mesh::peers::peer_of(&addr).unwrap();
        meshnode::identity::peer_public_key(&peer).unwrap()
    };
    let pid = node.child.id();
    // The peak is measured from here: "5" resets VmHWM to the current RSS
    // (proc(5), clear_refs).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before_rss = memory_bytes(pid, "VmRSS");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let answered: usize = rt.block_on(async {
        let floods: Vec<_> = (0..STRANGERS)
            .map(|_| tokio::spawn(flood_once(addr.clone(), node_key)))
            .collect();
        let mut answered = 0;
        for f in floods {
            answered += f.await.unwrap();
        }
        answered
    });
    assert_eq!(
        answered, 0,
        "the node answered a stranger's oversize request"
    );

    let after_hwm = memory_bytes(pid, "VmHWM");
    let growth = after_hwm.saturating_sub(before_rss);
    eprintln!(
        "node memory: RSS {} MiB before, peak {} MiB during {STRANGERS} strangers' floods",
        before_rss >> 20,
        after_hwm >> 20,
    );
    assert!(
        growth <= MAX_GROWTH_BYTES,
        "the node's peak memory grew by {} MiB (over {} MiB) while strangers' requests were refused",
        growth >> 20,
        MAX_GROWTH_BYTES >> 20
    );
    // It still serves its user.
    let out = user.run(&["peers", "--data-dir", node.dir()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
