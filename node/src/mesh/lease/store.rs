//! What a voter must keep through a crash (`failover::voter::VoterDurable`),
//! one small file per vessel: `DATA/leases/ID.voter.cbor`, written
//! atomically (a new file, fsynced, renamed, the directory fsynced) before
//! the answer that depends on it leaves. Beside it, the highest certificate
//! the voter was shown (`ID.known.cbor`, written as it learns a higher
//! one): safety does not need it, but a replica that forgot it in a
//! restart could not take over from a host that died meanwhile, and
//! granted an old host's epoch without telling it that it is fenced.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use protocol::vessel::VesselId;
use tracing::warn;

use crate::failover::cert::check_certificate;
use crate::failover::voter::VoterDurable;
use protocol::lease::Certificate;

/// The largest voter file read back: an assignment names at most
/// `protocol::limits::MAX_VOTERS_PER_VESSEL` voters twice (voters and
/// signers), each a PeerId of under 64 bytes; 64 KiB is far above that,
/// and bounds what a damaged disk can make the node allocate.
pub const MAX_VOTER_FILE_BYTES: u64 = 64 * 1024;

/// The most voter files read at start-up: a node votes for at most the
/// vessels of its mesh; ten times the vessels one node may run is far
/// above any fleet, and bounds a directory filled by mistake.
pub const MAX_VOTER_FILES: usize = 10 * protocol::limits::MAX_VESSELS_PER_NODE;

const SUFFIX: &str = ".voter.cbor";

const KNOWN_SUFFIX: &str = ".known.cbor";

fn path_of(dir: &Path, id: VesselId) -> PathBuf {
    dir.join(format!("{}{SUFFIX}", id.to_hex()))
}

/// Writes `durable` for `id`, durably.
pub fn write(dir: &Path, id: VesselId, durable: &VoterDurable) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = path_of(dir, id);
    crate::daemon::datadir::write_atomic(&path, &protocol::cbor::encode(durable))
        .map_err(std::io::Error::other)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `cert`, the highest certificate the voter of `id` knows, durably.
pub fn write_known(dir: &Path, id: VesselId, cert: &Certificate) -> std::io::Result<()> {
    let path = dir.join(format!("{}{KNOWN_SUFFIX}", id.to_hex()));
    crate::vessel::certificate::write_file(&path, cert)
}

/// The files of `dir` named `ID{suffix}`, with their vessel (at most
/// [`MAX_VOTER_FILES`] entries looked at).
fn files_of(dir: &Path, suffix: &str) -> Vec<(VesselId, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .take(MAX_VOTER_FILES)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let id = name.strip_suffix(suffix).and_then(VesselId::from_hex)?;
            Some((id, entry.path()))
        })
        .collect()
}

/// The certificates the voters of this node knew, each checked on its own
/// (its signatures; one that does not verify is skipped with a warning).
pub fn load_known(dir: &Path) -> HashMap<VesselId, Certificate> {
    let mut out = HashMap::new();
    for (id, path) in files_of(dir, KNOWN_SUFFIX) {
        match crate::vessel::certificate::read_file(&path) {
            Some(c) if c.body.vessel == id && check_certificate(&c, None).is_ok() => {
                out.insert(id, c);
            }
            _ => {
                warn!(path = %path.display(), "a voter's known certificate does not hold; skipped")
            }
        }
    }
    out
}

/// Everything the voters of this node made durable. A file that cannot be
/// read is skipped with a warning: its voter then starts knowing nothing,
/// which is safe only because it also signs no takeover during its boot
/// wait and no deploy of a vessel it is shown a certificate of.
pub fn load_all(dir: &Path) -> HashMap<VesselId, VoterDurable> {
    let mut out = HashMap::new();
    for (id, path) in files_of(dir, SUFFIX) {
        match read_one(&path) {
            Ok(d) => {
                out.insert(id, d);
            }
            Err(e) => warn!(path = %path.display(), "cannot read a voter's state: {e}"),
        }
    }
    out
}

fn read_one(path: &Path) -> Result<VoterDurable, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_VOTER_FILE_BYTES {
        return Err(format!("{len} bytes, at most {MAX_VOTER_FILE_BYTES}"));
    }
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    protocol::cbor::decode(&bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::lease::AssignmentKind;

    #[test]
    fn what_a_voter_promised_comes_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = VesselId([3; 8]);
        let body = crate::failover::cert::tests::body(4, 1, AssignmentKind::Takeover, 3);
        let durable = VoterDurable {
            promised: Some(body),
            grants_from_epoch: 4,
            change: None,
            grants_from_before_change: 0,
        };
        write(dir.path(), id, &durable).unwrap();
        std::fs::write(dir.path().join("junk.voter.cbor"), b"x").unwrap();
        std::fs::write(dir.path().join("0303030303030304.voter.cbor"), b"not cbor").unwrap();
        let all = load_all(dir.path());
        assert_eq!(all.len(), 1, "unreadable files are skipped");
        assert_eq!(all[&id], durable);
        // A file written before voter sets could change has no `change`.
        #[derive(serde::Serialize)]
        struct Before {
            promised: Option<protocol::lease::AssignmentBody>,
            grants_from_epoch: u64,
        }
        let old = Before {
            promised: durable.promised.clone(),
            grants_from_epoch: 4,
        };
        std::fs::write(path_of(dir.path(), id), protocol::cbor::encode(&old)).unwrap();
        assert_eq!(load_all(dir.path())[&id], durable, "an older file reads");
        let big = vec![0u8; MAX_VOTER_FILE_BYTES as usize + 1];
        std::fs::write(path_of(dir.path(), id), big).unwrap();
        assert!(
            load_all(dir.path()).is_empty(),
            "an oversized file is not read"
        );
    }
}
