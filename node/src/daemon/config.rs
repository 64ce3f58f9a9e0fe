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

/// How often placement judges each vessel hosted here, by default. With
/// the default hysteresis (3 judgements) a move is decided about 3 s after
/// its clients moved, leaving most of the 10 s reaction goal to the
/// migration itself.
pub const DEFAULT_PLACEMENT_INTERVAL_MS: u64 = 1000;

/// No automatic move within this long after a vessel's last move (or a
/// failed attempt), by default: long enough that a new host's traffic book
/// has filled up before it judges, short enough to follow a client that
/// really moved.
pub const DEFAULT_PLACEMENT_COOLDOWN_MS: u64 = 15_000;

/// A crash costs at most a second of a vessel's work: short enough that a
/// user does not notice it, long enough that checkpoints cost a small
/// board about 1 % of its CPU (docs/benchmarks.md, issue 13).
pub const DEFAULT_CHECKPOINT_EVERY_MS: u64 = 1_000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// Most linear memory one vessel may have, all its memories together,
    /// bytes. It also bounds the snapshots this node resumes, whatever
    /// limits they were taken under.
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
    /// How often placement judges each vessel hosted here (0: never move
    /// vessels automatically).
    pub placement_interval_ms: u64,
    /// A move must cut the clients' mean RTT by this fraction of what it is
    /// here (0.3: 30 %) …
    pub placement_margin: f64,
    /// … and by at least this many milliseconds …
    pub placement_min_gain_ms: f64,
    /// … with the same best node for this many judgements in a row.
    pub placement_hysteresis: u32,
    /// No automatic move within this long after a vessel's last move.
    pub placement_cooldown_ms: u64,
    /// A node whose load per CPU is above this and above this node's takes
    /// no vessel from placement (0: load is not looked at).
    pub placement_max_load_per_cpu: f64,
    /// Half-life of the client traffic placement weighs: a client that went
    /// quiet counts half as much after this long.
    pub traffic_half_life_ms: u64,
    /// How often each vessel running here gets a durable checkpoint, in
    /// milliseconds (0: never), unless its deployment says otherwise
    /// (`deploy --checkpoint-every`). A crash or a power cut costs a vessel
    /// at most this much of its work.
    pub checkpoint_every_ms: u64,
    /// Newest checkpoints kept in the store per vessel (at least 1).
    pub keep_checkpoints: u64,
    /// Most bytes the chunk store may take on disk: a checkpoint that would
    /// exceed it is skipped. Absent: a quarter of the file system the data
    /// directory is on; 0: no budget beyond the disk itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk_budget_bytes: Option<u64>,
    /// The node's name (`start --name` overrides it). Absent: the
    /// hostname, made into a valid name (`control::resolve::default_name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
            migration_warm_rounds: crate::migration::source::MAX_WARM_ROUNDS,
            migration_dedup: true,
            service_address: DEFAULT_SERVICE_ADDRESS.to_string(),
            placement_interval_ms: DEFAULT_PLACEMENT_INTERVAL_MS,
            placement_margin: crate::placement::PlacementParams::default().margin,
            placement_min_gain_ms: crate::placement::PlacementParams::default().min_gain_ms,
            placement_hysteresis: crate::placement::PlacementParams::default().hysteresis,
            placement_cooldown_ms: DEFAULT_PLACEMENT_COOLDOWN_MS,
            placement_max_load_per_cpu: crate::placement::PlacementParams::default()
                .max_load_per_cpu,
            traffic_half_life_ms: crate::placement::DEFAULT_TRAFFIC_HALF_LIFE_MS,
            checkpoint_every_ms: DEFAULT_CHECKPOINT_EVERY_MS,
            keep_checkpoints: crate::vessel::retention::DEFAULT_KEEP_CHECKPOINTS as u64,
            disk_budget_bytes: None,
            name: None,
        }
    }
}

impl Config {
    /// The placement policy's parameters.
    pub fn placement_params(&self) -> crate::placement::PlacementParams {
        crate::placement::PlacementParams {
            margin: self.placement_margin,
            min_gain_ms: self.placement_min_gain_ms,
            hysteresis: self.placement_hysteresis,
            cooldown: std::time::Duration::from_millis(self.placement_cooldown_ms),
            max_load_per_cpu: self.placement_max_load_per_cpu,
        }
    }

