//! Locking shared state: a poisoned mutex (a panicked holder) still yields its data, because
//! every value kept behind our mutexes stays valid between statements.

use std::sync::{Mutex, MutexGuard};

/// Lock `m`, recovering the data from a poisoned lock.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
