//! The PostgreSQL store (`storageConfiguration.type = RDS`): a chunk table with a
//! pgvector column (HNSW index, inner product on normalised vectors), a generated
//! `tsvector` column (GIN index) for the keyword half of hybrid search, and a
//! documents table with each document's content hash. Column names follow the
//! request's `fieldMapping`.
//!
//! Filters become SQL over the JSONB metadata column, applied inside the search:
//! pgvector's iterative index scan (`hnsw.iterative_scan = relaxed_order`, 0.8+) keeps
//! reading the index until `k` rows pass the filter, so a filtered query still fills
//! `k` when that many chunks match. The keyword ranking is PostgreSQL's `ts_rank_cd`
//! (cover density), not BM25; hybrid fuses the two rankings by reciprocal rank, as
//! the embedded store does.
//!
//! Connections are TCP (TLS as the connection string's libpq `sslmode`,
//! `sslrootcert`, `sslcert` and `sslkey` ask: `basalt_store::pg_connect`) or a Unix
//! socket.
//!
//! The `postgres` client is synchronous: it drives its connection with a tokio
//! runtime of its own, and starting (`block_on`) or dropping that runtime panics on
//! a thread that is inside another runtime ("Cannot start a runtime from within a
//! runtime"). The core calls this store from async handlers, so the client is
//! created, used and dropped only on threads outside any runtime: [`PgStore::with`]
//! moves the work to a thread of its own when called from inside a runtime, and
//! dropping a [`PgStore`] there hands its client to a thread that closes it.

use std::collections::HashMap;
use std::sync::Mutex;

use postgres::types::ToSql;
use postgres::Client;
use serde_json::Value;

use crate::filter::{Filter, Metadata};
use crate::index::{Hit, NewChunk, Query, SearchType};
use crate::store::{fuse, ChunkStore};
use crate::KbError;

/// Connection settings (libpq URL or key-value syntax), re-exported for the core.
pub use basalt_store::pg_connect::PgConnect;

/// What went wrong, in words (the store crate's reading of a driver error, shared).
pub use basalt_store::pg::describe;

fn pg_error(e: postgres::Error) -> KbError {
    KbError::Index(format!("PostgreSQL: {}", describe(&e)))
}

/// Drops a client where that is allowed (outside a runtime; see the module doc).
use basalt_store::pg::close;

/// Column names of the chunk table (serde: the form a store keeps).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldMapping {
    pub primary_key: String,
    pub vector: String,
    pub text: String,
    pub metadata: String,
}

impl Default for FieldMapping {
    fn default() -> Self {
        Self {
            primary_key: "id".into(),
            vector: "embedding".into(),
            text: "chunks".into(),
            metadata: "metadata".into(),
        }
    }
}

/// A SQL identifier this store will write unquoted: lowercase letters, digits, `_`.
pub fn check_identifier(name: &str, what: &str) -> Result<(), KbError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(KbError::InvalidConfiguration(format!(
            "{what} {name:?} must be 1..63 characters of lowercase letters, digits and _ (not starting with a digit)"
        )))
    }
}

/// One knowledge base's chunks in PostgreSQL.
pub struct PgStore {
    config: PgConnect,
    client: Mutex<Option<Client>>,
    table: String,
    fields: FieldMapping,
    dimensions: usize,
}

