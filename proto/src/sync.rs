//! Locking shared state that a panicking thread may have left poisoned.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, using the data as it is if a thread panicked while holding it. The
/// state behind these locks is plain data (maps, counters, caches) that a panic cannot
/// leave more inconsistent than stopping the node would, so serving on is the better
/// failure.
pub fn lock_or_recover<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
