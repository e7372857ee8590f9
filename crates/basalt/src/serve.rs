//! `basalt serve`: load the catalog and models, make sure a key exists, serve HTTP.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use basalt_core::metering::Meter;
use basalt_core::Services;
use basalt_edge::{app, AppState};

use crate::cli::Paths;
use crate::http;
use crate::tls::{self, TlsSource};

/// HTTPS settings of `basalt serve`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// PEM certificate chain to serve HTTPS with (with --tls-key).
    #[arg(long, env = "BASALT_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "BASALT_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// `self-signed`: serve HTTPS with a certificate made once and kept in
    /// `<data dir>/tls/` (its path is printed; trust it with AWS_CA_BUNDLE).
    #[arg(long, env = "BASALT_TLS", conflicts_with_all = ["tls_cert", "tls_key"])]
    tls: Option<String>,
    /// Serve HTTPS on this address as well, leaving --listen plain HTTP.
    #[arg(long, env = "BASALT_TLS_LISTEN")]
    tls_listen: Option<String>,
}

impl TlsArgs {
    fn source(&self, data_dir: &std::path::Path, listens: &[&str]) -> Result<Option<TlsSource>> {
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            return Ok(Some(TlsSource::Files {
                cert: cert.clone(),
                key: key.clone(),
            }));
        }
        match self.tls.as_deref() {
            None if self.tls_listen.is_some() => anyhow::bail!(
                "--tls-listen needs a certificate: --tls-cert and --tls-key, or --tls self-signed"
            ),
            None => Ok(None),
            Some("self-signed") => Ok(Some(TlsSource::SelfSigned {
                dir: data_dir.join("tls"),
                names: listens
                    .iter()
                    .filter_map(|l| {
                        l.parse::<std::net::SocketAddr>()
                            .map(|a| a.ip())
                            .ok()
                            .filter(|ip| !ip.is_unspecified())
                            .map(|ip| ip.to_string())
                    })
                    .collect(),
            })),
            Some(other) => anyhow::bail!(
                "--tls takes `self-signed`, not {other:?}; or give --tls-cert and --tls-key"
            ),
        }
    }
}

/// Connections the kernel queues before the acceptor takes them. std's `bind` asks
/// for 128; past it, a burst of connections (1,000 slow clients, say) is held back by
/// SYN retransmits for seconds, so the server listens with a longer queue.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds a listening socket for the serving threads.
fn bind(address: &str) -> Result<std::net::TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = address
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the listen address {address}"))?
        .next()
        .with_context(|| format!("the listen address {address} names no address"))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .context("cannot create a listening socket")?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .with_context(|| format!("cannot listen on {address}"))?;
    socket
        .listen(LISTEN_BACKLOG)
        .with_context(|| format!("cannot listen on {address}"))?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

