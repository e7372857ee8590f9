//! The PostgreSQL store: every table the embedded SQLite store holds, in one
//! PostgreSQL database that any number of Basalt nodes share.
//!
//! - **Connections**: a small pool ([`Pool`]) of synchronous `postgres` clients. A
//!   caller waits at most [`PoolConfig::acquire_timeout`] for a free one; a database
//!   that cannot be reached is [`StoreError::Unavailable`] (the edge answers 503),
//!   never a hang. A connection that failed is dropped, and with it every idle one
//!   (they lead to the same server, which has just gone away or restarted).
//! - **Runtimes**: the `postgres` client drives its connection with a tokio runtime of
//!   its own and panics when used (or dropped) on a thread inside another runtime. The
//!   core calls the store from async handlers, so a call made inside a runtime runs on
//!   a scoped thread of its own, and clients are closed on a thread outside any.
//! - **Schema**: migrations from `migrations/postgres/`, applied in one transaction
//!   under an advisory lock, so nodes starting together migrate once.
//! - **Key changes**: a statement trigger on `api_keys` moves `key_version` and sends
//!   `NOTIFY basalt_keys`; a watcher thread per store LISTENs and re-reads the version
//!   (at least once a second even without a notification), so
//!   [`KeyStore::change_marker`](crate::KeyStore::change_marker) answers from memory
//!   and a key revoked on one node stops working on every node within a second
//!   (milliseconds when the notification arrives).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;

use crate::pg_connect::PgConnect;

use crate::StoreError;

/// Migrations, applied in order; the index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    include_str!("../migrations/postgres/0001_schema.sql"),
    include_str!("../migrations/postgres/0002_key_policy_and_audit.sql"),
    include_str!("../migrations/postgres/0003_invocation_node.sql"),
];

/// A constant of this store's advisory lock (the bytes of "basalt").
const MIGRATION_LOCK: i64 = 0x6261_7361_6c74;

/// How a store connects.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Connections at most (per node).
    pub max_connections: usize,
    /// How long a call waits for a free connection before it fails as unavailable.
    pub acquire_timeout: Duration,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// What went wrong, in words: the server's message (then its detail and hint) for an
/// error the server reported, else the causes behind the driver's kind of error. No
/// credentials: the driver puts neither the password nor the settings in its errors.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = db.message().to_owned();
        if let Some(detail) = db.detail() {
            out.push_str(": ");
            out.push_str(detail);
        }
        if let Some(hint) = db.hint() {
            out.push_str(" (hint: ");
            out.push_str(hint);
            out.push(')');
        }
        return out;
    }
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    for _ in 0..8 {
        let Some(c) = cause else { break };
        let text = c.to_string();
        if !text.is_empty() && !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = c.source();
    }
    out
}

/// True when the failure is the connection's (the server is gone, restarting, out of
/// connections or resources), not the statement's.
fn is_connection_failure(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        // 08: connection exception; 53: insufficient resources (too many
        // connections, disk full); 57P01-03: shutting down or starting up.
        Some(db) => {
            let code = db.code().code();
            code.starts_with("08") || code.starts_with("53") || code.starts_with("57P")
        }
        None => {
            let mut cause = std::error::Error::source(e);
            for _ in 0..8 {
                let Some(c) = cause else { break };
                if c.is::<std::io::Error>() {
                    return true;
                }
                cause = c.source();
            }
            let text = e.to_string();
            text.contains("connect") || text.contains("timeout") || text.contains("closed")
        }
    }
}

/// A driver error as the store's: a connection failure is `Unavailable`, anything else
/// a database error.
pub(crate) fn pg(e: postgres::Error) -> StoreError {
    if is_connection_failure(&e) {
        StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e)))
    } else {
        StoreError::Database(format!("PostgreSQL: {}", describe(&e)))
    }
}

/// The columns of a unique violation (`Key (a, b)=(…) already exists.`), if it is one.
fn unique_columns(e: &postgres::Error) -> Option<String> {
    let db = e.as_db_error()?;
    if db.code() != &postgres::error::SqlState::UNIQUE_VIOLATION {
        return None;
    }
    let columns = db
        .detail()
        .and_then(|d| d.strip_prefix("Key ("))
        .and_then(|d| d.split(")=(").next())
        .map(str::to_owned);
    Some(columns.unwrap_or_else(|| db.constraint().unwrap_or_default().to_owned()))
}

