//! On-demand quotas: requests and tokens per minute per key and model, and a monthly
//! spend budget per key.
//!
//! Windows are fixed calendar minutes (`floor(now / 60 s)`), per (key, model). The
//! store holds each window's count for the whole fleet (every node sharing it); a
//! node **claims shares** of a window ahead of use — one atomic, limit-checked store
//! write per share — and admits requests from its share in memory. So a fleet never
//! admits more than the limit (the store refuses a claim past it), and a node pays a
//! store round trip only when its share runs out: a share is the shortfall plus a
//! sixteenth of the limit (at most an eighth of what is left), so at a steady rate
//! one request in several claims. When a window runs short (less than a quarter
//! left), nodes give their unused shares back once a second. A request is admitted
//! when its share has room for one more request and for its token reservation
//! (estimated input tokens + `maxTokens`); when it ends, the reservation is settled
//! to the tokens it really used (the difference returns to the node's share).
//! Limits, most specific first: the key's own override (`basalt keys update
//! --rpm/--tpm`), the model's (`[quotas.models."<id>"]`), the server default
//! (`[quotas]`); 0 or absent means unlimited.
//!
//! Budgets: a key's spend this month is read from the invocation log (every node's
//! invocations when the store is shared) every [`SPEND_REFRESH_MS`] and kept up to
//! date in memory between reads; other nodes' spend is seen within that interval.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use basalt_store::{InvocationLog, QuotaClaim, QuotaStore};

use crate::config::QuotasConfig;
use crate::keys::Principal;
use crate::CoreError;

/// One quota window, in milliseconds.
pub const WINDOW_MS: i64 = 60_000;

/// Where the time comes from (tests move it by hand).
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        crate::common::now_ms()
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self(AtomicI64::new(now_ms))
    }

    pub fn advance(&self, ms: i64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// An admitted request's hold on its window, settled when the request ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaTicket {
    key_id: String,
    model_id: String,
    window_start_ms: i64,
    reserved_tokens: u64,
}

/// One window as this node sees it: the share it claimed, what it used of it, and the
/// fleet's claimed totals as the store last answered.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    window_start_ms: i64,
    granted_requests: u64,
    used_requests: u64,
    granted_tokens: u64,
    used_tokens: u64,
    fleet_requests: u64,
    fleet_tokens: u64,
    limits: Option<MinuteLimits>,
}

impl Counts {
    fn unused(&self) -> (u64, u64) {
        (
            self.granted_requests.saturating_sub(self.used_requests),
            self.granted_tokens.saturating_sub(self.used_tokens),
        )
    }
}

/// What a claim asks beyond the shortfall, so the next requests need no store call: a
/// sixteenth of the limit, at most an eighth of what the fleet has left.
fn share_bonus(max: u64, fleet: u64) -> u64 {
    (max / 16).min(max.saturating_sub(fleet) / 8)
}

#[derive(Debug, Clone, Copy, Default)]
struct Spend {
    month_start_ms: i64,
    usd: f64,
    loaded_at_ms: i64,
}

/// How long a key's spend read from the invocation log is trusted before it is read
/// again (picks up other nodes' spend and budgets set while a key had none).
const SPEND_REFRESH_MS: i64 = 60_000;

#[derive(Default)]
struct State {
    windows: HashMap<(String, String), Counts>,
    spend: HashMap<String, Spend>,
    /// Keys warned about their budget this month.
    warned: HashSet<(String, i64)>,
}

/// The effective per-minute limits of one key on one model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteLimits {
    pub requests: Option<u64>,
    pub tokens: Option<u64>,
}

/// Quota state of a running server.
pub struct Quotas {
    config: QuotasConfig,
    clock: Arc<dyn Clock>,
    store: Arc<dyn QuotaStore>,
    log: Arc<dyn InvocationLog>,
    state: Mutex<State>,
}

impl std::fmt::Debug for Quotas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn nonzero(v: Option<u64>) -> Option<u64> {
    v.filter(|&n| n > 0)
}

/// The first millisecond of the calendar month (UTC) that contains `ms`.
fn month_start_ms(ms: i64) -> i64 {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let start = t
        .replace_day(1)
        .map(|d| d.replace_time(time::Time::MIDNIGHT))
        .unwrap_or(t);
    (start.unix_timestamp_nanos() / 1_000_000) as i64
}

