//! Small helpers for the node's shared state.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, also when a thread panicked while holding it (the lock is
/// then poisoned): one panicked task must not make every later user of the
/// lock panic too.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
