//! A node's data directory: its key, certificate, trust list, config, lock
//! and the address file through which the CLI finds it.
//!
//! Layout:
//! - `node.key` — the node's ed25519 key (its PeerId), mode 0600;
//! - `certificate.cbor` — its member certificate, once enrolled;
//! - `trusted-users` — user keys this node trusts, one hex key a line;
//! - `config.toml` — written with the defaults on first start;
//! - `lock` — `flock`ed while a node runs, and holds its pid;
//! - `node.addrs` — the running node's addresses, each ending in `/p2p/ID`;
//! - `known-peers` — member peers' addresses, dialled at the next start;
//! - `store/` — the chunk store.

use std::io::{Seek, Write};
use std::path::{Path, PathBuf};

use protocol::limits::{MAX_MULTIADDR_BYTES, MAX_TRUSTED_USERS};

/// The data directory's mode: its owner's alone.
pub const DATA_DIR_MODE: u32 = 0o700;

/// Most remembered peer addresses: enough to find the mesh again after a
/// restart, few enough to dial them all at once.
pub const MAX_KNOWN_PEER_ADDRS: usize = 32;
use protocol::membership::{MemberCertificate, PublicKey};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another meshnode is already running with data directory {dir}{pid}; stop it first, or pass --data-dir for a second node"
    )]
    Locked { dir: PathBuf, pid: String },
    #[error("cannot find a home directory for the data directory: set HOME, or pass --data-dir")]
    NoHome,
    #[error("{path}: cannot decode the certificate: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("{path}: line {line}: not a user key (expected 64 hex digits)")]
    TrustFormat { path: PathBuf, line: usize },
    #[error("{path}: more than {limit} trusted user keys")]
    TooManyTrusted { path: PathBuf, limit: usize },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The data directory of the node the package runs as a service
/// (packaging/deb/meshnode.service): commands that name no data directory
/// and find no node of their user's own talk to this one, if they may read
/// it.
pub const SYSTEM_DATA_DIR: &str = "/var/lib/meshnode";

/// The caller's own data directory, unless it has no running node and the
/// service's has one the caller may read (root, on a board where the
/// package runs the node).
fn own_or_service(own: DataDir, service: DataDir) -> DataDir {
    let readable = |d: &DataDir| std::fs::File::open(d.addrs()).is_ok();
    if !readable(&own) && readable(&service) {
        service
    } else {
        own
    }
}

/// The platform's data directory for meshnode: `$XDG_DATA_HOME/meshnode` or
/// `~/.local/share/meshnode` on Linux.
pub fn default_data_dir() -> Result<PathBuf, DataDirError> {
    let dirs = directories::ProjectDirs::from("", "", "meshnode").ok_or(DataDirError::NoHome)?;
    Ok(dirs.data_dir().to_path_buf())
}

