//! The overview: health, the models and whether their weights are loaded, and (for
//! administrator keys, who may read the usage report) the last hour minute by
//! minute: requests, tokens, errors, throttles, latency.

use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use axum::Extension;
use minijinja::context;
use serde_json::{json, Value};

use crate::{Console, Signed};

/// Where a catalog model runs and whether it can answer now.
pub fn model_state(console: &Console, entry: &basalt_core::catalog::ModelEntry) -> &'static str {
    use basalt_core::catalog::EngineKind;
    match entry.engine {
        EngineKind::Remote => "remote",
        _ if entry.is_embedding() => "local",
        _ => {
            if console.app().core.local_chat_engine(entry).is_some() {
                "loaded"
            } else {
                "not loaded"
            }
        }
    }
}

/// The chat models a caller may invoke by model ID in this mode (not embedding, not
/// custom, not past end of life), those that can answer now first.
pub fn invocable_chat_models(
    console: &Console,
    mode: basalt_core::types::InferenceType,
) -> Vec<&basalt_core::catalog::ModelEntry> {
    let now = time::OffsetDateTime::now_utc();
    let mut models: Vec<&basalt_core::catalog::ModelEntry> = console
        .app()
        .core
        .catalog()
        .models()
        .filter(|m| {
            !m.is_embedding()
                && !m.custom
                && m.lifecycle.status_at(now) != basalt_core::catalog::LifecycleStatus::Eol
                && (m.inference_types.is_empty() || m.inference_types.contains(&mode))
        })
        .collect();
    models.sort_by_key(|m| {
        (
            model_state(console, m) == "not loaded",
            m.lifecycle.status_at(now) != basalt_core::catalog::LifecycleStatus::Active,
        )
    });
    models
}

/// Per-minute series over `[since, until)` from a `by=minute` usage report.
fn minute_series(report: &Value, since: i64, until: i64) -> Value {
    let start = since - since.rem_euclid(60_000);
    // Every minute that overlaps the period, the current (unfinished) one included.
    let n = ((until - start + 59_999) / 60_000).max(1) as usize;
    let mut x = Vec::with_capacity(n);
    let (mut req, mut tok, mut err, mut thr) =
        (vec![0u64; n], vec![0u64; n], vec![0u64; n], vec![0u64; n]);
    let mut p50 = vec![Value::Null; n];
    let mut p99 = vec![Value::Null; n];
    for i in 0..n {
        x.push((start + i as i64 * 60_000) / 1000);
    }
    for g in report["groups"].as_array().into_iter().flatten() {
        let Some(b) = g["bucket_start_ms"].as_i64() else {
            continue;
        };
        let i = ((b - start) / 60_000) as usize;
        if i >= n {
            continue;
        }
        let n = |k: &str| g[k].as_u64().unwrap_or(0);
        req[i] += n("invocations");
        tok[i] += n("input_tokens") + n("output_tokens");
        err[i] += n("errors") - n("throttles").min(n("errors"));
        thr[i] += n("throttles");
        // The slowest group's percentile in that minute (percentiles do not add up).
        for (series, key) in [(&mut p50, "p50_latency_ms"), (&mut p99, "p99_latency_ms")] {
            if let Some(v) = g[key].as_u64() {
                if series[i].as_u64().is_none_or(|old| v > old) {
                    series[i] = v.into();
                }
            }
        }
    }
    json!({
        "traffic": {"x": x, "series": [
            {"label": "requests / min", "values": req},
            {"label": "errors / min", "values": err},
            {"label": "throttles / min", "values": thr},
        ]},
        "tokens": {"x": x, "series": [{"label": "tokens / min", "values": tok}]},
        "latency": {"x": x, "series": [
            {"label": "p50 ms (slowest group)", "values": p50},
            {"label": "p99 ms (slowest group)", "values": p99},
        ]},
    })
}

fn totals(report: &Value) -> Value {
    let mut t = json!({"invocations": 0, "errors": 0, "throttles": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0});
    for g in report["groups"].as_array().into_iter().flatten() {
        for k in [
            "invocations",
            "errors",
            "throttles",
            "input_tokens",
            "output_tokens",
        ] {
            t[k] = (t[k].as_u64().unwrap_or(0) + g[k].as_u64().unwrap_or(0)).into();
        }
        t["cost_usd"] =
            (t["cost_usd"].as_f64().unwrap_or(0.0) + g["cost_usd"].as_f64().unwrap_or(0.0)).into();
    }
    t
}

pub async fn page(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
) -> Response {
    let core = &console.app().core;
    let models: Vec<Value> = core
        .catalog()
        .models()
        .map(|m| {
            json!({
                "id": m.id, "name": m.name, "provider": m.provider,
                "state": model_state(&console, m),
                "kind": if m.is_embedding() { "embedding" } else { "chat" },
            })
        })
        .collect();
    let loaded = models.iter().filter(|m| m["state"] == "loaded").count();
    let mut usage = Value::Null;
    let mut error = None;
    if signed.principal.is_admin {
        let now = basalt_now_ms();
        let since = now - 3_600_000;
        let by_minute = console
            .call(
                &signed,
                Method::GET,
                &format!("/basalt/v1/usage?since={since}&until={now}&by=minute"),
                None,
            )
            .await;
        let whole = console
            .call(
                &signed,
                Method::GET,
                &format!("/basalt/v1/usage?since={since}&until={now}"),
                None,
            )
            .await;
        match (by_minute, whole) {
            (Ok(m), Ok(w)) => {
                let t = totals(&w);
                let minutes = 60.0;
                usage = json!({
                    "charts": minute_series(&m, since, now),
                    "totals": t,
                    "requestsPerSecond": t["invocations"].as_f64().unwrap_or(0.0) / (minutes * 60.0),
                    "tokensPerSecond": (t["input_tokens"].as_f64().unwrap_or(0.0) + t["output_tokens"].as_f64().unwrap_or(0.0)) / (minutes * 60.0),
                    "groups": w["groups"],
                });
            }
            (Err(e), _) | (_, Err(e)) => error = Some(e.to_string()),
        }
    }
    console.page(
        &signed,
        "overview.html",
        "overview",
        context! { models, loaded, usage, error, version => env!("CARGO_PKG_VERSION") },
    )
}

/// Now, in unix milliseconds.
pub fn basalt_now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}
