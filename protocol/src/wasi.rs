//! A vessel's virtual OS state, as plain data.
//!
//! The dock implements `wasi_snapshot_preview1` over this state. Host handles
//! (open files, directory handles) are a cache that the dock rebuilds from it,
//! on this host or another: OS state is re-created, never restored.
//!
//! Paths are stored relative to the root of a preopened directory, as the
//! host resolved them when they were opened (symlinks followed), so that
//! opening the same relative path beneath the destination's directory for the
//! same guest path finds the same file.
//!
//! Sockets hold no host socket either: a listener names its service port,
//! a connection carries its unread bytes and two stream offsets, and the
//! bytes themselves pass through the node's service hub, which continues
//! the streams from those offsets after a rebuild.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything the dock needs to re-create a vessel's OS view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasiState {
    /// argv, each without its trailing NUL.
    pub args: Vec<Vec<u8>>,
    /// `KEY=VALUE` entries, each without its trailing NUL.
    pub env: Vec<Vec<u8>>,
    /// Preopened directories, referenced by index from descriptors.
    pub preopens: Vec<Preopen>,
    /// The descriptor table, by guest fd number.
    pub fds: BTreeMap<u32, Descriptor>,
    pub clocks: ClockState,
    pub stdio: StdioPositions,
    /// The deadlines (guest monotonic ns) of a `poll_oneoff` that was
    /// interrupted so the vessel could move: when the call is re-issued on
    /// resume, it waits only for what was left, not its whole timeout again.
    #[serde(default)]
    pub pending_poll_deadlines_ns: Option<Vec<u64>>,
}

/// A preopened directory. The guest sees `guest_path`; which host directory
/// backs it is a node-local decision made when the state is rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preopen {
    pub guest_path: String,
}

/// One entry of the descriptor table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    pub kind: DescriptorKind,
    /// preview1 rights of this descriptor.
    pub rights_base: u64,
    /// preview1 rights that descriptors opened through this one may get.
    pub rights_inheriting: u64,
    /// preview1 `fdflags` (append, dsync, nonblock, rsync, sync).
    pub fdflags: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DescriptorKind {
    Stdin,
    Stdout,
    Stderr,
    /// The root of preopen number `preopen`.
    PreopenRoot {
        preopen: u32,
    },
    /// A directory opened beneath a preopen.
    Directory {
        preopen: u32,
        path: Vec<u8>,
    },
    /// A regular file (or other non-directory) opened beneath a preopen.
    File {
        preopen: u32,
        /// Path relative to the preopen's root. Empty only for detached files.
        path: Vec<u8>,
        /// The current file position.
        offset: u64,
        read: bool,
        write: bool,
        /// Set when the file had no name left at capture (it was unlinked
        /// while open): its contents travel here, because re-opening by path
        /// cannot find it. Bounded by `limits::MAX_DETACHED_FILE_BYTES`.
        detached_contents: Option<Vec<u8>>,
    },
    /// A listening socket for a named service port, preopened for the vessel
    /// (`meshnode run --tcplisten`). It holds no host socket: connections
    /// reach the vessel through the node's service hub, so the listener can
    /// move with the vessel and be served by another node.
    Listener(ListenerState),
    /// An accepted connection. Its bytes travel through the service hub;
    /// what the vessel has received but not yet read travels here.
    Connection(ConnectionState),
}

/// A listening socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerState {
    /// The service port's name, by which the hub of whichever node runs the
    /// vessel knows it (for `--tcplisten ADDR`, the address as given).
    pub service: String,
    /// Connections that arrived and were taken from the hub, but that the
    /// vessel has not accepted yet, oldest first. The ids are the hub's.
    pub pending: Vec<u64>,
}