/// The client goes to a thread that may block on it (see [`close`]): the last
/// reference to a store is often dropped by an async handler (DeleteKnowledgeBase,
/// a failed CreateKnowledgeBase, a Retrieve racing a deletion).
impl Drop for PgStore {
    fn drop(&mut self) {
        let client = match self.client.get_mut() {
            Ok(slot) => slot.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(client) = client {
            close(client);
        }
    }
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects, creates the tables and indexes if missing, and checks an existing
    /// table's vector length.
    pub fn open(
        config: PgConnect,
        table: &str,
        fields: FieldMapping,
        dimensions: usize,
    ) -> Result<Self, KbError> {
        check_identifier(table, "tableName")?;
        for (name, what) in [
            (&fields.primary_key, "fieldMapping.primaryKeyField"),
            (&fields.vector, "fieldMapping.vectorField"),
            (&fields.text, "fieldMapping.textField"),
            (&fields.metadata, "fieldMapping.metadataField"),
        ] {
            check_identifier(name, what)?;
        }
        let store = Self {
            config,
            client: Mutex::new(None),
            table: table.to_owned(),
            fields,
            dimensions,
        };
        store.migrate()?;
        Ok(store)
    }

    /// Runs `f` with the connection (connecting first when there is none or it
    /// closed). The `postgres` client drives its own runtime, which cannot start on
    /// a thread that is inside another (an async handler), so from inside one the
    /// work, the connecting included, moves to a scoped thread of its own.
    fn with<T: Send>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, KbError> + Send,
    ) -> Result<T, KbError> {
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::scope(|scope| {
                // `Builder` rather than `scope.spawn`, which panics when no thread
                // can start: that would take the calling handler down with it.
                match std::thread::Builder::new()
                    .name("basalt-pg".into())
                    .spawn_scoped(scope, || self.with_here(f))
                {
                    Ok(call) => call
                        .join()
                        .unwrap_or_else(|_| Err(KbError::Index("PostgreSQL call panicked".into()))),
                    Err(e) => Err(KbError::Index(format!(
                        "cannot start a thread for a PostgreSQL call: {e}"
                    ))),
                }
            })
        } else {
            self.with_here(f)
        }
    }

    fn with_here<T>(
        &self,
        f: impl FnOnce(&mut Client) -> Result<T, KbError>,
    ) -> Result<T, KbError> {
        let mut guard = match self.client.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A call panicked holding the connection, perhaps inside a
                // transaction: that connection goes (dropped here, outside any
                // runtime) and the next call connects afresh.
                let mut guard = poisoned.into_inner();
                *guard = None;
                self.client.clear_poison();
                guard
            }
        };
        if guard.as_ref().is_none_or(Client::is_closed) {
            *guard = Some(self.config.connect().map_err(pg_error)?);
        }
        match guard.as_mut() {
            Some(client) => f(client),
            None => Err(KbError::Index("PostgreSQL is not connected".into())),
        }
    }

    fn migrate(&self) -> Result<(), KbError> {
        let FieldMapping {
            primary_key: pk,
            vector,
            text,
            metadata,
        } = &self.fields;
        let (t, d) = (&self.table, self.dimensions);
        self.with(|c| {
            let has_vector: bool = c
                .query_one("SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'vector')", &[])
                .map_err(pg_error)?
                .get(0);
            if !has_vector {
                c.batch_execute("CREATE EXTENSION IF NOT EXISTS vector").map_err(|e| {
                    KbError::InvalidConfiguration(format!(
                        "the pgvector extension is not installed in this database and cannot be created: PostgreSQL: {}",
                        describe(&e)
                    ))
                })?;
            }
            c.batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {t} (
                    {pk} BIGSERIAL PRIMARY KEY,
                    data_source_id TEXT NOT NULL,
                    uri TEXT NOT NULL,
                    seq INTEGER NOT NULL,
                    {text} TEXT NOT NULL,
                    context TEXT,
                    {metadata} JSONB NOT NULL,
                    {vector} vector({d}) NOT NULL,
                    tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', {text})) STORED);
                 CREATE INDEX IF NOT EXISTS {t}_by_document ON {t} (data_source_id, uri);
                 CREATE INDEX IF NOT EXISTS {t}_hnsw ON {t} USING hnsw ({vector} vector_ip_ops);
                 CREATE INDEX IF NOT EXISTS {t}_tsv ON {t} USING gin (tsv);
                 CREATE TABLE IF NOT EXISTS {t}_documents (
                    data_source_id TEXT NOT NULL,
                    uri TEXT NOT NULL,
                    content_sha256 TEXT NOT NULL,
                    PRIMARY KEY (data_source_id, uri));"
            ))
            .map_err(pg_error)?;
            let stored: i32 = c
                .query_one(
                    "SELECT atttypmod FROM pg_attribute WHERE attrelid = $1::text::regclass AND attname = $2",
                    &[&t, &vector],
                )
                .map_err(pg_error)?
                .get(0);
            if stored != d as i32 {
                return Err(KbError::InvalidConfiguration(format!(
                    "table {t} holds {stored}-dimensional vectors in {vector}; the embedding model makes {d}"
                )));
            }
            Ok(())
        })
    }
}

