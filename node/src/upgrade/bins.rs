//! The binary directory, `bin/` under the data directory: installed
//! release binaries (`meshnode-VERSION-HASH`), and two links,
//! `bin/current` (what the node runs: the systemd unit's `ExecStart`, and
//! what a restart execs) and `bin/previous` (what a rollback puts back).
//! The package points `current` at `/usr/bin/meshnode`; a node started
//! another way gets the links at its first upgrade, with `previous` at its
//! own binary.
//!
//! A link changes by renaming a new link over it, so a crash leaves either
//! the old link or the new one, never none.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::refusal::{Refusal, RefusalCode};
use protocol::release::ReleaseBinary;

use super::releases::refuse;
use crate::store::ChunkStore;

/// How long `BINARY --version` may take before the binary is judged not to
/// run (a board under load starts a 20 MiB binary in well under a second;
/// under qemu, in a few).
pub const TRY_RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Most installed binaries kept in `bin/` beside the two the links name
/// (older ones are removed after a switch): each is up to 64 MiB.
pub const MAX_SPARE_BINARIES: usize = 1;

pub struct BinDir {
    dir: PathBuf,
}

impl BinDir {
    pub fn new(data_root: &Path) -> BinDir {
        BinDir {
            dir: data_root.join("bin"),
        }
    }

    pub fn current(&self) -> PathBuf {
        self.dir.join("current")
    }

    pub fn previous(&self) -> PathBuf {
        self.dir.join("previous")
    }

    /// Writes `binary` from the store's chunks, checks its size and hash,
    /// and makes it executable: `bin/meshnode-VERSION-HASH`.
    pub fn install(
        &self,
        store: &ChunkStore,
        version: &str,
        binary: &ReleaseBinary,
    ) -> Result<PathBuf, Refusal> {
        std::fs::create_dir_all(&self.dir).map_err(|e| internal(&self.dir, e))?;
        let hash = binary.hash.to_string();
        let path = self.dir.join(format!("meshnode-{version}-{}", &hash[..16]));
        let tmp = path.with_extension("partial");
        let mut file = std::fs::File::create(&tmp).map_err(|e| internal(&tmp, e))?;
        let mut hasher = blake3::Hasher::new();
        let mut size = 0u64;
        for h in &binary.chunks {
            let bytes = store
                .get_chunk(h)
                .map_err(|e| refuse(RefusalCode::MissingChunks, e.to_string()))?;
            hasher.update(&bytes);
            size += bytes.len() as u64;
            file.write_all(&bytes).map_err(|e| internal(&tmp, e))?;
        }
        let found = protocol::snapshot::Hash(*hasher.finalize().as_bytes());
        if size != binary.size_bytes || found != binary.hash {
            let _ = std::fs::remove_file(&tmp);
            return Err(refuse(
                RefusalCode::BadRelease,
                format!(
                    "the {} binary assembled to {size} bytes hashing to {found}, the release says {} bytes hashing to {}",
                    binary.cpu, binary.size_bytes, binary.hash
                ),
            ));
        }
        file.set_permissions(std::fs::Permissions::from_mode(0o755))
            .and_then(|()| file.sync_all())
            .map_err(|e| internal(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| internal(&path, e))?;
        sync_dir(&self.dir);
        Ok(path)
    }

    /// Makes `path` current and what was current previous; returns the
    /// previous target. With no `current` link yet, the previous binary is
    /// the one this process runs.
    pub fn switch_to(&self, path: &Path) -> Result<PathBuf, Refusal> {
        let previous = match std::fs::read_link(self.current()) {
            Ok(target) => self.dir.join(target),
            Err(_) => std::env::current_exe().map_err(|e| internal(Path::new("current_exe"), e))?,
        };
        self.set_link("previous", &previous)?;
        self.set_link("current", path)?;
        self.prune();
        Ok(previous)
    }

    /// Makes the previous binary current again; returns it.
    pub fn roll_back(&self) -> Result<PathBuf, Refusal> {
        let previous = std::fs::read_link(self.previous()).map_err(|e| {
            refuse(
                RefusalCode::UnknownRelease,
                format!(
                    "no previous binary to roll back to ({}: {e})",
                    self.previous().display()
                ),
            )
        })?;
        let previous = self.dir.join(previous);
        if !previous.exists() {
            return Err(refuse(
                RefusalCode::UnknownRelease,
                format!("the previous binary {} is gone", previous.display()),
            ));
        }
        let current = std::fs::read_link(self.current())
            .ok()
            .map(|t| self.dir.join(t));
        self.set_link("current", &previous)?;
        if let Some(c) = current {
            self.set_link("previous", &c)?;
        }
        Ok(previous)
    }

    /// Points link `name` at `target` by renaming a new link over it.
    fn set_link(&self, name: &str, target: &Path) -> Result<(), Refusal> {
        let link = self.dir.join(name);
        let tmp = self.dir.join(format!(".{name}.new"));
        let _ = std::fs::remove_file(&tmp);
        // A binary in bin/ is linked by its name, so the directory can move.
        let shown = match target.parent() {
            Some(p) if p == self.dir => PathBuf::from(target.file_name().expect("a file")),
            _ => target.to_path_buf(),
        };
        std::os::unix::fs::symlink(&shown, &tmp).map_err(|e| internal(&tmp, e))?;
        std::fs::rename(&tmp, &link).map_err(|e| internal(&link, e))?;
        sync_dir(&self.dir);
        Ok(())
    }

    /// Removes installed binaries that neither link names, beyond the
    /// newest [`MAX_SPARE_BINARIES`].
    fn prune(&self) {
        let named: Vec<PathBuf> = [self.current(), self.previous()]
            .iter()
            .filter_map(|l| std::fs::read_link(l).ok().map(|t| self.dir.join(t)))
            .collect();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut spare: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("meshnode-"))
            })
            .filter(|p| !named.contains(p))
            .filter_map(|p| Some((p.metadata().ok()?.modified().ok()?, p)))
            .collect();
        spare.sort();
        let excess = spare.len().saturating_sub(MAX_SPARE_BINARIES);
        for (_, p) in spare.into_iter().take(excess) {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs `path --version` and checks that it prints `meshnode VERSION`: a
/// binary that does not start (another CPU, a missing library, a crash)
/// is refused before the node restarts into it.
pub fn try_run(path: &Path, version: &str) -> Result<(), Refusal> {
    let mut child = std::process::Command::new(path)
        .arg("--version")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| {
            refuse(
                RefusalCode::BadRelease,
                format!("{}: does not start: {e}", path.display()),
            )
        })?;
    let deadline = std::time::Instant::now() + TRY_RUN_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(refuse(
                    RefusalCode::BadRelease,
                    format!(
                        "{} --version did not finish within {TRY_RUN_TIMEOUT:?}",
                        path.display()
                    ),
                ));
            }
        }
    }
    let out = child.wait_with_output().map_err(|e| internal(path, e))?;
    let printed = String::from_utf8_lossy(&out.stdout);
    let expected = format!("meshnode {version}");
    if !out.status.success() || printed.trim() != expected {
        return Err(refuse(
            RefusalCode::BadRelease,
            format!(
                "{} --version printed `{}` ({}), not `{expected}`",
                path.display(),
                printed.trim().chars().take(80).collect::<String>(),
                out.status
            ),
        ));
    }
    Ok(())
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

