//! The crash journal of a batch job's input file: which records were in flight when
//! the server last stopped.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path as FsPath, PathBuf};

/// Which records were in flight when the server last stopped, so that a record that
/// crashes the process is failed instead of crashing it at every start.
///
/// Before a record runs its ID is appended to `<staging>/<file>.inflight`. At the
/// next start, every ID there without an output line was in flight when the process
/// died: its count in `<file>.crashes` goes up by one. A record with a count runs
/// alone; at [`Self::GIVE_UP_AFTER`] it is written as failed without running. (A
/// record in flight during two `kill -9`s — the second while it ran alone — is
/// failed too: the price of never looping.)
pub(super) struct CrashJournal {
    inflight: std::fs::File,
    inflight_path: PathBuf,
    crashes_path: PathBuf,
    counts: std::collections::HashMap<String, u32>,
}

impl CrashJournal {
    pub(super) const GIVE_UP_AFTER: u32 = 2;

    pub(super) fn open(
        dir: &FsPath,
        file_index: usize,
        done: &HashSet<String>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let inflight_path = dir.join(format!("{file_index:02}.inflight"));
        let crashes_path = dir.join(format!("{file_index:02}.crashes"));
        let mut counts: std::collections::HashMap<String, u32> = std::fs::read(&crashes_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let interrupted: HashSet<String> = std::fs::read_to_string(&inflight_path)
            .unwrap_or_default()
            .lines()
            .filter(|id| !id.is_empty() && !done.contains(*id))
            .map(str::to_string)
            .collect();
        if !interrupted.is_empty() {
            for id in interrupted {
                *counts.entry(id).or_insert(0) += 1;
            }
            std::fs::write(&crashes_path, serde_json::to_vec(&counts)?)?;
            tracing::warn!(
                file = %crashes_path.display(),
                "batch records were in flight when the server stopped; they run alone now"
            );
        }
        let inflight = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&inflight_path)?;
        Ok(Self {
            inflight,
            inflight_path,
            crashes_path,
            counts,
        })
    }

    pub(super) fn crashes(&self, record_id: &str) -> u32 {
        self.counts.get(record_id).copied().unwrap_or(0)
    }

    /// Notes a record as in flight (on disk before it runs).
    pub(super) fn started(&mut self, record_id: &str) -> std::io::Result<()> {
        self.inflight
            .write_all(format!("{record_id}\n").as_bytes())?;
        self.inflight.sync_data()
    }

    /// The file is done: nothing is in flight.
    pub(super) fn finished(self) -> std::io::Result<()> {
        drop(self.inflight);
        let _ = std::fs::remove_file(&self.crashes_path);
        std::fs::remove_file(&self.inflight_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_in_flight_at_two_deaths_is_given_up_and_others_are_not() {
        let dir = tempfile::tempdir().expect("dir");
        let none = HashSet::new();
        // First run: a and b in flight when the process dies (no `finished`).
        let mut journal = CrashJournal::open(dir.path(), 0, &none).expect("open");
        journal.started("a").expect("note");
        journal.started("b").expect("note");
        drop(journal);
        // Restart: a's output line was written before the death, b's was not.
        let done: HashSet<String> = ["a".to_string()].into();
        let mut journal = CrashJournal::open(dir.path(), 0, &done).expect("reopen");
        assert_eq!(journal.crashes("a"), 0);
        assert_eq!(journal.crashes("b"), 1, "b was in flight at the death");
        // b runs alone and the process dies again.
        journal.started("b").expect("note");
        drop(journal);
        let journal = CrashJournal::open(dir.path(), 0, &done).expect("reopen");
        assert_eq!(journal.crashes("b"), CrashJournal::GIVE_UP_AFTER);
        // A finished file leaves nothing behind for the next job on it.
        journal.finished().expect("finish");
        let journal = CrashJournal::open(dir.path(), 0, &none).expect("reopen");
        assert_eq!(journal.crashes("b"), 0);
    }
}