/// Deletes a document's chunk rows inside `tx`.
fn delete_chunk_rows(
    tx: &mut postgres::Transaction<'_>,
    table: &str,
    data_source_id: &str,
    uri: &str,
) -> Result<(), KbError> {
    tx.execute(
        &format!("DELETE FROM {table} WHERE data_source_id = $1 AND uri = $2"),
        &[&data_source_id, &uri],
    )
    .map(|_| ())
    .map_err(pg_error)
}

fn vector_literal(v: &[f32]) -> String {
    let mut out = String::with_capacity(v.len() * 10 + 2);
    out.push('[');
    for (i, x) in v.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&x.to_string());
    }
    out.push(']');
    out
}

/// SQL text of a filter over the JSONB column `m`, with its parameters (all text).
struct SqlFilter {
    sql: String,
    params: Vec<String>,
}

impl SqlFilter {
    fn param(&mut self, value: String) -> String {
        self.params.push(value);
        format!("${}", self.params.len())
    }

    fn push(&mut self, filter: &Filter, m: &str) {
        let sql = self.expression(filter, m);
        self.sql = sql;
    }

    fn expression(&mut self, filter: &Filter, m: &str) -> String {
        let json = |v: &Value| v.to_string();
        match filter {
            Filter::AndAll(parts) | Filter::OrAll(parts) => {
                let joiner = if matches!(filter, Filter::AndAll(_)) {
                    " AND "
                } else {
                    " OR "
                };
                let inner: Vec<String> = parts.iter().map(|p| self.expression(p, m)).collect();
                format!("({})", inner.join(joiner))
            }
            leaf => {
                let key = self.param(leaf.key().unwrap_or_default().to_owned());
                let attr = format!("{m} -> {key}");
                let number = format!(
                    "(CASE WHEN jsonb_typeof({attr}) = 'number' THEN ({m} ->> {key})::float8 END)"
                );
                let string =
                    format!("(CASE WHEN jsonb_typeof({attr}) = 'string' THEN {m} ->> {key} END)");
                let expr = match leaf {
                    Filter::Equals(_, v) => format!("{attr} = {}::text::jsonb", self.param(json(v))),
                    Filter::NotEquals(_, v) => format!("NOT coalesce({attr} = {}::text::jsonb, false)", self.param(json(v))),
                    Filter::GreaterThan(_, v) => format!("{number} > {}::text::float8", self.param(v.to_string())),
                    Filter::GreaterThanOrEquals(_, v) => format!("{number} >= {}::text::float8", self.param(v.to_string())),
                    Filter::LessThan(_, v) => format!("{number} < {}::text::float8", self.param(v.to_string())),
                    Filter::LessThanOrEquals(_, v) => format!("{number} <= {}::text::float8", self.param(v.to_string())),
                    Filter::In(_, list) => format!(
                        "{attr} IN (SELECT jsonb_array_elements({}::text::jsonb))",
                        self.param(Value::Array(list.clone()).to_string())
                    ),
                    Filter::NotIn(_, list) => format!(
                        "NOT coalesce({attr} IN (SELECT jsonb_array_elements({}::text::jsonb)), false)",
                        self.param(Value::Array(list.clone()).to_string())
                    ),
                    Filter::StartsWith(_, prefix) => format!("starts_with({string}, {})", self.param(prefix.clone())),
                    Filter::ListContains(_, v) => format!(
                        "(CASE WHEN jsonb_typeof({attr}) = 'array' THEN {attr} @> jsonb_build_array({}::text::jsonb) END)",
                        self.param(json(v))
                    ),
                    Filter::StringContains(_, needle) => {
                        let p = self.param(needle.clone());
                        format!(
                            "(CASE jsonb_typeof({attr}) WHEN 'string' THEN strpos({m} ->> {key}, {p}) > 0 \
                             WHEN 'array' THEN EXISTS (SELECT 1 FROM jsonb_array_elements({attr}) e \
                             WHERE jsonb_typeof(e) = 'string' AND strpos(e #>> '{{}}', {p}) > 0) END)"
                        )
                    }
                    Filter::AndAll(_) | Filter::OrAll(_) => String::from("true"),
                };
                format!("coalesce(({expr}), false)")
            }
        }
    }
}

