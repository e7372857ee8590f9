//! How fast one store takes what a fleet writes on its hot paths: metering rows (in the
//! batches the meter writes) and quota-share claims, from several writers at once (the
//! nodes). `cargo run --release -p basalt-store --example write_rate -- URL [SECONDS]
//! [WRITERS]`: URL a `postgres://` URL or a SQLite file path.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use basalt_store::{InvocationRecord, PoolConfig, QuotaClaim, ServerStore};

fn record(i: u64, writer: usize) -> InvocationRecord {
    InvocationRecord {
        at_ms: 1_800_000_000_000 + i as i64,
        request_id: format!("w{writer}-{i}"),
        key_id: Some(format!("key-{}", i % 50)),
        key_name: Some(format!("key-{}", i % 50)),
        model_id: "openai.bench-upstream-v1:0".into(),
        inference_type: "ON_DEMAND".into(),
        operation: "ChatCompletions".into(),
        input_tokens: 21,
        output_tokens: 7,
        latency_ms: 3,
        first_token_ms: None,
        cost_usd: 0.000035,
        outcome: "success".into(),
        inference_profile: None,
        model_alias: None,
        agent_session: None,
        node: None,
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let url = args
        .first()
        .ok_or("usage: write_rate URL [SECONDS] [WRITERS]")?;
    let seconds: u64 = args.get(1).map_or(Ok(10), |s| s.parse())?;
    let writers: usize = args.get(2).map_or(Ok(4), |s| s.parse())?;
    let open = || -> Result<Arc<dyn ServerStore>, Box<dyn std::error::Error>> {
        let postgres = url.starts_with("postgres");
        Ok(basalt_store::open(
            postgres.then_some(url.as_str()),
            std::path::Path::new(url),
            PoolConfig::default(),
        )?)
    };
    for (what, batch) in [
        ("metering rows, batches of 64", 64u64),
        ("metering rows, batches of 512", 512),
    ] {
        let store = open()?;
        let stop = Arc::new(AtomicBool::new(false));
        let rows = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..writers)
            .map(|w| {
                let (store, stop, rows) =
                    (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&rows));
                std::thread::spawn(move || {
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let records: Vec<_> = (0..batch).map(|k| record(i + k, w)).collect();
                        if store.record_invocations(&records).is_ok() {
                            rows.fetch_add(batch, Ordering::Relaxed);
                        }
                        i += batch;
                    }
                })
            })
            .collect();
        let started = Instant::now();
        std::thread::sleep(Duration::from_secs(seconds));
        stop.store(true, Ordering::Relaxed);
        for t in threads {
            let _ = t.join();
        }
        let rate = rows.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
        println!("{what:<34} {writers} writers: {rate:>10.0} rows/s");
    }
    let store = open()?;
    let stop = Arc::new(AtomicBool::new(false));
    let claims = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..writers)
        .map(|w| {
            let (store, stop, claims) =
                (Arc::clone(&store), Arc::clone(&stop), Arc::clone(&claims));
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let claim = QuotaClaim {
                        key_id: format!("key-{}", (i as usize + w) % 50),
                        model_id: "m".into(),
                        window_start_ms: 1_800_000_000_000,
                        requests: 1,
                        tokens: 100,
                    };
                    if store.claim_quota(&claim, Some(u64::MAX / 4), None).is_ok() {
                        claims.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let rate = claims.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    println!(
        "{:<34} {writers} writers: {rate:>10.0} claims/s",
        "quota-share claims"
    );
    Ok(())
}
