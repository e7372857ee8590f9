//! One CPU budget for the process's engines, sized by what other processes leave.
//!
//! llama.cpp's worker threads meet at a barrier after every operation (hundreds per
//! token) and spin there. When one of them is descheduled for a neighbour, the others
//! spin until it runs again, so decode collapses instead of slowing down in
//! proportion. Measured with llama-bench on a 2-core machine beside one busy-loop
//! process: 2 threads 59 tok/s, 2 threads with libgomp's spinning off 90 tok/s,
//! **1 thread 164 tok/s** (solo: 2 threads 172, 1 thread 149). The thread count, not
//! the spinning, is what matters, and llama.cpp lets a context change it between
//! decode calls.
//!
//! So before each decode step a chat engine asks [`CpuBudget::chat_threads`]:
//! - the cores this process may use (`available_parallelism`),
//! - less the cores other processes keep busy (from `/proc/stat` less this
//!   process's own time in `/proc/self/stat`, read at most every 250 ms, with a dead
//!   band so the count does not flap),
//! - shared with the embedding engine when both have work: chat takes half (rounded
//!   up), embeddings the rest, at least one each; busy chat engines split chat's part.
//!
//! Embedding workers take a [`CpuBudget::embedding_pass`] permit for each forward
//! pass, which admits at most the embeddings' part at once, so ingesting documents
//! no longer starves chat (and chat no longer starves ingestion). Work with a fixed
//! thread pool of its own (a training job) declares its threads with
//! [`CpuBudget::background_work`]; the engines plan around them.
//!
//! Other processes' load is only read where this process may use every CPU of the
//! machine (`/proc/stat` counts the whole machine); under a narrower CPU set or a
//! cgroup quota, only the sharing between Basalt's own engines applies.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often other processes' load is read.
const LOAD_INTERVAL: Duration = Duration::from_millis(250);

/// The process-wide budget.
pub fn budget() -> &'static CpuBudget {
    static BUDGET: OnceLock<CpuBudget> = OnceLock::new();
    BUDGET
        .get_or_init(|| CpuBudget::new(std::thread::available_parallelism().map_or(2, usize::from)))
}

/// What the budget sees now (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSnapshot {
    /// Cores this process may use.
    pub cores: usize,
    /// Whether thread counts follow the load (`[engine] adapt_threads`).
    pub adaptive: bool,
    /// Whether other processes' load can be read here (every CPU of the machine is
    /// this process's to use).
    pub reads_neighbours: bool,
    /// Cores other processes keep busy (smoothed).
    pub neighbour_load: f64,
    /// Cores held back for them.
    pub reserved_for_neighbours: usize,
    /// Threads of background work with a pool of its own (training jobs).
    pub background_threads: usize,
    /// Chat engines with work.
    pub chat_engines_busy: usize,
    /// Embedding passes running.
    pub embedding_passes_running: usize,
    /// Embedding passes waiting for a core.
    pub embedding_passes_waiting: usize,
}

/// Cores shared by the process's chat and embedding engines.
#[derive(Debug)]
pub struct CpuBudget {
    cores: usize,
    adaptive: AtomicBool,
    chat_busy: AtomicUsize,
    background: AtomicUsize,
    gate: Mutex<EmbeddingGate>,
    gate_changed: Condvar,
    load: Mutex<LoadMeter>,
    reads_neighbours: bool,
    /// Cores held back for other processes (kept in step with `load`).
    reserved: AtomicUsize,
    /// Smoothed neighbour load in thousandths of a core.
    neighbour_millicores: AtomicU64,
}

#[derive(Debug, Default)]
struct EmbeddingGate {
    running: usize,
    waiting: usize,
}

impl CpuBudget {
    fn new(cores: usize) -> Self {
        let meter = LoadMeter::new(cores.max(1));
        Self {
            reads_neighbours: meter.usable,
            cores: cores.max(1),
            adaptive: AtomicBool::new(true),
            chat_busy: AtomicUsize::new(0),
            background: AtomicUsize::new(0),
            gate: Mutex::new(EmbeddingGate::default()),
            gate_changed: Condvar::new(),
            load: Mutex::new(meter),
            reserved: AtomicUsize::new(0),
            neighbour_millicores: AtomicU64::new(0),
        }
    }

    /// Turns following the load on or off (off: every engine uses its configured
    /// threads whatever else runs, as before this budget existed).
    pub fn set_adaptive(&self, adaptive: bool) {
        self.adaptive.store(adaptive, Ordering::Relaxed);
        self.gate_changed.notify_all();
    }