/// A unique violation as the duplicate it is (`client token`, `name`, else `id`), any
/// other failure as [`pg`] maps it.
pub(crate) fn unique_violation(e: postgres::Error) -> StoreError {
    match unique_columns(&e) {
        Some(columns) if columns.contains("client_token") => StoreError::Duplicate("client token"),
        Some(columns) if columns.contains("name") => StoreError::Duplicate("name"),
        Some(_) => StoreError::Duplicate("id"),
        None => pg(e),
    }
}

/// A unique violation as `Duplicate(what)` whatever its columns, any other failure as
/// [`pg`] maps it.
pub(crate) fn duplicate(what: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    move |e| match unique_columns(&e) {
        Some(_) => StoreError::Duplicate(what),
        None => pg(e),
    }
}

/// Runs `f` where the synchronous client may block: here outside a runtime, else on a
/// scoped thread of its own.
fn off_runtime<T: Send>(f: impl FnOnce() -> Result<T, StoreError> + Send) -> Result<T, StoreError> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| {
        // `Builder` rather than `scope.spawn`, which panics when no thread can start.
        match std::thread::Builder::new()
            .name("basalt-store-pg".into())
            .spawn_scoped(scope, f)
        {
            Ok(call) => call
                .join()
                .unwrap_or_else(|_| Err(StoreError::Database("a PostgreSQL call panicked".into()))),
            Err(e) => Err(StoreError::Unavailable(format!(
                "cannot start a thread for a PostgreSQL call: {e}"
            ))),
        }
    })
}

/// Drops a client where that is allowed: here outside a runtime, else on a thread of
/// its own (dropping it inside a runtime would panic).
pub fn close(client: Client) {
    if tokio::runtime::Handle::try_current().is_err() {
        drop(client);
        return;
    }
    let slot = Arc::new(Mutex::new(Some(client)));
    let theirs = Arc::clone(&slot);
    let spawned = std::thread::Builder::new()
        .name("basalt-pg-close".into())
        .spawn(move || {
            let client = theirs.lock().ok().and_then(|mut c| c.take());
            drop(client);
        });
    if spawned.is_err() {
        // Leaked, not dropped: dropping it here would panic this thread.
        let client = slot.lock().ok().and_then(|mut c| c.take());
        std::mem::forget(client);
    }
}

#[derive(Default)]
struct PoolState {
    idle: Vec<Client>,
    /// Connections open or being opened, idle ones included.
    open: usize,
}

/// A bounded pool of connections.
pub(crate) struct Pool {
    config: PgConnect,
    limits: PoolConfig,
    state: Mutex<PoolState>,
    freed: Condvar,
}

impl Pool {
    fn new(mut config: PgConnect, limits: PoolConfig) -> Self {
        if config.config().get_connect_timeout().is_none() {
            config.config_mut().connect_timeout(limits.connect_timeout);
        }
        config.config_mut().keepalives(true);
        Self {
            config,
            limits,
            state: Mutex::new(PoolState::default()),
            freed: Condvar::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, PoolState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn checkout(&self) -> Result<Client, StoreError> {
        let deadline = Instant::now() + self.limits.acquire_timeout;
        let mut state = self.state();
        loop {
            if let Some(client) = state.idle.pop() {
                return Ok(client);
            }
            if state.open < self.limits.max_connections {
                state.open += 1;
                drop(state);
                return self.config.connect().map_err(|e| {
                    self.state().open -= 1;
                    self.freed.notify_one();
                    pg(e)
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(format!(
                    "all {} PostgreSQL connections stayed busy for {:?}",
                    self.limits.max_connections, self.limits.acquire_timeout
                )));
            }
            state = self
                .freed
                .wait_timeout(state, deadline - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|poisoned| poisoned.into_inner().0);
        }
    }

    fn checkin(&self, client: Client, broken: bool) {
        let mut state = self.state();
        if broken || client.is_closed() {
            // The server went away: the idle connections lead to it too.
            let idle = std::mem::take(&mut state.idle);
            state.open = state.open.saturating_sub(1 + idle.len());
            drop(state);
            close(client);
            idle.into_iter().for_each(close);
            self.freed.notify_all();
        } else {
            state.idle.push(client);
            drop(state);
            self.freed.notify_one();
        }
    }

    /// Runs `f` on a pooled connection.
    pub(crate) fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| {
            let mut client = self.checkout()?;
            let result = f(&mut client);
            let broken = matches!(result, Err(StoreError::Unavailable(_)));
            self.checkin(client, broken);
            result
        })
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state().idle);
        idle.into_iter().for_each(close);
    }
}

