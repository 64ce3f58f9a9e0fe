//! The node's TOML configuration. Every field has a default, so no file is
//! needed; the first start writes the defaults, with comments, to
//! `config.toml` in the data directory. Command-line flags override the file.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The port meshnode listens on by default, for TCP and for QUIC (UDP).
/// Unassigned by IANA.
pub const DEFAULT_PORT: u16 = 7646;

/// How often to ping each peer by default. libp2p's own default, 15 s, is
/// far too slow for latency-driven placement.
pub const DEFAULT_PING_INTERVAL_MS: u64 = 1000;

/// How long a connection that no protocol needs stays open.
pub const DEFAULT_IDLE_CONNECTION_TIMEOUT_SECS: u64 = 300;

/// Where a node accepts clients of service vessels by default: every
/// interface, so that a client can enter the mesh at any node.
pub const DEFAULT_SERVICE_ADDRESS: &str = "0.0.0.0";

/// How often the node gossips its status.
pub const DEFAULT_STATUS_INTERVAL_MS: u64 = 2000;

/// How often the node re-dials bootstrap peers it is not connected to, and
/// refreshes Kademlia.
pub const DEFAULT_REDIAL_INTERVAL_MS: u64 = 5000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Multiaddrs to listen on.
    pub listen: Vec<String>,
    /// Bootstrap peers: multiaddrs, ideally ending in `/p2p/PEERID`.
    pub peers: Vec<String>,
    /// Discover peers on the LAN with mDNS (it never sees loopback).
    pub mdns: bool,
    /// Use Kademlia to find peers beyond the LAN.
    pub kademlia: bool,
    pub ping_interval_ms: u64,
    pub idle_connection_timeout_secs: u64,
    pub status_interval_ms: u64,
    pub redial_interval_ms: u64,
    /// Node-local directories that deployments can mount by name
    /// (`meshnode deploy --mount GUEST=NAME`): name → host directory.
    pub mounts: std::collections::BTreeMap<String, PathBuf>,
    /// Fuel (about one wasm instruction each) a vessel runs between two
    /// looks at its commands: smaller reacts faster to a migration and
    /// costs a little more run time.
    pub vessel_fuel_slice: u64,
    /// Most linear memory one vessel may have, bytes.
    pub vessel_max_memory_bytes: u64,
    /// Pre-copy rounds while a vessel keeps running, before the final stop
    /// (0: stop-and-copy). For measurements; keep the default.
    pub migration_warm_rounds: u32,
    /// Send only the chunks a destination lacks. For measurements; keep the
    /// default.
    pub migration_dedup: bool,
    /// The IP address on which this node accepts the clients of the mesh's
    /// service vessels (`deploy --port`), or "none" to accept none.
    pub service_address: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: vec![
                format!("/ip4/0.0.0.0/tcp/{DEFAULT_PORT}"),
                format!("/ip4/0.0.0.0/udp/{DEFAULT_PORT}/quic-v1"),
            ],
            peers: Vec::new(),
            mdns: true,
            kademlia: true,
            ping_interval_ms: DEFAULT_PING_INTERVAL_MS,
            idle_connection_timeout_secs: DEFAULT_IDLE_CONNECTION_TIMEOUT_SECS,
            status_interval_ms: DEFAULT_STATUS_INTERVAL_MS,
            redial_interval_ms: DEFAULT_REDIAL_INTERVAL_MS,
            mounts: Default::default(),
            vessel_fuel_slice: crate::dock::DEFAULT_FUEL_SLICE,
            vessel_max_memory_bytes: crate::dock::DEFAULT_MAX_MEMORY_BYTES as u64,
            migration_warm_rounds: crate::mesh::vessels::MAX_WARM_ROUNDS,
            migration_dedup: true,
            service_address: DEFAULT_SERVICE_ADDRESS.to_string(),
        }
    }
}