/// Words of a query joined as an OR query for `to_tsquery` (letters and digits only).
fn or_query(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(64)
        .collect::<Vec<_>>()
        .join(" | ")
}

type Row = (i64, String, String, String, Option<String>, String, f64);

impl PgStore {
    fn ranked(
        &self,
        c: &mut Client,
        query: &Query<'_>,
        semantic: bool,
        limit: usize,
    ) -> Result<Vec<Row>, KbError> {
        let FieldMapping {
            primary_key: pk,
            vector,
            text,
            metadata,
        } = &self.fields;
        let t = &self.table;
        let mut filter = SqlFilter {
            sql: String::from("true"),
            params: Vec::new(),
        };
        if let Some(f) = query.filter {
            filter.push(f, metadata);
        }
        let columns = format!("{pk}, data_source_id, uri, {text}, context, {metadata}::text");
        let sql = if semantic {
            let q = filter.param(vector_literal(query.vector));
            format!(
                "SELECT {columns}, (({vector} <#> {q}::text::vector) * -1)::float8 FROM {t}
                 WHERE {} ORDER BY {vector} <#> {q}::text::vector LIMIT {limit}",
                filter.sql
            )
        } else {
            let words = or_query(query.text);
            if words.is_empty() {
                return Ok(Vec::new());
            }
            let q = filter.param(words);
            format!(
                "SELECT {columns}, ts_rank_cd(tsv, to_tsquery('english', {q}))::float8 AS rank FROM {t}
                 WHERE tsv @@ to_tsquery('english', {q}) AND {} ORDER BY rank DESC LIMIT {limit}",
                filter.sql
            )
        };
        let params: Vec<&(dyn ToSql + Sync)> = filter
            .params
            .iter()
            .map(|p| p as &(dyn ToSql + Sync))
            .collect();
        let mut tx = c.transaction().map_err(pg_error)?;
        tx.batch_execute(
            "SET LOCAL hnsw.iterative_scan = relaxed_order; SET LOCAL hnsw.ef_search = 100",
        )
        .map_err(pg_error)?;
        let rows = tx.query(&sql, &params).map_err(pg_error)?;
        tx.commit().map_err(pg_error)?;
        let mut out: Vec<Row> = rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get(3),
                    r.get(4),
                    r.get(5),
                    r.get(6),
                )
            })
            .collect();
        // relaxed_order may return neighbours slightly out of order.
        out.sort_by(|a, b| b.6.total_cmp(&a.6));
        Ok(out)
    }
}

