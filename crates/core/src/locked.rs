//! Taking a lock whatever happened to its last holder.
//!
//! Every binding catches panics at its boundary (no panic may cross into Prosody or ejabberd), so
//! the process lives on after one; a `Mutex` held by the panicking thread is then poisoned. What
//! these locks guard (a connection, a table of waiting tasks, a flag) is whole between
//! statements, so the next caller carries on with it: refusing would turn one caught panic into
//! a server whose every later call fails.

use std::sync::{Mutex, MutexGuard};

/// The guard of `mutex`, also after a holder panicked (see the module doc).
pub fn locked<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_holder_leaves_the_value_usable() {
        let m = std::sync::Arc::new(Mutex::new(1));
        let held = m.clone();
        let _ = std::thread::spawn(move || {
            let mut g = held.lock().unwrap();
            *g = 2;
            panic!("holder fails");
        })
        .join();
        assert!(m.is_poisoned());
        *locked(&m) += 1;
        assert_eq!(*locked(&m), 3);
    }
}