    pub fn is_adaptive(&self) -> bool {
        self.adaptive.load(Ordering::Relaxed)
    }

    /// Cores left by other processes and by background work (at least one).
    fn available(&self) -> usize {
        self.refresh_load();
        self.cores
            .saturating_sub(self.reserved.load(Ordering::Relaxed))
            .saturating_sub(self.background.load(Ordering::Relaxed))
            .max(1)
    }

    fn refresh_load(&self) {
        // Whoever finds the reading stale takes it; the others use the last one.
        let Ok(mut meter) = self.load.try_lock() else {
            return;
        };
        if let Some(neighbours) = meter.sample(Instant::now()) {
            let reserved = next_reserved(self.reserved.load(Ordering::Relaxed), neighbours)
                .min(self.cores.saturating_sub(1));
            self.reserved.store(reserved, Ordering::Relaxed);
            self.neighbour_millicores
                .store((neighbours * 1000.0).round() as u64, Ordering::Relaxed);
        }
    }

    fn embedding_wants(&self) -> bool {
        self.gate
            .lock()
            .map(|g| g.running + g.waiting > 0)
            .unwrap_or(false)
    }

    /// Threads a chat engine configured for `configured` threads should decode its
    /// next step with.
    pub fn chat_threads(&self, configured: usize) -> usize {
        let configured = configured.max(1);
        if !self.is_adaptive() {
            return configured;
        }
        let available = self.available();
        let share = if self.embedding_wants() {
            chat_part(available)
        } else {
            available
        };
        let engines = self.chat_busy.load(Ordering::Relaxed).max(1);
        (share / engines).max(1).min(configured)
    }

    /// Embedding passes that may run at once now.
    fn embedding_allowed(&self) -> usize {
        if !self.is_adaptive() {
            return usize::MAX;
        }
        let available = self.available();
        if self.chat_busy.load(Ordering::Relaxed) > 0 {
            available.saturating_sub(chat_part(available)).max(1)
        } else {
            available
        }
    }

    /// Marks a chat engine as having work until the guard is dropped.
    pub fn chat_busy(&'static self) -> ChatBusy {
        self.chat_busy.fetch_add(1, Ordering::Relaxed);
        self.gate_changed.notify_all();
        ChatBusy { budget: self }
    }

    /// Declares `threads` cores busy with work that runs on a pool of its own (a
    /// training job) until the guard is dropped.
    pub fn background_work(&'static self, threads: usize) -> BackgroundWork {
        self.background.fetch_add(threads, Ordering::Relaxed);
        self.gate_changed.notify_all();
        BackgroundWork {
            budget: self,
            threads,
        }
    }