    /// How the store keeps checkpoints, for a node whose data directory is
    /// `data_dir` (where the default disk budget is measured).
    pub fn retention(&self, data_dir: &Path) -> crate::vessel::retention::RetentionConfig {
        use crate::vessel::retention::{default_disk_budget_bytes, RetentionConfig};
        RetentionConfig {
            keep_checkpoints: usize::try_from(self.keep_checkpoints)
                .unwrap_or(usize::MAX)
                .max(1),
            disk_budget_bytes: match self.disk_budget_bytes {
                None => default_disk_budget_bytes(data_dir),
                Some(0) => None,
                Some(n) => Some(n),
            },
            ..RetentionConfig::default()
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

# How often to ping each peer: the RTT probe. Each node keeps a smoothed
# RTT per peer (a new sample weighs 1/8) and gossips it, and placement
# works from these; libp2p's own default of 15 s is far too slow to react
# within seconds.
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

# Most linear memory one vessel may have, all its memories together (512 MiB).
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
# Placement: the node that hosts a vessel moves it to the node nearest its
# clients (the traffic-weighted mean RTT from a node to where the vessel's
# client traffic enters the mesh), only when that node is clearly nearer
# and has room. With these defaults a vessel follows its clients within
# about 10 s of them moving, and never flaps. `meshnode pin` exempts one
# vessel.
#
# How often each vessel hosted here is judged (0: never move automatically).
placement_interval_ms = 1000
# A move must cut the clients' mean RTT by this fraction of what it is here
# (0.3 is 30 %) and by at least this many milliseconds …
placement_margin = 0.3
placement_min_gain_ms = 10.0
# … with the same best node for this many judgements in a row (hysteresis).
placement_hysteresis = 3
# No automatic move within this long after a vessel's last move (cool-down).
placement_cooldown_ms = 15000
# A node whose load per CPU is above this and above this node's takes no
# vessel from placement (0: load is not looked at).
placement_max_load_per_cpu = 4.0
# Client traffic fades with this half-life: after a client moves, its new
# entry node outweighs the old one within about 1.3 half-lives.
traffic_half_life_ms = 2000

# Durability: every vessel running here is checkpointed this often (0:
# never; `deploy --checkpoint-every` overrides it per vessel). After a crash
# or a power cut the node resumes each vessel from its newest checkpoint,
# so a crash costs at most this much work, with the vessel's log and
# volumes rolled back to match its memory.
checkpoint_every_ms = 1000
# Checkpoints: the store keeps the newest this many of each vessel (at
# least 1); older ones are garbage, collected as new ones are written.
keep_checkpoints = 2
# The most bytes the chunk store may take on disk. A checkpoint that would
# exceed it is skipped with a warning (the vessel runs on). Unset, it is a
# quarter of the file system that holds the data directory (about 3.6 GB
# on a 16 GB SD card); 0 means no budget beyond the disk itself.
# disk_budget_bytes = 4000000000

# The node's name, which commands accept wherever they take a node
# (`--on kitchen-pi`, `drain kitchen-pi`, `--node kitchen-pi`): lowercase
# letters, digits and inner "-", at most 24 bytes. Unset, it is this
# machine's hostname, made to fit. Give every node on one machine its own.
# name = "kitchen-pi"

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
    #[error("{path}: placement_margin must be at least 0 and below 1 (0.3 is 30 %), placement_min_gain_ms and placement_max_load_per_cpu at least 0")]
    Placement { path: PathBuf },
    #[error("{path}: name: {source}")]
    Name {
        path: PathBuf,
        source: protocol::control::NodeNameError,
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
            ("traffic_half_life_ms", config.traffic_half_life_ms, 100),
            ("keep_checkpoints", config.keep_checkpoints, 1),
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
        let min_checkpoint_ms = crate::control::vessel_cli::MIN_CHECKPOINT_EVERY.as_millis() as u64;
        if config.checkpoint_every_ms > 0 && config.checkpoint_every_ms < min_checkpoint_ms {
            return Err(ConfigError::TooSmall {
                path: path.to_path_buf(),
                what: "checkpoint_every_ms (or 0, off)",
                min: min_checkpoint_ms,
            });
        }
        if let Some(name) = &config.name {
            protocol::control::check_node_name(name).map_err(|source| ConfigError::Name {
                path: path.to_path_buf(),
                source,
            })?;
        }
        if config.placement_interval_ms > 0 && config.placement_interval_ms < 100 {
            return Err(ConfigError::TooSmall {
                path: path.to_path_buf(),
                what: "placement_interval_ms (or 0, off)",
                min: 100,
            });
        }
        if !(0.0..1.0).contains(&config.placement_margin)
            || config.placement_min_gain_ms.is_nan()
            || config.placement_min_gain_ms < 0.0
            || config.placement_max_load_per_cpu.is_nan()
            || config.placement_max_load_per_cpu < 0.0
        {
            return Err(ConfigError::Placement {
                path: path.to_path_buf(),
            });
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_disk_budget_is_a_quarter_of_the_disk_unless_set_and_0_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        assert_eq!(config.retention(dir.path()).keep_checkpoints, 2);
        assert_eq!(
            config.retention(dir.path()).disk_budget_bytes,
            crate::vessel::retention::default_disk_budget_bytes(dir.path())
        );
        assert!(config.retention(dir.path()).disk_budget_bytes.is_some());
        config.disk_budget_bytes = Some(0);
        assert_eq!(config.retention(dir.path()).disk_budget_bytes, None);
        config.disk_budget_bytes = Some(123);
        assert_eq!(config.retention(dir.path()).disk_budget_bytes, Some(123));
        let parsed: Config =
            toml::from_str("disk_budget_bytes = 5\nkeep_checkpoints = 3\n").unwrap();
        assert_eq!(
            (parsed.disk_budget_bytes, parsed.keep_checkpoints),
            (Some(5), 3)
        );
    }

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
        std::fs::write(&p, "placement_margin = 1.5\n").unwrap();
        let err = Config::load(&p, false).unwrap_err().to_string();
        assert!(err.contains("placement_margin must be"), "{err}");
        std::fs::write(&p, "placement_interval_ms = 5\n").unwrap();
        let err = Config::load(&p, false).unwrap_err().to_string();
        assert!(err.contains("placement_interval_ms"), "{err}");
        std::fs::write(&p, "placement_interval_ms = 0\n").unwrap();
        assert_eq!(Config::load(&p, false).unwrap().placement_interval_ms, 0);
        std::fs::write(&p, "keep_checkpoints = 0\n").unwrap();
        let err = Config::load(&p, false).unwrap_err().to_string();
        assert!(err.contains("keep_checkpoints must be at least 1"), "{err}");
        let fresh = dir.path().join("new.toml");
        assert_eq!(Config::load(&fresh, true).unwrap(), Config::default());
        assert_eq!(
            std::fs::read_to_string(&fresh).unwrap(),
            DEFAULT_CONFIG_TOML
        );
    }
}