#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    /// `explicit`, else the platform default. Creates it (mode 0700), or
    /// tightens a directory that exists to 0700: it holds the node key, the
    /// store and every vessel's files, which are nobody else's to read
    /// (issue 14, item 6).
    pub fn open(explicit: Option<&Path>) -> Result<DataDir, DataDirError> {
        let root = match explicit {
            Some(p) => p.to_path_buf(),
            None => default_data_dir()?,
        };
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DATA_DIR_MODE)
            .create(&root)
            .map_err(io_err(&root))?;
        let mode = std::fs::metadata(&root)
            .map_err(io_err(&root))?
            .permissions()
            .mode()
            & 0o7777;
        if mode != DATA_DIR_MODE {
            std::fs::set_permissions(&root, std::fs::Permissions::from_mode(DATA_DIR_MODE))
                .map_err(io_err(&root))?;
            tracing::warn!(
                "{}: was mode {mode:03o}; tightened to {DATA_DIR_MODE:03o}, so that only its owner can reach the node key, the store and the vessels' files",
                root.display()
            );
        }
        Ok(DataDir { root })
    }

    /// The data directory's path, without creating it (for the CLI).
    pub fn locate(explicit: Option<&Path>) -> Result<DataDir, DataDirError> {
        if let Some(root) = explicit {
            return Ok(DataDir {
                root: root.to_path_buf(),
            });
        }
        let own = DataDir {
            root: default_data_dir()?,
        };
        let system = DataDir {
            root: PathBuf::from(SYSTEM_DATA_DIR),
        };
        Ok(own_or_service(own, system))
    }

    pub fn node_key(&self) -> PathBuf {
        self.root.join("node.key")
    }
    pub fn certificate(&self) -> PathBuf {
        self.root.join("certificate.cbor")
    }
    pub fn trusted_users(&self) -> PathBuf {
        self.root.join("trusted-users")
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock")
    }
    pub fn addrs(&self) -> PathBuf {
        self.root.join("node.addrs")
    }
    pub fn known_peers(&self) -> PathBuf {
        self.root.join("known-peers")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }

    /// Takes the directory's exclusive lock, held until the returned file is
    /// dropped (or the process dies: the kernel releases `flock`s).
    pub fn lock(&self) -> Result<std::fs::File, DataDirError> {
        let path = self.lock_path();
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_err(&path))?;
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                let pid = pid.trim();
                let pid = if pid.is_empty() {
                    String::new()
                } else {
                    format!(" (pid {pid})")
                };
                return Err(DataDirError::Locked {
                    dir: self.root.clone(),
                    pid,
                });
            }
            Err(e) => return Err(io_err(&path)(e.into())),
        }
        file.set_len(0).map_err(io_err(&path))?;
        file.rewind().map_err(io_err(&path))?;
        writeln!(file, "{}", std::process::id()).map_err(io_err(&path))?;
        Ok(file)
    }

    pub fn read_certificate(&self) -> Result<Option<MemberCertificate>, DataDirError> {
        let path = self.certificate();
        match std::fs::read(&path) {
            Ok(bytes) => {
                protocol::cbor::decode(&bytes)
                    .map(Some)
                    .map_err(|e| DataDirError::Certificate {
                        path,
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    pub fn write_certificate(&self, cert: &MemberCertificate) -> Result<(), DataDirError> {
        write_atomic(&self.certificate(), &protocol::cbor::encode(cert))
    }

    pub fn read_trusted(&self) -> Result<Vec<PublicKey>, DataDirError> {
        let path = self.trusted_users();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        let mut keys = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let key = PublicKey::from_hex(line).ok_or(DataDirError::TrustFormat {
                path: path.clone(),
                line: i + 1,
            })?;
            if !keys.contains(&key) {
                keys.push(key);
            }
            if keys.len() > MAX_TRUSTED_USERS {
                return Err(DataDirError::TooManyTrusted {
                    path,
                    limit: MAX_TRUSTED_USERS,
                });
            }
        }
        Ok(keys)
    }

    pub fn write_trusted(&self, keys: &[PublicKey]) -> Result<(), DataDirError> {
        let mut text =
            String::from("# User keys this node trusts (`meshnode trust add|remove|list`).\n");
        for k in keys {
            text.push_str(&k.to_hex());
            text.push('\n');
        }
        write_atomic(&self.trusted_users(), text.as_bytes())
    }

    /// The running node's addresses, one a line, each with `/p2p/ID`.
    pub fn write_addrs(&self, addrs: &[String]) -> Result<(), DataDirError> {
        let mut text = addrs.join("\n");
        text.push('\n');
        write_atomic(&self.addrs(), text.as_bytes())
    }

    /// Member peers' addresses (`/…/p2p/ID`) remembered from the last run;
    /// empty when there are none.
    pub fn read_known_peers(&self) -> Vec<String> {
        std::fs::read_to_string(self.known_peers())
            .map(|t| {
                t.lines()
                    .map(str::trim)
                    .filter(|l| {
                        !l.is_empty() && !l.starts_with('#') && l.len() <= MAX_MULTIADDR_BYTES
                    })
                    .take(MAX_KNOWN_PEER_ADDRS)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn write_known_peers(&self, addrs: &[String]) -> Result<(), DataDirError> {
        let mut text = String::from(
            "# Member peers seen on the last run; dialled at start (rewritten by the node).\n",
        );
        for a in addrs.iter().take(MAX_KNOWN_PEER_ADDRS) {
            text.push_str(a);
            text.push('\n');
        }
        write_atomic(&self.known_peers(), text.as_bytes())
    }

    pub fn read_addrs(&self) -> Result<Vec<String>, DataDirError> {
        let path = self.addrs();
        let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect())
    }
}

/// Writes via a temporary file and a rename, so that a reader never sees
/// half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DataDirError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_command_talks_to_the_service_node_only_when_the_caller_runs_none() {
        let (own, service) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = |t: &tempfile::TempDir| DataDir {
            root: t.path().to_path_buf(),
        };
        assert_eq!(own_or_service(dir(&own), dir(&service)).root, own.path());
        std::fs::write(dir(&service).addrs(), "/ip4/127.0.0.1/tcp/1\n").unwrap();
        assert_eq!(
            own_or_service(dir(&own), dir(&service)).root,
            service.path()
        );
        std::fs::write(dir(&own).addrs(), "/ip4/127.0.0.1/tcp/2\n").unwrap();
        assert_eq!(own_or_service(dir(&own), dir(&service)).root, own.path());
    }
    use super::*;

    #[test]
    fn second_lock_is_refused_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(Some(dir.path())).unwrap();
        let held = d.lock().unwrap();
        let err = d.lock().unwrap_err().to_string();
        assert!(
            err.contains("another meshnode is already running with data directory"),
            "{err}"
        );
        assert!(
            err.contains(&format!("(pid {})", std::process::id())),
            "{err}"
        );
        drop(held);
        d.lock().unwrap();
    }

    #[test]
    fn trust_list_round_trips_and_rejects_junk() {
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::open(Some(dir.path())).unwrap();
        assert!(d.read_trusted().unwrap().is_empty());
        let keys = vec![PublicKey([1; 32]), PublicKey([2; 32])];
        d.write_trusted(&keys).unwrap();
        assert_eq!(d.read_trusted().unwrap(), keys);
        std::fs::write(d.trusted_users(), "zz\n").unwrap();
        assert!(matches!(
            d.read_trusted(),
            Err(DataDirError::TrustFormat { line: 1, .. })
        ));
    }
}
