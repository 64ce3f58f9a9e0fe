//! Restarting into another binary: a command asks for it, the node's loop
//! ends as on SIGTERM (writing its vessels down), and `meshnode start`
//! then execs the binary with the same arguments. The process keeps its
//! PID, so a systemd service (`Type=notify`) sees the same main process,
//! which reports ready again.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use tokio::sync::Notify;

use crate::sync::lock;

fn requested_binary() -> &'static Mutex<Option<PathBuf>> {
    static REQUESTED: OnceLock<Mutex<Option<PathBuf>>> = OnceLock::new();
    REQUESTED.get_or_init(|| Mutex::new(None))
}

fn notify() -> &'static Notify {
    static NOTIFY: OnceLock<Notify> = OnceLock::new();
    NOTIFY.get_or_init(Notify::new)
}

/// Asks the node to stop and exec `binary`.
pub fn request(binary: PathBuf) {
    *lock(requested_binary()) = Some(binary);
    // A permit is kept when nobody waits yet.
    notify().notify_one();
}

/// Whether a restart was asked for (a second upgrade command is refused).
pub fn is_requested() -> bool {
    lock(requested_binary()).is_some()
}

/// Completes when a restart is asked for: part of the node's shutdown
/// future.
pub async fn requested() {
    notify().notified().await
}

/// The binary a restart asked for, once the node has stopped.
pub fn take() -> Option<PathBuf> {
    lock(requested_binary()).take()
}

/// Replaces this process with `binary`, given this process's arguments.
/// Returns only on failure.
pub fn exec(binary: &Path) -> std::io::Error {
    std::process::Command::new(binary)
        .args(std::env::args_os().skip(1))
        .exec()
}
