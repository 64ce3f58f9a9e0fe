//! Keys on disk: the node key (a node's libp2p identity, in its data
//! directory) and the user key (a person's, in their config directory).
//!
//! Both are ed25519 secret keys stored as 64 hex digits and a newline in a
//! file of mode 0600, created with `O_EXCL` so that two processes never
//! write different keys to the same place.
//!
//! A key file that others can read is refused, as ssh refuses such a
//! private key (issue 14, item 6): whoever read it can act as the node or
//! the user, and a key that works anyway teaches nobody to fix the mode.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use libp2p::identity::Keypair;
use libp2p::PeerId;
use protocol::membership::PublicKey;

/// Why a key could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a meshnode key (expected 64 hex digits)")]
    Format { path: PathBuf },
    #[error("cannot find a home directory for the user key: set HOME, or pass --user-key")]
    NoHome,
    #[error("cannot draw random bytes for a new key: {0}")]
    Random(String),
    #[error(
        "{path}: the key is readable by others (mode {mode:03o}), so it is refused, as ssh refuses such keys: anyone who read it can act as its owner. Fix it with `chmod 600 {path}`, and make a new key if others may have copied it"
    )]
    ReadableByOthers { path: PathBuf, mode: u32 },
}

/// The permission bits a key file must not have: any access by its group
/// or by others.
const KEY_MODE_FORBIDDEN: u32 = 0o077;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A node's identity: one ed25519 key, seen both as a libp2p keypair (its
/// PeerId) and as a signing key (it signs certificates for invited devices).
#[derive(Clone)]
pub struct NodeIdentity {
    pub signing: SigningKey,
    pub keypair: Keypair,
    pub peer_id: PeerId,
}

impl NodeIdentity {
    pub fn from_signing_key(signing: SigningKey) -> NodeIdentity {
        let mut secret = signing.to_bytes();
        let keypair = Keypair::ed25519_from_bytes(&mut secret)
            .expect("32 bytes are a valid ed25519 secret key");
        let peer_id = keypair.public().to_peer_id();
        NodeIdentity {
            signing,
            keypair,
            peer_id,
        }
    }

    /// A fresh key that is never stored (the CLI's short-lived peer).
    pub fn ephemeral() -> Result<NodeIdentity, IdentityError> {
        Ok(NodeIdentity::from_signing_key(random_signing_key()?))
    }

    pub fn public_key(&self) -> PublicKey {
        PublicKey::of(&self.signing)
    }
}

/// The ed25519 public key inside a PeerId, when the PeerId is an ed25519
/// identity (meshnode nodes always are).
pub fn peer_public_key(peer: &PeerId) -> Option<PublicKey> {
    let mh: &libp2p::multihash::Multihash<64> = peer.as_ref();
    if mh.code() != 0 {
        return None; // not an identity multihash: the key is not inside
    }
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    Some(PublicKey(pk.try_into_ed25519().ok()?.to_bytes()))
}

/// The PeerId of an ed25519 node key.
pub fn peer_id_of(key: &PublicKey) -> Option<PeerId> {
    let pk = libp2p::identity::ed25519::PublicKey::try_from_bytes(&key.0).ok()?;
    Some(libp2p::identity::PublicKey::from(pk).to_peer_id())
}

fn random_signing_key() -> Result<SigningKey, IdentityError> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Reads a key file, or `None` when it does not exist. Refuses one that
/// its group or others may access ([`IdentityError::ReadableByOthers`]).
pub fn read_key(path: &Path) -> Result<Option<SigningKey>, IdentityError> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path)(e)),
    };
    // The mode of the file opened, not of whatever the path names later.
    let mode = file.metadata().map_err(io_err(path))?.permissions().mode() & 0o7777;
    if mode & KEY_MODE_FORBIDDEN != 0 {
        return Err(IdentityError::ReadableByOthers {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(io_err(path))?;
    let pk = PublicKey::from_hex(text.trim()).ok_or_else(|| IdentityError::Format {
        path: path.to_path_buf(),
    })?;
    Ok(Some(SigningKey::from_bytes(&pk.0)))
}

/// Reads the key at `path`, creating it (and its directory, mode 0700) when
/// missing. Returns whether it was created.
pub fn read_or_create_key(path: &Path) -> Result<(SigningKey, bool), IdentityError> {
    if let Some(k) = read_key(path)? {
        return Ok((k, false));
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode_0700()
            .create(dir)
            .map_err(io_err(dir))?;
    }
    let key = random_signing_key()?;
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        // Another process created it first: use that one.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return read_key(path)?
                .map(|k| (k, false))
                .ok_or_else(|| IdentityError::Format {
                    path: path.to_path_buf(),
                })
        }
        Err(e) => return Err(io_err(path)(e)),
    };
    let hex: String = key.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    file.write_all(format!("{hex}\n").as_bytes())
        .map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))?;
    Ok((key, true))
}