/// What the first start writes: the defaults, explained.
pub const DEFAULT_CONFIG_TOML: &str = r#"# meshnode node configuration. Every setting is optional; these are the
# defaults. Command-line flags (`meshnode start --help`) override this file.

# Multiaddrs to listen on: TCP and QUIC on port 7646, all interfaces.
listen = ["/ip4/0.0.0.0/tcp/7646", "/ip4/0.0.0.0/udp/7646/quic-v1"]

# Bootstrap peers, e.g. "/ip4/192.0.2.7/udp/7646/quic-v1/p2p/12D3KooW...".
peers = []

# Discover peers on the LAN with mDNS (it never sees loopback).
mdns = true

# Find peers beyond the LAN through Kademlia.
kademlia = true

# How often to ping each peer (the smoothed RTT drives placement).
ping_interval_ms = 1000

# How long a connection that no protocol needs stays open.
idle_connection_timeout_secs = 300

# How often this node gossips its status (arch, OS, memory, load, vessels).
status_interval_ms = 2000

# How often to re-dial bootstrap peers that are not connected.
redial_interval_ms = 5000

# Fuel (about one wasm instruction each) a vessel runs between two looks
# at its commands (migrate, stop): smaller reacts faster, costs a little
# more run time.
vessel_fuel_slice = 4000000

# Most linear memory one vessel may have (512 MiB).
vessel_max_memory_bytes = 536870912

# Pre-copy rounds while a vessel keeps running, before the final stop
# (0 is stop-and-copy), and whether to send only the chunks a destination
# lacks. These exist to measure what each buys; keep the defaults.
migration_warm_rounds = 4
migration_dedup = true

# Where this node accepts the clients of the mesh's service vessels
# (`meshnode deploy --port`): an IP address, or "none". Every node accepts
# every service's clients and carries them to wherever the vessel runs.
service_address = "0.0.0.0"

# Node-local directories that deployments may mount by name
# (`meshnode deploy --mount /guest/path=NAME`). Unlike volumes, they do not
# travel: every node a vessel may move to needs a directory of that name.
[mounts]
# media = "/srv/media"
"#;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: {what} must be at least {min}")]
    TooSmall {
        path: PathBuf,
        what: &'static str,
        min: u64,
    },
}

impl Config {
    /// Reads `path`. When `write_default` and the file does not exist, writes
    /// [`DEFAULT_CONFIG_TOML`] there and returns the defaults.
    pub fn load(path: &Path, write_default: bool) -> Result<Config, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && write_default => {
                std::fs::write(path, DEFAULT_CONFIG_TOML).map_err(io)?;
                return Ok(Config::default());
            }
            Err(e) => return Err(io(e)),
        };
        let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        for (what, value, min) in [
            ("ping_interval_ms", config.ping_interval_ms, 10),
            ("status_interval_ms", config.status_interval_ms, 100),
            ("redial_interval_ms", config.redial_interval_ms, 100),
            (
                "idle_connection_timeout_secs",
                config.idle_connection_timeout_secs,
                1,
            ),
        ] {
            if value < min {
                return Err(ConfigError::TooSmall {
                    path: path.to_path_buf(),
                    what,
                    min,
                });
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_file_says_what_default_is() {
        let parsed: Config = toml::from_str(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unknown_keys_and_tiny_intervals_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("config.toml");
        std::fs::write(&p, "mnds = false\n").unwrap();
        let err = Config::load(&p, false).unwrap_err().to_string();
        assert!(err.contains("unknown field `mnds`"), "{err}");
        std::fs::write(&p, "ping_interval_ms = 0\n").unwrap();
        let err = Config::load(&p, false).unwrap_err().to_string();
        assert!(
            err.contains("ping_interval_ms must be at least 10"),
            "{err}"
        );
        let fresh = dir.path().join("new.toml");
        assert_eq!(Config::load(&fresh, true).unwrap(), Config::default());
        assert_eq!(
            std::fs::read_to_string(&fresh).unwrap(),
            DEFAULT_CONFIG_TOML
        );
    }
}