/// One accepted connection: plain data, so that it can travel in a
/// snapshot and continue against the same hub with no byte lost or repeated.
///
/// The two byte counters are stream offsets: `received_bytes` is the offset
/// of the next byte the dock will ask the hub for (everything before it is
/// either in `unread` or was read by the vessel), `sent_bytes` the offset of
/// the next byte the vessel sends. A mesh layer uses them to acknowledge and
/// to resend without loss or duplication.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionState {
    /// The connection's id, assigned by whoever accepted the client.
    pub id: u64,
    /// The service port it arrived on.
    pub service: String,
    /// Bytes received from the hub that the vessel has not read yet. At most
    /// `limits::MAX_SOCKET_UNREAD_BYTES`.
    #[serde(with = "crate::ids::serde_bytes_vec")]
    pub unread: Vec<u8>,
    /// Bytes taken from the hub so far (read or in `unread`).
    pub received_bytes: u64,
    /// Bytes handed to the hub so far.
    pub sent_bytes: u64,
    /// The peer closed its side: after `unread`, the vessel reads end-of-file.
    pub peer_closed: bool,
    /// The peer reset the connection: after `unread`, reads and writes fail.
    pub peer_reset: bool,
    /// The reset has been reported to the vessel once (`ECONNRESET`); later
    /// reads see end-of-file and writes `EPIPE`, as on Linux.
    pub reset_reported: bool,
    /// The vessel shut down its reading side (`SHUT_RD`).
    pub shut_read: bool,
    /// The vessel shut down its writing side (`SHUT_WR`): the peer reads
    /// end-of-file after `sent_bytes` bytes.
    pub shut_write: bool,
}

impl ConnectionState {
    /// A connection just accepted.
    pub fn new(id: u64, service: String) -> Self {
        ConnectionState {
            id,
            service,
            unread: Vec::new(),
            received_bytes: 0,
            sent_bytes: 0,
            peer_closed: false,
            peer_reset: false,
            reset_reported: false,
            shut_read: false,
            shut_write: false,
        }
    }
}

/// Why the sockets of a [`WasiState`] are refused. Each names the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SocketStateError {
    #[error("{count} listening sockets, over the limit of {limit} service ports per vessel")]
    TooManyServicePorts { count: usize, limit: usize },
    #[error("{count} connections (open and waiting to be accepted), over the limit of {limit} per vessel")]
    TooManyConnections { count: usize, limit: usize },
    #[error("connection {id} holds {size_bytes} unread bytes, over the limit of {limit_bytes}")]
    UnreadTooLarge {
        id: u64,
        size_bytes: usize,
        limit_bytes: usize,
    },
    #[error("connection {id} has {unread} unread bytes but received only {received}")]
    UnreadPastReceived {
        id: u64,
        unread: usize,
        received: u64,
    },
    #[error("connection {id} appears twice")]
    DuplicateConnection { id: u64 },
    #[error("service port {service} has two listening sockets")]
    DuplicateService { service: String },
    #[error("a service port name of {size_bytes} bytes, over the limit of {limit_bytes}")]
    ServiceNameTooLong {
        size_bytes: usize,
        limit_bytes: usize,
    },
}

impl WasiState {
    /// Checks the sockets against the named limits before anything is
    /// rebuilt from them (a state arrives from another node).
    pub fn check_sockets(&self) -> Result<(), SocketStateError> {
        use crate::limits::{
            MAX_SERVICE_NAME_BYTES, MAX_SERVICE_PORTS, MAX_SOCKET_UNREAD_BYTES,
            MAX_VESSEL_CONNECTIONS,
        };
        let mut ids = std::collections::BTreeSet::new();
        let mut services = std::collections::BTreeSet::new();
        let mut listeners = 0;
        let mut conns = 0;
        let name_ok = |s: &str| {
            if s.len() > MAX_SERVICE_NAME_BYTES {
                Err(SocketStateError::ServiceNameTooLong {
                    size_bytes: s.len(),
                    limit_bytes: MAX_SERVICE_NAME_BYTES,
                })
            } else {
                Ok(())
            }
        };
        for d in self.fds.values() {
            match &d.kind {
                DescriptorKind::Listener(l) => {
                    name_ok(&l.service)?;
                    listeners += 1;
                    if !services.insert(l.service.as_str()) {
                        return Err(SocketStateError::DuplicateService {
                            service: l.service.clone(),
                        });
                    }
                    conns += l.pending.len();
                    for &id in &l.pending {
                        if !ids.insert(id) {
                            return Err(SocketStateError::DuplicateConnection { id });
                        }
                    }
                }
                DescriptorKind::Connection(c) => {
                    name_ok(&c.service)?;
                    conns += 1;
                    if !ids.insert(c.id) {
                        return Err(SocketStateError::DuplicateConnection { id: c.id });
                    }
                    if c.unread.len() > MAX_SOCKET_UNREAD_BYTES {
                        return Err(SocketStateError::UnreadTooLarge {
                            id: c.id,
                            size_bytes: c.unread.len(),
                            limit_bytes: MAX_SOCKET_UNREAD_BYTES,
                        });
                    }
                    if c.unread.len() as u64 > c.received_bytes {
                        return Err(SocketStateError::UnreadPastReceived {
                            id: c.id,
                            unread: c.unread.len(),
                            received: c.received_bytes,
                        });
                    }
                }
                _ => {}
            }
        }
        if listeners > MAX_SERVICE_PORTS {
            return Err(SocketStateError::TooManyServicePorts {
                count: listeners,
                limit: MAX_SERVICE_PORTS,
            });
        }
        if conns > MAX_VESSEL_CONNECTIONS {
            return Err(SocketStateError::TooManyConnections {
                count: conns,
                limit: MAX_VESSEL_CONNECTIONS,
            });
        }
        Ok(())
    }
}

