//! Locks that outlive a panicking holder: the one poisoned-mutex policy
//! (docs/architecture.md, "Error policy").
//!
//! A panic while a `std::sync` lock is held poisons it, and `lock().unwrap()`
//! would then turn one bug into a panic in every later user: the REST API,
//! the fence, the watchdog keepalive. pgpilot recovers the guard instead.
//! That is sound because of an invariant every critical section in the crate
//! keeps: it reads the guarded value, or replaces or updates it in one step,
//! and never leaves it half-updated across a call that can panic. A value
//! under a poisoned lock is therefore one some holder meant to store.
//!
//! Use these helpers for every lock outside tests; code that cannot keep that
//! invariant must say so and handle `PoisonError` itself.

use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// `m.lock()`, taking the value over from a holder that panicked.
pub fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `l.read()`, taking the value over from a writer that panicked.
pub fn read<T: ?Sized>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

/// `l.write()`, taking the value over from a writer that panicked.
pub fn write<T: ?Sized>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A holder panics mid-section: the lock is poisoned, and the helpers
    /// still hand out the value it last stored.
    #[test]
    fn a_poisoned_lock_yields_the_last_stored_value() {
        let m = Arc::new(Mutex::new(1));
        let l = Arc::new(RwLock::new(1));
        let (m2, l2) = (m.clone(), l.clone());
        let r = std::thread::spawn(move || {
            let mut g = m2.lock().unwrap();
            let mut w = l2.write().unwrap();
            *g = 2;
            *w = 2;
            panic!("holder panics with both locks held");
        })
        .join();
        assert!(r.is_err());
        assert!(m.is_poisoned() && l.is_poisoned());
        assert_eq!(*lock(&m), 2);
        assert_eq!(*read(&l), 2);
        *write(&l) = 3;
        assert_eq!(*read(&l), 3);
    }
}
