//! The lease certificate of a replicated vessel (issue 15), kept beside its
//! record: the one of the epoch this node owns it at, written (fsynced)
//! before the vessel runs under it. A vessel with one runs only while its
//! lease holds (`lease_gate`); the node's lease driver (`mesh::lease`)
//! holds it.

use std::path::Path;

use protocol::lease::Certificate;
use tracing::warn;

/// Its name in the vessel's directory.
pub const CERTIFICATE_FILE: &str = "certificate.cbor";

/// The largest certificate file read back: a certificate names at most
/// `protocol::limits::MAX_VOTERS_PER_VESSEL` voters twice and carries as
/// many signatures, a few KiB; 64 KiB bounds what a damaged disk can make
/// the node allocate.
pub const MAX_CERTIFICATE_FILE_BYTES: u64 = 64 * 1024;

/// Reads the certificate kept in `vessel_dir`, if there is one that reads.
pub fn read(vessel_dir: &Path) -> Option<Certificate> {
    read_file(&vessel_dir.join(CERTIFICATE_FILE))
}

/// Writes it, durably.
pub fn write(vessel_dir: &Path, cert: &Certificate) -> std::io::Result<()> {
    write_file(&vessel_dir.join(CERTIFICATE_FILE), cert)
}

/// Reads a certificate file (this one, or a voter's known certificate,
/// `mesh::lease::store`), if it reads and is at most
/// [`MAX_CERTIFICATE_FILE_BYTES`].
pub fn read_file(path: &Path) -> Option<Certificate> {
    let len = std::fs::metadata(path).ok()?.len();
    if len > MAX_CERTIFICATE_FILE_BYTES {
        warn!(path = %path.display(), "certificate file of {len} bytes ignored");
        return None;
    }
    protocol::cbor::decode(&std::fs::read(path).ok()?).ok()
}

/// Writes a certificate file atomically and durably (a new file, fsynced,
/// renamed, its directory fsynced).
pub fn write_file(path: &Path, cert: &Certificate) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    crate::daemon::datadir::write_atomic(path, &protocol::cbor::encode(cert))
        .map_err(std::io::Error::other)?;
    std::fs::File::open(dir)?.sync_all()
}