    /// Waits until one more embedding pass may run; the pass runs while the permit
    /// is held.
    pub fn embedding_pass(&'static self) -> EmbeddingPermit {
        let mut gate = match self.gate.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        gate.waiting += 1;
        while gate.running >= self.embedding_allowed() {
            // Re-checked at least every 100 ms: the neighbours' load moves without
            // anyone notifying.
            gate = match self
                .gate_changed
                .wait_timeout(gate, Duration::from_millis(100))
            {
                Ok((g, _)) => g,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        gate.waiting -= 1;
        gate.running += 1;
        EmbeddingPermit { budget: self }
    }

    pub fn snapshot(&self) -> CpuSnapshot {
        let (running, waiting) = self
            .gate
            .lock()
            .map(|g| (g.running, g.waiting))
            .unwrap_or((0, 0));
        CpuSnapshot {
            cores: self.cores,
            adaptive: self.is_adaptive(),
            reads_neighbours: self.reads_neighbours,
            neighbour_load: self.neighbour_millicores.load(Ordering::Relaxed) as f64 / 1000.0,
            reserved_for_neighbours: self.reserved.load(Ordering::Relaxed),
            background_threads: self.background.load(Ordering::Relaxed),
            chat_engines_busy: self.chat_busy.load(Ordering::Relaxed),
            embedding_passes_running: running,
            embedding_passes_waiting: waiting,
        }
    }
}

/// Chat's part of `available` cores when embeddings also have work: half, rounded up.
fn chat_part(available: usize) -> usize {
    available.div_ceil(2).max(1)
}

/// Cores to hold back for other processes, given their smoothed load and what is
/// held back now: one more once they keep more than half a core beyond it busy, one
/// fewer once they use 0.7 of a core less (a dead band, so the count does not flap
/// when a neighbour's share moves with ours).
fn next_reserved(current: usize, neighbours: f64) -> usize {
    let current_f = current as f64;
    if neighbours > current_f + 0.5 {
        (neighbours + 0.5).floor() as usize
    } else if neighbours < current_f - 0.7 {
        (neighbours + 0.3).floor().max(0.0) as usize
    } else {
        current
    }
}

/// A chat engine with work.
#[derive(Debug)]
pub struct ChatBusy {
    budget: &'static CpuBudget,
}

impl Drop for ChatBusy {
    fn drop(&mut self) {
        self.budget.chat_busy.fetch_sub(1, Ordering::Relaxed);
        self.budget.gate_changed.notify_all();
    }
}

/// Cores declared busy by background work.
#[derive(Debug)]
pub struct BackgroundWork {
    budget: &'static CpuBudget,
    threads: usize,
}

impl Drop for BackgroundWork {
    fn drop(&mut self) {
        self.budget
            .background
            .fetch_sub(self.threads, Ordering::Relaxed);
        self.budget.gate_changed.notify_all();
    }
}

/// A running embedding pass.
#[derive(Debug)]
pub struct EmbeddingPermit {
    budget: &'static CpuBudget,
}

impl Drop for EmbeddingPermit {
    fn drop(&mut self) {
        let mut gate = match self.budget.gate.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        gate.running = gate.running.saturating_sub(1);
        drop(gate);
        self.budget.gate_changed.notify_all();
    }
}

/// CPU time counters in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CpuTimes {
    /// Busy time of the whole machine.
    busy: u64,
    /// Busy + idle time of the whole machine.
    total: u64,
    /// This process's user + system time.
    own: u64,
}

#[derive(Debug)]
struct LoadMeter {
    /// Whether the machine's CPUs are all this process's (the reading means
    /// something only then).
    usable: bool,
    machine_cpus: usize,
    last: Option<(Instant, CpuTimes)>,
    smoothed: f64,
}

impl LoadMeter {
    fn new(cores: usize) -> Self {
        let machine_cpus = std::fs::read_to_string("/proc/stat")
            .map(|s| machine_cpu_count(&s))
            .unwrap_or(0);
        Self {
            usable: machine_cpus == cores,
            machine_cpus,
            last: None,
            smoothed: 0.0,
        }
    }

    /// A new smoothed reading of the neighbours' load, in cores, when the last one
    /// is older than [`LOAD_INTERVAL`].
    fn sample(&mut self, now: Instant) -> Option<f64> {
        if !self.usable {
            return None;
        }
        if let Some((at, _)) = self.last {
            if now.duration_since(at) < LOAD_INTERVAL {
                return None;
            }
        }
        let times = read_times()?;
        let previous = self.last.replace((now, times));
        let (_, before) = previous?;
        let load = neighbour_load(before, times, self.machine_cpus)?;
        self.smoothed = 0.5 * self.smoothed + 0.5 * load;
        Some(self.smoothed)
    }
}

fn read_times() -> Option<CpuTimes> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let own = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (busy, total) = machine_times(&stat)?;
    Some(CpuTimes {
        busy,
        total,
        own: process_time(&own)?,
    })
}

/// Cores the rest of the machine kept busy between two readings.
fn neighbour_load(before: CpuTimes, after: CpuTimes, machine_cpus: usize) -> Option<f64> {
    let total = after.total.checked_sub(before.total)?;
    if total == 0 {
        return None;
    }
    let busy = after.busy.saturating_sub(before.busy);
    let own = after.own.saturating_sub(before.own);
    let others = busy.saturating_sub(own) as f64;
    Some(others / total as f64 * machine_cpus as f64)
}

/// (busy, total) ticks from the aggregate `cpu` line of `/proc/stat`.
fn machine_times(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8) // user nice system idle iowait irq softirq steal (guest is in user)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if fields.len() < 5 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields[4];
    Some((total - idle, total))
}

fn machine_cpu_count(stat: &str) -> usize {
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count()
}