fn internal(path: &Path, e: std::io::Error) -> Refusal {
    refuse(RefusalCode::Internal, format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_keeps_the_previous_binary_and_a_rollback_puts_it_back() {
        let dir = tempfile::tempdir().unwrap();
        let bins = BinDir::new(dir.path());
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        let old = dir.path().join("bin/meshnode-0.1.0-aaaa");
        let new = dir.path().join("bin/meshnode-0.1.1-bbbb");
        std::fs::write(&old, b"old").unwrap();
        std::fs::write(&new, b"new").unwrap();
        bins.set_link("current", &old).unwrap();
        assert_eq!(bins.switch_to(&new).unwrap(), old);
        assert_eq!(std::fs::read(bins.current()).unwrap(), b"new");
        assert_eq!(std::fs::read(bins.previous()).unwrap(), b"old");
        assert_eq!(bins.roll_back().unwrap(), old);
        assert_eq!(std::fs::read(bins.current()).unwrap(), b"old");
        assert_eq!(std::fs::read(bins.previous()).unwrap(), b"new");
    }

    #[test]
    fn a_binary_that_does_not_print_the_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake");
        std::fs::write(&script, "#!/bin/sh\necho meshnode 9.9.9\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        try_run(&script, "9.9.9").unwrap();
        let e = try_run(&script, "1.0.0").unwrap_err();
        assert_eq!(e.code, RefusalCode::BadRelease);
        assert!(e.detail.contains("not `meshnode 1.0.0`"), "{e}");
    }
}
