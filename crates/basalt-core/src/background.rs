//! Work started once per key on a thread of its own — loading an imported model's
//! engine, copying a model's file to this node — that callers poll, answering
//! `ModelNotReady` meanwhile. A call that finds the work under way says so; a failure
//! is reported to one call and then forgotten, so the next call starts it again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::CoreError;

/// Where a key's work is, as a call finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Under way.
    Running,
    /// It failed (the reason); reported now, forgotten after.
    Failed(String),
}

/// Keys whose work is under way (`None`) or failed (the reason).
#[derive(Default)]
pub(crate) struct BackgroundWork {
    state: Arc<Mutex<HashMap<String, Option<String>>>>,
}

fn lock(
    state: &Mutex<HashMap<String, Option<String>>>,
) -> MutexGuard<'_, HashMap<String, Option<String>>> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl BackgroundWork {
    /// `key`'s work when it is under way or has failed (a failure is reported once).
    pub(crate) fn pending(&self, key: &str) -> Option<Progress> {
        let mut state = lock(&self.state);
        match state.get(key)? {
            None => Some(Progress::Running),
            Some(reason) => {
                let reason = reason.clone();
                state.remove(key);
                Some(Progress::Failed(reason))
            }
        }
    }

    /// Starts `work` for `key` on a thread named `thread`, unless it is under way or has
    /// just failed (then that is the answer, as [`Self::pending`] gives it).
    pub(crate) fn start(
        &self,
        key: &str,
        thread: &str,
        work: impl FnOnce() -> Result<(), String> + Send + 'static,
    ) -> Result<Option<Progress>, CoreError> {
        let mut state = lock(&self.state);
        if state.contains_key(key) {
            drop(state);
            return Ok(self.pending(key));
        }
        state.insert(key.to_owned(), None);
        drop(state);
        let (shared, owned) = (Arc::clone(&self.state), key.to_owned());
        let started = std::thread::Builder::new()
            .name(thread.to_owned())
            .spawn(move || {
                let outcome = work();
                let mut state = lock(&shared);
                match outcome {
                    Ok(()) => state.remove(&owned),
                    Err(reason) => state.insert(owned, Some(reason)),
                };
            });
        if let Err(e) = started {
            lock(&self.state).remove(key);
            return Err(CoreError::Internal(format!("cannot start a thread: {e}")));
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(
        work: &BackgroundWork,
        key: &str,
        done: impl Fn(&Option<Progress>) -> bool,
    ) -> Option<Progress> {
        for _ in 0..500 {
            let found = work.pending(key);
            if done(&found) {
                return found;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the background work never finished");
    }

    #[test]
    fn work_runs_once_and_a_failure_is_reported_once() {
        let work = BackgroundWork::default();
        let (go, wait) = std::sync::mpsc::channel::<()>();
        assert_eq!(
            work.start("a", "test", move || {
                let _ = wait.recv();
                Err("no such file".into())
            })
            .expect("started"),
            None
        );
        // Under way: a second start does not run the work again.
        assert_eq!(
            work.start("a", "test", || panic!("started twice"))
                .expect("answer"),
            Some(Progress::Running)
        );
        go.send(()).expect("release");
        let failed = wait_until(&work, "a", |p| p != &Some(Progress::Running));
        assert_eq!(failed, Some(Progress::Failed("no such file".into())));
        assert_eq!(work.pending("a"), None, "a failure is reported once");
        // Then it can start again, and a success leaves nothing behind.
        assert_eq!(work.start("a", "test", || Ok(())).expect("started"), None);
        assert_eq!(wait_until(&work, "a", Option::is_none), None);
    }
}