/// utime + stime of `/proc/self/stat` (fields 14 and 15; the command name in
/// field 2 may hold spaces and parentheses, so fields are counted after its last `)`).
fn process_time(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_machine_line_and_counts_cpus() {
        let stat = "cpu  100 5 50 800 20 1 2 3 0 0\ncpu0 50 2 25 400 10 0 1 1 0 0\ncpu1 50 3 25 400 10 1 1 2 0 0\nintr 1 2\n";
        assert_eq!(machine_times(stat), Some((161, 981)));
        assert_eq!(machine_cpu_count(stat), 2);
    }

    #[test]
    fn reads_process_time_past_a_name_with_spaces() {
        let stat = "1234 (basalt (x) y) S 1 1234 1234 0 -1 4194560 100 0 0 0 77 23 0 0 20 0 5 0";
        assert_eq!(process_time(stat), Some(100));
    }

    #[test]
    fn neighbours_are_the_machine_less_this_process() {
        let before = CpuTimes {
            busy: 0,
            total: 0,
            own: 0,
        };
        // 2 CPUs, 100 ticks each: 150 busy, 60 of them ours -> 90 ticks = 0.9 core.
        let after = CpuTimes {
            busy: 150,
            total: 200,
            own: 60,
        };
        let load = neighbour_load(before, after, 2).unwrap_or(-1.0);
        assert!((load - 0.9).abs() < 1e-9, "{load}");
        assert_eq!(neighbour_load(after, after, 2), None);
    }

    #[test]
    fn reservation_moves_with_a_dead_band() {
        assert_eq!(next_reserved(0, 0.3), 0);
        assert_eq!(next_reserved(0, 0.55), 1);
        assert_eq!(
            next_reserved(0, 0.67),
            1,
            "a busy loop beside two spinning threads"
        );
        assert_eq!(next_reserved(1, 1.0), 1);
        assert_eq!(next_reserved(1, 0.45), 1, "inside the band");
        assert_eq!(next_reserved(1, 0.25), 0, "the neighbour left");
        assert_eq!(next_reserved(0, 1.8), 2);
        assert_eq!(next_reserved(2, 1.4), 2);
        assert_eq!(next_reserved(2, 0.9), 1);
    }

    #[test]
    fn chat_and_embeddings_split_the_cores_when_both_have_work() {
        let budget: &'static CpuBudget = Box::leak(Box::new(CpuBudget::new(2)));
        budget.load.lock().map(|mut m| m.usable = false).ok();
        assert_eq!(budget.chat_threads(2), 2, "chat alone takes every core");
        let permit = budget.embedding_pass();
        assert_eq!(
            budget.chat_threads(2),
            1,
            "an embedding pass takes one core"
        );
        let busy = budget.chat_busy();
        assert_eq!(budget.embedding_allowed(), 1);
        drop(permit);
        drop(busy);
        assert_eq!(
            budget.embedding_allowed(),
            2,
            "embeddings alone take every core"
        );
        assert_eq!(budget.chat_threads(1), 1);

        let big: &'static CpuBudget = Box::leak(Box::new(CpuBudget::new(16)));
        big.load.lock().map(|mut m| m.usable = false).ok();
        let _a = big.chat_busy();
        let _b = big.chat_busy();
        assert_eq!(
            big.chat_threads(16),
            8,
            "two busy chat engines split the cores"
        );
        assert_eq!(big.embedding_allowed(), 8);
        big.set_adaptive(false);
        assert_eq!(big.chat_threads(16), 16);
        assert_eq!(big.embedding_allowed(), usize::MAX);
    }

    #[test]
    fn a_training_job_keeps_its_cores() {
        let budget: &'static CpuBudget = Box::leak(Box::new(CpuBudget::new(4)));
        budget.load.lock().map(|mut m| m.usable = false).ok();
        let training = budget.background_work(2);
        assert_eq!(budget.chat_threads(4), 2, "chat takes what training leaves");
        assert_eq!(budget.embedding_allowed(), 2);
        let more = budget.background_work(4);
        assert_eq!(budget.chat_threads(4), 1, "always at least one core");
        drop(more);
        drop(training);
        assert_eq!(budget.chat_threads(4), 4);
        assert_eq!(budget.snapshot().background_threads, 0);
    }

    #[test]
    fn a_waiting_pass_runs_once_a_core_frees() {
        let budget: &'static CpuBudget = Box::leak(Box::new(CpuBudget::new(2)));
        budget.load.lock().map(|mut m| m.usable = false).ok();
        let busy = budget.chat_busy();
        let first = budget.embedding_pass();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _second = budget.embedding_pass();
            let _ = tx.send(());
        });
        assert!(
            rx.recv_timeout(Duration::from_millis(300)).is_err(),
            "a second pass waits while chat holds the other core"
        );
        assert_eq!(budget.snapshot().embedding_passes_waiting, 1);
        drop(busy);
        assert!(
            rx.recv_timeout(Duration::from_secs(5)).is_ok(),
            "chat went idle"
        );
        drop(first);
    }
}