impl Quotas {
    /// Loads the current minute's windows from the store.
    pub fn new(
        config: QuotasConfig,
        clock: Arc<dyn Clock>,
        store: Arc<dyn QuotaStore>,
        log: Arc<dyn InvocationLog>,
    ) -> Result<Self, CoreError> {
        let now = clock.now_ms();
        let window = now - now.rem_euclid(WINDOW_MS);
        let mut state = State::default();
        for w in store
            .quota_windows_since(window)
            .map_err(crate::common::store_error("quota"))?
        {
            // What the fleet (this node before a restart included) claimed already.
            state.windows.insert(
                (w.key_id, w.model_id),
                Counts {
                    window_start_ms: w.window_start_ms,
                    fleet_requests: w.requests,
                    fleet_tokens: w.tokens,
                    ..Counts::default()
                },
            );
        }
        Ok(Self {
            config,
            clock,
            store,
            log,
            state: Mutex::new(state),
        })
    }

    /// The limits that apply to this key on this model.
    pub fn minute_limits(&self, principal: &Principal, model_id: &str) -> MinuteLimits {
        let model = self.config.models.get(model_id);
        MinuteLimits {
            requests: nonzero(principal.limits.requests_per_minute)
                .or_else(|| nonzero(model.and_then(|m| m.requests_per_minute)))
                .or(nonzero(self.config.requests_per_minute)),
            tokens: nonzero(principal.limits.tokens_per_minute)
                .or_else(|| nonzero(model.and_then(|m| m.tokens_per_minute)))
                .or(nonzero(self.config.tokens_per_minute)),
        }
    }

    fn budget(&self, principal: &Principal) -> Option<f64> {
        principal
            .limits
            .monthly_budget_usd
            .or(self.config.monthly_budget_usd)
            .filter(|&b| b > 0.0)
    }

    /// This month's spend of a key: read from the invocation log, then kept up to date
    /// in memory and read again every [`SPEND_REFRESH_MS`].
    fn spend(&self, state: &mut State, key_id: &str, now: i64) -> f64 {
        let month = month_start_ms(now);
        if let Some(s) = state.spend.get(key_id) {
            if s.month_start_ms == month && now - s.loaded_at_ms < SPEND_REFRESH_MS {
                return s.usd;
            }
        }
        let usd = self
            .log
            .spend_by_key(month)
            .ok()
            .and_then(|rows| rows.into_iter().find(|(k, _)| k == key_id).map(|(_, v)| v))
            .unwrap_or(0.0);
        state.spend.insert(
            key_id.to_string(),
            Spend {
                month_start_ms: month,
                usd,
                loaded_at_ms: now,
            },
        );
        usd
    }