trait DirBuilderExt {
    fn mode_0700(&mut self) -> &mut Self;
}

impl DirBuilderExt for std::fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        use std::os::unix::fs::DirBuilderExt as _;
        self.mode(0o700)
    }
}

/// Where the user key lives: `--user-key`, else `$MESHNODE_USER_KEY`, else
/// the platform's config directory (`$XDG_CONFIG_HOME/meshnode/user.key`,
/// `~/.config/meshnode/user.key` on Linux).
pub fn user_key_path(explicit: Option<&Path>) -> Result<PathBuf, IdentityError> {
    if let Some(p) = explicit {
        return Ok(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("MESHNODE_USER_KEY") {
        return Ok(PathBuf::from(p));
    }
    let dirs = directories::ProjectDirs::from("", "", "meshnode").ok_or(IdentityError::NoHome)?;
    Ok(dirs.config_dir().join("user.key"))
}

/// The user key a command signs with: [`user_key_path`], except that where
/// the caller named none and has no key of their own, the key of the node
/// installed as a service (`/var/lib/meshnode/user.key`, which it enrolled
/// with) is used if the caller can read it: `sudo meshnode stop X` on a
/// board where the package runs the node.
pub fn command_user_key_path(explicit: Option<&Path>) -> Result<PathBuf, IdentityError> {
    let path = user_key_path(explicit)?;
    let named = explicit.is_some() || std::env::var_os("MESHNODE_USER_KEY").is_some();
    if named || path.exists() {
        return Ok(path);
    }
    let system = Path::new(crate::daemon::datadir::SYSTEM_DATA_DIR).join("user.key");
    Ok(match std::fs::File::open(&system) {
        Ok(_) => system,
        Err(_) => path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_is_created_once_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/user.key");
        let (a, created) = read_or_create_key(&path).unwrap();
        assert!(created);
        let (b, created) = read_or_create_key(&path).unwrap();
        assert!(!created);
        assert_eq!(a.to_bytes(), b.to_bytes());
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        std::fs::write(&path, "nonsense").unwrap();
        assert!(matches!(read_key(&path), Err(IdentityError::Format { .. })));
    }

    /// A key its group or others can read is refused, naming the file and
    /// the fix; fixed, it loads.
    #[test]
    fn a_key_readable_by_others_is_refused_until_its_mode_is_fixed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.key");
        let (key, _) = read_or_create_key(&path).unwrap();
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = read_key(&path).unwrap_err();
            assert!(matches!(e, IdentityError::ReadableByOthers { .. }), "{e}");
            let text = e.to_string();
            assert!(text.contains(&path.display().to_string()), "{text}");
            assert!(
                text.contains(&format!("chmod 600 {}", path.display())),
                "{text}"
            );
            assert!(
                read_or_create_key(&path).is_err(),
                "replaced instead of refused"
            );
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_key(&path).unwrap().unwrap().to_bytes(), key.to_bytes());
    }

    #[test]
    fn peer_id_and_public_key_agree() {
        let id = NodeIdentity::from_signing_key(SigningKey::from_bytes(&[4; 32]));
        assert_eq!(peer_public_key(&id.peer_id), Some(id.public_key()));
        assert_eq!(peer_id_of(&id.public_key()), Some(id.peer_id));
    }
}