impl ChunkStore for PgStore {
    fn documents(&self, data_source_id: &str) -> Result<HashMap<String, String>, KbError> {
        let t = &self.table;
        self.with(|c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT uri, content_sha256 FROM {t}_documents WHERE data_source_id = $1"
                    ),
                    &[&data_source_id],
                )
                .map_err(pg_error)?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        })
    }

    fn put_document(
        &self,
        data_source_id: &str,
        uri: &str,
        content_sha256: &str,
        chunks: Vec<NewChunk>,
    ) -> Result<usize, KbError> {
        crate::store::check_dimensions(&chunks, self.dimensions)?;
        let FieldMapping {
            vector,
            text,
            metadata,
            ..
        } = &self.fields;
        let t = &self.table;
        self.with(|c| {
            let mut tx = c.transaction().map_err(pg_error)?;
            delete_chunk_rows(&mut tx, t, data_source_id, uri)?;
            let insert = tx
                .prepare(&format!(
                    "INSERT INTO {t} (data_source_id, uri, seq, {text}, context, {metadata}, {vector})
                     VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7::text::vector)"
                ))
                .map_err(pg_error)?;
            let count = chunks.len();
            for (seq, chunk) in chunks.into_iter().enumerate() {
                let meta = Value::Object(chunk.metadata).to_string();
                tx.execute(
                    &insert,
                    &[
                        &data_source_id,
                        &uri,
                        &(seq as i32),
                        &chunk.text,
                        &chunk.context,
                        &meta,
                        &vector_literal(&chunk.vector),
                    ],
                )
                .map_err(pg_error)?;
            }
            tx.execute(
                &format!(
                    "INSERT INTO {t}_documents (data_source_id, uri, content_sha256) VALUES ($1, $2, $3)
                     ON CONFLICT (data_source_id, uri) DO UPDATE SET content_sha256 = excluded.content_sha256"
                ),
                &[&data_source_id, &uri, &content_sha256],
            )
            .map_err(pg_error)?;
            tx.commit().map_err(pg_error)?;
            Ok(count)
        })
    }

    fn document_metadata(
        &self,
        data_source_id: &str,
        uri: &str,
    ) -> Result<Option<Metadata>, KbError> {
        let t = &self.table;
        let metadata = &self.fields.metadata;
        self.with(|c| {
            let row = c
                .query_opt(
                    &format!(
                        "SELECT {metadata}::text FROM {t} WHERE data_source_id = $1 AND uri = $2 ORDER BY seq LIMIT 1"
                    ),
                    &[&data_source_id, &uri],
                )
                .map_err(pg_error)?;
            row.map(|r| {
                let text: String = r.get(0);
                serde_json::from_str(&text)
                    .map_err(|e| KbError::Index(format!("stored metadata: {e}")))
            })
            .transpose()
        })
    }

    fn delete_document(&self, data_source_id: &str, uri: &str) -> Result<bool, KbError> {
        let t = &self.table;
        self.with(|c| {
            let mut tx = c.transaction().map_err(pg_error)?;
            delete_chunk_rows(&mut tx, t, data_source_id, uri)?;
            let removed = tx
                .execute(
                    &format!("DELETE FROM {t}_documents WHERE data_source_id = $1 AND uri = $2"),
                    &[&data_source_id, &uri],
                )
                .map_err(pg_error)?;
            tx.commit().map_err(pg_error)?;
            Ok(removed > 0)
        })
    }

    /// One transaction (and one trip to a connection thread) for the whole source,
    /// where the default would delete document by document.
    fn delete_data_source(&self, data_source_id: &str) -> Result<usize, KbError> {
        let t = &self.table;
        self.with(|c| {
            let mut tx = c.transaction().map_err(pg_error)?;
            tx.execute(
                &format!("DELETE FROM {t} WHERE data_source_id = $1"),
                &[&data_source_id],
            )
            .map_err(pg_error)?;
            let removed = tx
                .execute(
                    &format!("DELETE FROM {t}_documents WHERE data_source_id = $1"),
                    &[&data_source_id],
                )
                .map_err(pg_error)?;
            tx.commit().map_err(pg_error)?;
            Ok(removed as usize)
        })
    }

    /// Writes are visible at commit; nothing to do.
    fn flush(&self) -> Result<(), KbError> {
        Ok(())
    }

    fn search(&self, query: &Query<'_>) -> Result<Vec<Hit>, KbError> {
        if query.k == 0 {
            return Ok(Vec::new());
        }
        let pool = (query.k * 4).max(50);
        self.with(|c| {
            let semantic = match query.search {
                SearchType::Keyword => Vec::new(),
                _ => self.ranked(c, query, true, pool)?,
            };
            let keyword = match query.search {
                SearchType::Semantic => Vec::new(),
                _ => self.ranked(c, query, false, pool)?,
            };
            let mut rows: HashMap<i64, Row> = HashMap::new();
            let ranked: Vec<(i64, f64)> = match query.search {
                SearchType::Semantic => semantic.iter().map(|r| (r.0, r.6)).collect(),
                SearchType::Keyword => keyword.iter().map(|r| (r.0, r.6)).collect(),
                SearchType::Hybrid => {
                    let s: Vec<i64> = semantic.iter().map(|r| r.0).collect();
                    let k: Vec<i64> = keyword.iter().map(|r| r.0).collect();
                    fuse([&s, &k])
                }
            };
            for row in semantic.into_iter().chain(keyword) {
                rows.entry(row.0).or_insert(row);
            }
            let mut seen = std::collections::HashSet::new();
            let mut hits = Vec::new();
            for (id, score) in ranked {
                let Some((_, ds, uri, text, context, metadata, _)) = rows.remove(&id) else {
                    continue;
                };
                let group = context.clone().map(|c| (uri.clone(), c));
                if let Some(g) = group {
                    if !seen.insert(g) {
                        continue;
                    }
                }
                hits.push(Hit {
                    chunk_id: id,
                    data_source_id: ds,
                    uri,
                    text: context.unwrap_or(text),
                    metadata: serde_json::from_str::<Metadata>(&metadata).unwrap_or_default(),
                    score,
                });
                if hits.len() == query.k {
                    break;
                }
            }
            Ok(hits)
        })
    }

    fn destroy(&self) -> Result<(), KbError> {
        let t = &self.table;
        self.with(|c| {
            c.batch_execute(&format!(
                "DROP TABLE IF EXISTS {t}; DROP TABLE IF EXISTS {t}_documents;"
            ))
            .map_err(pg_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_become_parameterised_sql() {
        let f = Filter::parse(&json!({"andAll": [
            {"equals": {"key": "a'; DROP TABLE x; --", "value": "v"}},
            {"greaterThan": {"key": "year", "value": 2020}}
        ]}))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut sql = SqlFilter {
            sql: String::new(),
            params: Vec::new(),
        };
        sql.push(&f, "metadata");
        assert!(!sql.sql.contains("DROP"), "{}", sql.sql);
        assert_eq!(
            sql.params,
            ["a'; DROP TABLE x; --", "\"v\"", "year", "2020"]
        );
        assert!(
            sql.sql
                .starts_with("(coalesce((metadata -> $1 = $2::text::jsonb), false) AND "),
            "{}",
            sql.sql
        );
    }

    /// From inside a runtime (as the core's async handlers call it), opening a store
    /// that cannot connect returns the cause instead of panicking, and says what it
    /// was (the driver alone says only "error connecting to server").
    #[test]
    fn a_refused_connection_says_why_from_inside_a_runtime() {
        let mut config = PgConnect::parse("host=127.0.0.1 port=1 user=nobody dbname=nothing")
            .unwrap_or_else(|e| panic!("{e}"));
        config
            .config_mut()
            .connect_timeout(std::time::Duration::from_secs(5));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("{e}"));
        let opened = runtime.block_on(async move {
            PgStore::open(config, "kb_chunks", FieldMapping::default(), 4)
        });
        match opened {
            Ok(store) => panic!("nothing listens on 127.0.0.1:1, yet {store:?} opened"),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.starts_with("PostgreSQL: error connecting to server: ")
                        && message.len() > "PostgreSQL: error connecting to server: ".len(),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn identifiers_and_queries_are_checked() {
        assert!(check_identifier("kb_chunks", "tableName").is_ok());
        assert!(check_identifier("Chunks", "tableName").is_err());
        assert!(check_identifier("x; drop", "tableName").is_err());
        assert_eq!(or_query("what's in basalt?"), "what | s | in | basalt");
    }
}