    /// Admits a request that may use up to `reserve_tokens`, or says which quota is
    /// used up. Requests without a key (none exist behind authentication) and keys
    /// without limits pass without a ticket.
    pub fn admit(
        &self,
        principal: Option<&Principal>,
        model_id: &str,
        reserve_tokens: u64,
    ) -> Result<Option<QuotaTicket>, CoreError> {
        let Some(principal) = principal else {
            return Ok(None);
        };
        let limits = self.minute_limits(principal, model_id);
        let budget = self.budget(principal);
        if limits.requests.is_none() && limits.tokens.is_none() && budget.is_none() {
            return Ok(None);
        }
        let now = self.clock.now_ms();
        let mut state = self
            .state
            .lock()
            .map_err(|_| CoreError::Internal("quota state lock poisoned".into()))?;
        if let Some(budget) = budget {
            let spent = self.spend(&mut state, &principal.key_id, now);
            if spent >= budget {
                return Err(CoreError::BudgetExhausted(format!(
                    "key {} has spent ${spent:.6} of its ${budget:.6} monthly budget; requests resume next month or when the budget is raised",
                    principal.key_name
                )));
            }
        }
        let window = now - now.rem_euclid(WINDOW_MS);
        let retry_after_secs = ((window + WINDOW_MS - now) as u64).div_ceil(1000).max(1);
        let key = (principal.key_id.clone(), model_id.to_string());
        let need_requests = u64::from(limits.requests.is_some());
        let need_tokens = if limits.tokens.is_some() {
            reserve_tokens
        } else {
            0
        };
        let ticket = QuotaTicket {
            key_id: principal.key_id.clone(),
            model_id: model_id.to_string(),
            window_start_ms: window,
            reserved_tokens: need_tokens,
        };
        let counts = state.windows.entry(key.clone()).or_default();
        if counts.window_start_ms != window {
            *counts = Counts {
                window_start_ms: window,
                ..Counts::default()
            };
        }
        counts.limits = Some(limits);
        let short_requests =
            (counts.used_requests + need_requests).saturating_sub(counts.granted_requests);
        let short_tokens = (counts.used_tokens + need_tokens).saturating_sub(counts.granted_tokens);
        if short_requests == 0 && short_tokens == 0 {
            counts.used_requests += need_requests;
            counts.used_tokens += need_tokens;
            return Ok(Some(ticket));
        }
        // The share ran out: claim more from the store, outside the lock.
        let bonus = |short: u64, max: Option<u64>, fleet: u64| match (short, max) {
            (0, _) | (_, None) => 0,
            (_, Some(max)) => share_bonus(max, fleet),
        };
        let bonus_requests = bonus(short_requests, limits.requests, counts.fleet_requests);
        let bonus_tokens = bonus(short_tokens, limits.tokens, counts.fleet_tokens);
        let fleet_tokens_seen = counts.fleet_tokens;
        let unused_tokens = counts.unused().1;
        drop(state);
        let claim =
            |requests: u64, tokens: u64| -> Result<Option<(u64, u64, u64, u64)>, CoreError> {
                let claimed = self
                    .store
                    .claim_quota(
                        &QuotaClaim {
                            key_id: principal.key_id.clone(),
                            model_id: model_id.to_string(),
                            window_start_ms: window,
                            requests: requests.min(i64::MAX as u64) as i64,
                            tokens: tokens.min(i64::MAX as u64) as i64,
                        },
                        limits.requests,
                        limits.tokens,
                    )
                    .map_err(crate::common::store_error("quota"))?;
                Ok(claimed.map(|w| (requests, tokens, w.requests, w.tokens)))
            };
        let mut granted = claim(short_requests + bonus_requests, short_tokens + bonus_tokens)?;
        if granted.is_none() && bonus_requests + bonus_tokens > 0 {
            granted = claim(short_requests, short_tokens)?;
        }
        // Which limit refused: try the requests alone (a share that fits is kept).
        let mut requests_fit = granted.is_some();
        let mut partial = None;
        if granted.is_none() && short_requests > 0 && short_tokens > 0 {
            partial = claim(short_requests, 0)?;
            requests_fit = partial.is_some();
        } else if granted.is_none() {
            requests_fit = short_requests == 0;
        }
        let mut state = self
            .state
            .lock()
            .map_err(|_| CoreError::Internal("quota state lock poisoned".into()))?;
        let counts = state.windows.entry(key).or_default();
        let same_window = counts.window_start_ms == window;
        if let Some((requests, tokens, fleet_requests, fleet_tokens)) = granted.or(partial) {
            if same_window {
                counts.granted_requests += requests;
                counts.granted_tokens += tokens;
                counts.fleet_requests = fleet_requests;
                counts.fleet_tokens = fleet_tokens;
            }
        }
        if granted.is_some() {
            if same_window {
                counts.used_requests += need_requests;
                counts.used_tokens += need_tokens;
            }
            return Ok(Some(ticket));
        }
        if !requests_fit {
            let max = limits.requests.unwrap_or_default();
            return Err(CoreError::RateLimited {
                message: format!(
                    "the requests-per-minute quota ({max}) of key {} on model {model_id} is used up; it resets in {retry_after_secs} s",
                    principal.key_name
                ),
                retry_after_secs,
            });
        }
        let max = limits.tokens.unwrap_or_default();
        let left = max.saturating_sub(fleet_tokens_seen) + unused_tokens;
        Err(CoreError::RateLimited {
            message: format!(
                "the tokens-per-minute quota ({max}) of key {} on model {model_id} has about {left} tokens left and this request may use {reserve_tokens} (input + maxTokens); it resets in {retry_after_secs} s",
                principal.key_name
            ),
            retry_after_secs,
        })
    }