pub fn serve(paths: &Paths, listen: &str, tls_args: &TlsArgs) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BASALT_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,llama_cpp_2=warn,llama-cpp-2=warn")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = paths.load_config()?;
    if config.knowledge_bases.index_dir.is_empty() {
        config.knowledge_bases.index_dir =
            paths.data_dir()?.join("kb").to_string_lossy().into_owned();
    }
    if config.batch.staging_dir.is_empty() {
        config.batch.staging_dir = paths
            .data_dir()?
            .join("batch")
            .to_string_lossy()
            .into_owned();
    }
    if config.customization.data_dir.is_empty() {
        config.customization.data_dir = paths
            .data_dir()?
            .join("customization")
            .to_string_lossy()
            .into_owned();
    }
    if config.jobs.node.is_empty() {
        config.jobs.node = node_id(&paths.data_dir()?)?;
    }
    let store = paths.open_store()?;
    let keys = Arc::new(paths.key_service(Arc::clone(&store))?);
    let first_key = if keys.any_active()? {
        None
    } else {
        Some(keys.create(
            "admin",
            true,
            time::OffsetDateTime::now_utc().unix_timestamp(),
        )?)
    };
    // Every series carries the node's name, so a fleet's scrapes sum and split cleanly.
    let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
        .add_global_label("node", config.jobs.node.clone())
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ])
        .context("metric buckets")?
        .install_recorder()
        .context("cannot install the metrics recorder")?;
    // The exporter keeps each histogram sample until an upkeep folds it into the
    // buckets; without one, memory grows with every request between scrapes.
    let upkeep = metrics.clone();
    std::thread::Builder::new()
        .name("basalt-metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(5));
            upkeep.run_upkeep();
        })
        .context("cannot start the metrics upkeep thread")?;
    crate::upgrade::knowledge_records(store.as_ref())?;
    let meter = Meter::start(Arc::clone(&store) as _);
    let models_dir = paths.models_dir()?;
    let services =
        Services::start(&config, &models_dir, meter.clone(), keys, store).with_context(|| {
            format!(
                "cannot start the models (weights in {})",
                models_dir.display()
            )
        })?;
    let mut listens = vec![listen];
    listens.extend(tls_args.tls_listen.as_deref());
    let tls = tls_args
        .source(&paths.data_dir()?, &listens)?
        .map(|source| tls::load(&source))
        .transpose()?;
    let plain = bind(listen)?;
    let mut listeners = Vec::new();
    let mut addresses = Vec::new();
    match (&tls, &tls_args.tls_listen) {
        (Some(t), Some(extra)) => {
            let secure = bind(extra)?;
            addresses.push(("http", plain.local_addr()?));
            addresses.push(("https", secure.local_addr()?));
            listeners.push(http::Listener {
                socket: plain,
                tls: None,
            });
            listeners.push(http::Listener {
                socket: secure,
                tls: Some(t.acceptor.clone()),
            });
        }
        (Some(t), None) => {
            addresses.push(("https", plain.local_addr()?));
            listeners.push(http::Listener {
                socket: plain,
                tls: Some(t.acceptor.clone()),
            });
        }
        (None, _) => {
            addresses.push(("http", plain.local_addr()?));
            listeners.push(http::Listener {
                socket: plain,
                tls: None,
            });
        }
    }
    for (scheme, address) in &addresses {
        println!("basalt listening on {scheme}://{address}");
    }
    if let Some(t) = &tls {
        println!(
            "  TLS certificate: {0} (trust it with AWS_CA_BUNDLE={0}, or boto3's verify=)",
            t.cert_path.display()
        );
    }
    // The examples name the last listener: the HTTPS one when there is one.
    if let Some((scheme, address)) = addresses.last() {
        println!("  Bedrock: boto3.client(\"bedrock-runtime\", endpoint_url=\"{scheme}://{address}\", region_name=\"{}\", ...)", services.core.region());
        println!("  OpenAI:  OpenAI(base_url=\"{scheme}://{address}/v1\", api_key=...)");
    }
    if let Some(k) = &first_key {
        println!("No API keys existed, so an admin key was created. Its secrets are shown once:");
        println!("  AWS_ACCESS_KEY_ID={}", k.access_key_id);
        println!("  AWS_SECRET_ACCESS_KEY={}", k.secret_access_key);
        println!(
            "  bearer token (AWS_BEARER_TOKEN_BEDROCK / OpenAI api_key): {}",
            k.bearer_token
        );
        println!("Create more with `basalt keys create --name NAME`.");
    }
    // The console is on by default only where nobody else can reach it.
    let console_on = config
        .console
        .enabled
        .unwrap_or_else(|| addresses.iter().all(|(_, a)| a.ip().is_loopback()));
    if console_on {
        if let Some((scheme, address)) = addresses.last() {
            println!("  Console: {scheme}://{address}/console (sign in with a bearer token or an access key)");
        }
    }
    let state = AppState::new(services, Some(metrics));
    let mut router = app(state.clone());
    if console_on {
        router = router.merge(basalt_console::router(
            state.clone(),
            basalt_console::ConsoleOptions::from_config(&config.console),
        ));
    }
    let threads = config.server.serving_threads();
    let connection_limits = http::ConnectionLimits {
        header_timeout: Duration::from_secs(config.limits.header_timeout_secs.max(1)),
        max_headers: basalt_edge::auth::HTTP_MAX_HEADERS,
    };
    let core = std::sync::Arc::clone(&state.core);
    http::run(listeners, router, threads, connection_limits, async move {
        basalt_edge::start_background(&state);
        shutdown_signal().await;
    })?;
    tracing::info!("shut down");
    // Quota shares this node claimed and did not use go back to the fleet.
    core.quotas().release_all();
    meter.flush(Duration::from_secs(5));
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// This server's name in the job runner's leases: kept in `<data dir>/node-id`, so a
/// restarted server takes its own jobs back at once instead of waiting for their
/// leases to expire.
fn node_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join("node-id");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let id = text.trim();
        if !id.is_empty() {
            return Ok(id.to_owned());
        }
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let id = format!("node-{:016x}", rand::random::<u64>());
    std::fs::write(&path, format!("{id}\n"))
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}