/// Clock state that must survive a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClockState {
    /// The guest's monotonic clock at the moment the state was captured. A
    /// rebuilt vessel's monotonic clock continues from here, whatever the new
    /// host's own monotonic clock says, so it never goes backwards.
    pub monotonic_ns: u64,
}

/// How many bytes went through the standard streams. Logs are continued from
/// these offsets after a move, so that no line is lost or repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct StdioPositions {
    pub stdin_bytes: u64,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{MAX_SOCKET_UNREAD_BYTES, MAX_VESSEL_CONNECTIONS};

    fn state_with(kinds: Vec<DescriptorKind>) -> WasiState {
        WasiState {
            args: vec![],
            env: vec![],
            preopens: vec![],
            fds: kinds
                .into_iter()
                .enumerate()
                .map(|(i, kind)| {
                    (
                        3 + i as u32,
                        Descriptor {
                            kind,
                            rights_base: 0,
                            rights_inheriting: 0,
                            fdflags: 0,
                        },
                    )
                })
                .collect(),
            clocks: ClockState::default(),
            stdio: StdioPositions::default(),
            pending_poll_deadlines_ns: None,
        }
    }

    fn conn(id: u64, unread: usize) -> DescriptorKind {
        DescriptorKind::Connection(ConnectionState {
            unread: vec![0xab; unread],
            received_bytes: unread as u64 + 5,
            sent_bytes: 9,
            ..ConnectionState::new(id, "127.0.0.1:80".into())
        })
    }

    #[test]
    fn sockets_round_trip_and_unread_bytes_travel_as_a_byte_string() {
        let s = state_with(vec![
            DescriptorKind::Listener(ListenerState {
                service: "127.0.0.1:80".into(),
                pending: vec![7, 8],
            }),
            conn(1, 1000),
        ]);
        s.check_sockets().unwrap();
        let bytes = crate::cbor::encode(&s);
        // A byte string: about one byte per unread byte, not two.
        assert!(bytes.len() < 1500, "{} bytes", bytes.len());
        assert_eq!(crate::cbor::decode::<WasiState>(&bytes).unwrap(), s);
    }

    #[test]
    fn check_sockets_names_each_limit() {
        let too_big = state_with(vec![conn(1, MAX_SOCKET_UNREAD_BYTES + 1)]);
        assert!(matches!(
            too_big.check_sockets(),
            Err(SocketStateError::UnreadTooLarge { limit_bytes, .. }) if limit_bytes == MAX_SOCKET_UNREAD_BYTES
        ));
        let pending: Vec<u64> = (0..=MAX_VESSEL_CONNECTIONS as u64).collect();
        let many = state_with(vec![DescriptorKind::Listener(ListenerState {
            service: "s".into(),
            pending,
        })]);
        assert!(matches!(
            many.check_sockets(),
            Err(SocketStateError::TooManyConnections { limit, .. }) if limit == MAX_VESSEL_CONNECTIONS
        ));
        let mut lying = state_with(vec![conn(1, 10)]);
        if let Some(Descriptor {
            kind: DescriptorKind::Connection(c),
            ..
        }) = lying.fds.get_mut(&3)
        {
            c.received_bytes = 3;
        }
        assert!(matches!(
            lying.check_sockets(),
            Err(SocketStateError::UnreadPastReceived { .. })
        ));
        let twice = state_with(vec![
            conn(4, 0),
            DescriptorKind::Listener(ListenerState {
                service: "s".into(),
                pending: vec![4],
            }),
        ]);
        assert_eq!(
            twice.check_sockets(),
            Err(SocketStateError::DuplicateConnection { id: 4 })
        );
    }
}