    /// Replaces a ticket's reservation with the tokens the request really used, in the
    /// window it was admitted to (nothing to do once that window has passed).
    pub fn settle(&self, ticket: QuotaTicket, used_tokens: u64) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if ticket.reserved_tokens == 0 {
            // No token limit applied when it was admitted: nothing was reserved.
            return;
        }
        let key = (ticket.key_id, ticket.model_id);
        if let Some(counts) = state.windows.get_mut(&key) {
            if counts.window_start_ms == ticket.window_start_ms {
                counts.used_tokens =
                    (counts.used_tokens + used_tokens).saturating_sub(ticket.reserved_tokens);
            }
        }
    }

    /// Adds an invocation's cost to its key's monthly spend; logs once a month when a
    /// key passes the warning share of its budget.
    pub fn add_spend(&self, principal: Option<&Principal>, usd: f64) {
        let Some(principal) = principal else { return };
        // Spend is tracked only for keys with a budget (others cost nothing here).
        let Some(budget) = self.budget(principal) else {
            return;
        };
        if usd <= 0.0 {
            return;
        }
        let now = self.clock.now_ms();
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let before = self.spend(&mut state, &principal.key_id, now);
        let after = before + usd;
        if let Some(s) = state.spend.get_mut(&principal.key_id) {
            s.usd = after;
        }
        let warn_at = budget * self.config.budget_warning_fraction;
        let month = month_start_ms(now);
        if after >= warn_at && state.warned.insert((principal.key_id.clone(), month)) {
            tracing::warn!(key = %principal.key_name, spent_usd = after, budget_usd = budget, "key passed the budget warning threshold");
        }
    }

    /// This month's spend and budget of a key, for usage reports.
    pub fn budget_status(&self, principal: &Principal) -> (f64, Option<f64>) {
        let now = self.clock.now_ms();
        let spent = self
            .state
            .lock()
            .map(|mut s| self.spend(&mut s, &principal.key_id, now))
            .unwrap_or(0.0);
        (spent, self.budget(principal))
    }

    /// Gives back the unused shares of windows that run short (less than a quarter of
    /// a limit left in the fleet), or of every window when `all` (a node shutting
    /// down), forgets finished windows and prunes old ones from the store.
    pub fn flush(&self) {
        self.give_back(false);
    }

    /// Gives back every unused share (the node is about to stop).
    pub fn release_all(&self) {
        self.give_back(true);
    }

    fn give_back(&self, all: bool) {
        let now = self.clock.now_ms();
        let window = now - now.rem_euclid(WINDOW_MS);
        // The fleet's totals now (other nodes claim too), to judge what runs short.
        let fleet = match self.store.quota_windows_since(window) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read quota windows");
                Vec::new()
            }
        };
        let returns: Vec<QuotaClaim> = {
            let Ok(mut state) = self.state.lock() else {
                return;
            };
            state.windows.retain(|_, c| c.window_start_ms >= window);
            for w in fleet {
                if let Some(c) = state
                    .windows
                    .get_mut(&(w.key_id, w.model_id))
                    .filter(|c| c.window_start_ms == w.window_start_ms)
                {
                    c.fleet_requests = w.requests;
                    c.fleet_tokens = w.tokens;
                }
            }
            state
                .windows
                .iter_mut()
                .filter_map(|((key_id, model_id), c)| {
                    let limits = c.limits?;
                    let short = |max: Option<u64>, fleet: u64| {
                        max.is_some_and(|m| m.saturating_sub(fleet) < m.div_ceil(4))
                    };
                    let (requests, tokens) = c.unused();
                    let scarce = short(limits.requests, c.fleet_requests)
                        || short(limits.tokens, c.fleet_tokens);
                    if (requests == 0 && tokens == 0) || !(all || scarce) {
                        return None;
                    }
                    c.granted_requests -= requests;
                    c.granted_tokens -= tokens;
                    Some(QuotaClaim {
                        key_id: key_id.clone(),
                        model_id: model_id.clone(),
                        window_start_ms: c.window_start_ms,
                        requests: -(requests.min(i64::MAX as u64) as i64),
                        tokens: -(tokens.min(i64::MAX as u64) as i64),
                    })
                })
                .collect()
        };
        for claim in returns {
            match self.store.claim_quota(&claim, None, None) {
                Ok(Some(totals)) => {
                    if let Ok(mut state) = self.state.lock() {
                        if let Some(c) = state
                            .windows
                            .get_mut(&(claim.key_id.clone(), claim.model_id.clone()))
                            .filter(|c| c.window_start_ms == claim.window_start_ms)
                        {
                            c.fleet_requests = totals.requests;
                            c.fleet_tokens = totals.tokens;
                        }
                    }
                }
                Ok(None) => {}
                // The share stays claimed until the window ends: the fleet admits
                // less, never more.
                Err(e) => tracing::warn!(error = %e, "cannot give back a quota share"),
            }
        }
        if let Err(e) = self.store.prune_quota_windows(window - WINDOW_MS) {
            tracing::warn!(error = %e, "cannot prune quota windows");
        }
    }

    /// Flushes once a second on a background thread for as long as `quotas` lives.
    pub fn start_flusher(quotas: &Arc<Self>) {
        let weak = Arc::downgrade(quotas);
        let spawned = std::thread::Builder::new()
            .name("basalt-quotas".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                match weak.upgrade() {
                    Some(q) => q.flush(),
                    None => return,
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the quota flusher; quota windows will not survive a restart");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelQuotaConfig;
    use basalt_store::{KeyLimits, SqliteStore};

    fn principal(limits: KeyLimits) -> Principal {
        Principal {
            key_id: "key-1".into(),
            key_name: "tests".into(),
            is_admin: false,
            limits,
            retrieval_filter: None,
            policy: None,
        }
    }

    fn quotas(config: QuotasConfig, store: &Arc<SqliteStore>, clock: &Arc<ManualClock>) -> Quotas {
        Quotas::new(config, clock.clone(), store.clone(), store.clone()).expect("quotas")
    }

    /// 10:00:05 UTC on some day: 55 s left in the window.
    const T0: i64 = 1_795_000_000_000 - 1_795_000_000_000 % WINDOW_MS + 5_000;

    #[test]
    fn requests_per_minute_stop_exactly_at_the_limit_and_reset_with_the_minute() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let clock = Arc::new(ManualClock::new(T0));
        let q = quotas(QuotasConfig::default(), &store, &clock);
        let p = principal(KeyLimits {
            requests_per_minute: Some(3),
            ..KeyLimits::default()
        });
        for i in 0..3 {
            assert!(
                q.admit(Some(&p), "m", 0).is_ok(),
                "request {i} is within the quota"
            );
        }
        match q.admit(Some(&p), "m", 0) {
            Err(CoreError::RateLimited {
                message,
                retry_after_secs,
            }) => {
                assert!(
                    message.contains("requests-per-minute quota (3)"),
                    "{message}"
                );
                assert_eq!(retry_after_secs, 55);
            }
            other => panic!("the 4th request must be refused, got {other:?}"),
        }
        assert!(
            q.admit(Some(&p), "other-model", 0).is_ok(),
            "quotas are per model"
        );
        clock.advance(55_000);
        assert!(
            q.admit(Some(&p), "m", 0).is_ok(),
            "a new minute, a new quota"
        );
    }

    #[test]
    fn tokens_per_minute_reserve_up_front_and_settle_to_the_real_count() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let clock = Arc::new(ManualClock::new(T0));
        let config = QuotasConfig {
            tokens_per_minute: Some(100),
            ..QuotasConfig::default()
        };
        let q = quotas(config, &store, &clock);
        let p = principal(KeyLimits::default());
        let first = q
            .admit(Some(&p), "m", 60)
            .expect("60 of 100")
            .expect("a ticket");
        assert!(
            matches!(
                q.admit(Some(&p), "m", 41),
                Err(CoreError::RateLimited { .. })
            ),
            "60 + 41 > 100 while the first is reserved"
        );
        q.settle(first, 20);
        assert!(
            q.admit(Some(&p), "m", 80).is_ok(),
            "20 used + 80 = 100 fits exactly"
        );
        assert!(matches!(
            q.admit(Some(&p), "m", 1),
            Err(CoreError::RateLimited { .. })
        ));
    }

    #[test]
    fn key_overrides_beat_model_and_server_defaults() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let clock = Arc::new(ManualClock::new(T0));
        let mut config = QuotasConfig {
            requests_per_minute: Some(100),
            ..QuotasConfig::default()
        };
        config.models.insert(
            "m".into(),
            ModelQuotaConfig {
                requests_per_minute: Some(10),
                tokens_per_minute: None,
            },
        );
        let q = quotas(config, &store, &clock);
        let plain = principal(KeyLimits::default());
        assert_eq!(q.minute_limits(&plain, "m").requests, Some(10));
        assert_eq!(q.minute_limits(&plain, "x").requests, Some(100));
        let own = principal(KeyLimits {
            requests_per_minute: Some(2),
            ..KeyLimits::default()
        });
        assert_eq!(q.minute_limits(&own, "m").requests, Some(2));
        assert!(q.admit(None, "m", 0).expect("no key").is_none());
    }

    #[test]
    fn windows_survive_a_restart_through_the_store() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let clock = Arc::new(ManualClock::new(T0));
        let p = principal(KeyLimits {
            requests_per_minute: Some(2),
            ..KeyLimits::default()
        });
        {
            let q = quotas(QuotasConfig::default(), &store, &clock);
            q.admit(Some(&p), "m", 0).expect("first");
            q.admit(Some(&p), "m", 0).expect("second");
            q.flush();
        }
        clock.advance(1_000);
        let restarted = quotas(QuotasConfig::default(), &store, &clock);
        assert!(
            matches!(
                restarted.admit(Some(&p), "m", 0),
                Err(CoreError::RateLimited { .. })
            ),
            "the restarted node still counts this minute"
        );
    }

    #[test]
    fn nodes_sharing_a_store_admit_exactly_the_limit_between_them() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let clock = Arc::new(ManualClock::new(T0));
        let nodes: Vec<Quotas> = (0..3)
            .map(|_| quotas(QuotasConfig::default(), &store, &clock))
            .collect();
        let p = principal(KeyLimits {
            requests_per_minute: Some(100),
            ..KeyLimits::default()
        });
        let mut admitted = [0u32; 3];
        // Uneven traffic: node 0 takes most requests, node 2 a few.
        for i in 0..400 {
            let node = match i % 8 {
                0..=4 => 0,
                5 | 6 => 1,
                _ => 2,
            };
            if nodes[node].admit(Some(&p), "m", 0).is_ok() {
                admitted[node] += 1;
            }
            if i % 50 == 49 {
                nodes.iter().for_each(Quotas::flush);
            }
        }
        assert_eq!(
            admitted.iter().sum::<u32>(),
            100,
            "three nodes must admit the limit between them, no more and no less: {admitted:?}"
        );
        assert!(
            admitted.iter().all(|&n| n > 0),
            "every node must get a share: {admitted:?}"
        );
    }

    #[test]
    fn unused_shares_come_back_when_the_window_runs_short() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let clock = Arc::new(ManualClock::new(T0));
        let a = quotas(QuotasConfig::default(), &store, &clock);
        let b = quotas(QuotasConfig::default(), &store, &clock);
        let p = principal(KeyLimits {
            requests_per_minute: Some(64),
            ..KeyLimits::default()
        });
        // Node a takes 40, claiming a share beyond each shortfall as it goes.
        for i in 0..40 {
            assert!(a.admit(Some(&p), "m", 0).is_ok(), "request {i} on a");
        }
        let claimed =
            |store: &SqliteStore| store.quota_windows_since(0).expect("windows")[0].requests;
        assert!(
            claimed(&store) > 40,
            "a must have claimed a share beyond what it used, got {}",
            claimed(&store)
        );
        // Node b gets what a has not claimed; then a gives back its unused share.
        let mut on_b = 0;
        while b.admit(Some(&p), "m", 0).is_ok() {
            on_b += 1;
        }
        a.flush();
        while b.admit(Some(&p), "m", 0).is_ok() {
            on_b += 1;
        }
        assert_eq!(
            on_b, 24,
            "after a gives its unused share back, b must be able to use the rest of the 64"
        );
        assert_eq!(claimed(&store), 64);
    }

    #[test]
    fn a_spent_budget_stops_requests() {
        let store = Arc::new(SqliteStore::open_in_memory().expect("store"));
        let clock = Arc::new(ManualClock::new(T0));
        let q = quotas(QuotasConfig::default(), &store, &clock);
        let p = principal(KeyLimits {
            monthly_budget_usd: Some(1.0),
            ..KeyLimits::default()
        });
        assert!(q.admit(Some(&p), "m", 0).is_ok());
        q.add_spend(Some(&p), 0.6);
        assert!(q.admit(Some(&p), "m", 0).is_ok(), "0.6 of 1.0 spent");
        q.add_spend(Some(&p), 0.4);
        assert!(matches!(
            q.admit(Some(&p), "m", 0),
            Err(CoreError::BudgetExhausted(_))
        ));
        assert_eq!(q.budget_status(&p), (1.0, Some(1.0)));
    }
}