/// The key table's version, kept current by a watcher thread.
struct KeyWatch {
    version: AtomicI64,
    stop: AtomicBool,
}

impl KeyWatch {
    fn run(self: Arc<Self>, config: PgConnect) {
        while !self.stop.load(Ordering::Relaxed) {
            let mut client = match config.connect() {
                Ok(client) => client,
                Err(e) => {
                    tracing::debug!(error = %describe(&e), "key watcher cannot connect; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                    continue;
                }
            };
            if let Err(e) = self.watch(&mut client) {
                tracing::debug!(error = %describe(&e), "key watcher lost its connection; reconnecting");
            }
        }
    }

    /// Reads the version after every notification and at least once a second, until
    /// the connection fails or the store is dropped.
    fn watch(&self, client: &mut Client) -> Result<(), postgres::Error> {
        client.batch_execute("LISTEN basalt_keys")?;
        while !self.stop.load(Ordering::Relaxed) {
            let version: i64 = client
                .query_one("SELECT version FROM key_version WHERE id = 1", &[])?
                .get(0);
            self.version.store(version, Ordering::Release);
            let mut notifications = client.notifications();
            let mut waiting = notifications.timeout_iter(Duration::from_secs(1));
            // A notification, or a second without one: read the version again.
            waiting.next()?;
        }
        Ok(())
    }
}

/// Every table of [`crate::SqliteStore`], in PostgreSQL.
pub struct PostgresStore {
    pool: Pool,
    keys: Arc<KeyWatch>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("limits", &self.pool.limits)
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.keys.stop.store(true, Ordering::Relaxed);
    }
}

impl PostgresStore {
    /// Connects to `url` (libpq URL or key-value syntax, TCP or a Unix socket; TLS as
    /// libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey` ask: see
    /// [`PgConnect`]), applies pending migrations and starts the key watcher.
    pub fn open(url: &str, limits: PoolConfig) -> Result<Self, StoreError> {
        let config =
            PgConnect::parse(url).map_err(|e| StoreError::Database(format!("store url: {e}")))?;
        let pool = Pool::new(config.clone(), limits);
        pool.with(migrate)?;
        let version = pool.with(|c| {
            Ok(
                c.query_one("SELECT version FROM key_version WHERE id = 1", &[])
                    .map_err(pg)?
                    .get::<_, i64>(0),
            )
        })?;
        let keys = Arc::new(KeyWatch {
            version: AtomicI64::new(version),
            stop: AtomicBool::new(false),
        });
        let watcher = Arc::clone(&keys);
        let watch_config = pool.config.clone();
        std::thread::Builder::new()
            .name("basalt-key-watch".into())
            .spawn(move || watcher.run(watch_config))
            .map_err(|e| StoreError::Database(format!("cannot start the key watcher: {e}")))?;
        Ok(Self { pool, keys })
    }

    pub(crate) fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        self.pool.with(f)
    }

    /// The key table's version as the watcher last read it.
    pub(crate) fn key_version(&self) -> i64 {
        self.keys.version.load(Ordering::Acquire)
    }
}

/// Applies pending migrations in one transaction under an advisory lock.
fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let mut tx = client.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(pg)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS basalt_schema (version INTEGER NOT NULL);
         INSERT INTO basalt_schema (version)
         SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM basalt_schema);",
    )
    .map_err(pg)?;
    let version: i32 = tx
        .query_one("SELECT version FROM basalt_schema", &[])
        .map_err(pg)?
        .get(0);
    if version as usize > MIGRATIONS.len() {
        return Err(StoreError::Database(format!(
            "the database's schema is version {version}, newer than this Basalt knows ({}): upgrade Basalt",
            MIGRATIONS.len()
        )));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        tx.batch_execute(sql).map_err(pg)?;
        tx.execute(
            "UPDATE basalt_schema SET version = $1",
            &[&((index + 1) as i32)],
        )
        .map_err(pg)?;
    }
    tx.commit().map_err(pg)
}
