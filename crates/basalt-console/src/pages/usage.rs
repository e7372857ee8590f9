//! Usage and cost (administrator keys, as the usage report's route): by key, model
//! and mode, per hour or day, as a chart and a table, the report's recommendations,
//! and the same rows as CSV.

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin_only;
use super::overview::basalt_now_ms;
use crate::{ApiFailure, Console, Signed};

#[derive(Debug, Default, Deserialize)]
pub struct UsageQuery {
    range: Option<String>,
    by: Option<String>,
}

const RANGES: &[(&str, i64)] = &[
    ("1h", 3_600_000),
    ("24h", 86_400_000),
    ("7d", 7 * 86_400_000),
    ("30d", 30 * 86_400_000),
];

impl UsageQuery {
    fn range(&self) -> (&str, i64) {
        RANGES
            .iter()
            .find(|(n, _)| Some(*n) == self.range.as_deref())
            .copied()
            .unwrap_or(RANGES[1])
    }
    fn by(&self) -> &str {
        match self.by.as_deref() {
            Some("day") => "day",
            Some("none") => "none",
            _ => "hour",
        }
    }
}

async fn report(console: &Console, signed: &Signed, q: &UsageQuery) -> Result<Value, ApiFailure> {
    let now = basalt_now_ms();
    let since = now - q.range().1;
    console
        .call(
            signed,
            Method::GET,
            &format!("/basalt/v1/usage?since={since}&until={now}&by={}", q.by()),
            None,
        )
        .await
}

/// Cost and calls per bucket (all groups summed), for the chart.
fn chart(report: &Value) -> Value {
    let mut buckets: std::collections::BTreeMap<i64, (f64, u64)> = Default::default();
    for g in report["groups"].as_array().into_iter().flatten() {
        let Some(b) = g["bucket_start_ms"].as_i64() else {
            continue;
        };
        let e = buckets.entry(b / 1000).or_default();
        e.0 += g["cost_usd"].as_f64().unwrap_or(0.0);
        e.1 += g["invocations"].as_u64().unwrap_or(0);
    }
    if buckets.is_empty() {
        return Value::Null;
    }
    let x: Vec<i64> = buckets.keys().copied().collect();
    json!({
        "x": x,
        "series": [
            {"label": "requests", "values": buckets.values().map(|v| v.1).collect::<Vec<_>>()},
            {"label": "cost (USD)", "scale": "usd", "values": buckets.values().map(|v| v.0).collect::<Vec<_>>()},
        ]
    })
}

pub async fn page(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<UsageQuery>,
) -> Response {
    if let Err(r) = admin_only(&console, &signed, "usage") {
        return r;
    }
    let (report, error) = match report(&console, &signed, &q).await {
        Ok(r) => (r, None),
        Err(e) => (Value::Null, Some(e.to_string())),
    };
    let ranges: Vec<&str> = RANGES.iter().map(|r| r.0).collect();
    console.page(
        &signed,
        "usage.html",
        "usage",
        context! {
            chart => chart(&report), groups => report["groups"], recommendations => report["recommendations"], error, ranges,
            range => q.range().0, by => q.by(),
        },
    )
}

/// A CSV cell: quoted, and a leading `= + - @` defused (spreadsheets run formulas).
fn cell(value: &Value) -> String {
    let text = match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r'])
        && !matches!(value, Value::Number(_))
    {
        format!("'{text}")
    } else {
        text
    };
    format!("\"{}\"", text.replace('"', "\"\""))
}

pub async fn csv(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Query(q): Query<UsageQuery>,
) -> Response {
    if let Err(r) = admin_only(&console, &signed, "usage") {
        return r;
    }
    let report = match report(&console, &signed, &q).await {
        Ok(r) => r,
        Err(e) => return console.error_page(&signed, "usage", &e),
    };
    let columns = [
        "bucket_start_ms",
        "key_name",
        "model_id",
        "inference_type",
        "inference_profile",
        "model_alias",
        "agent",
        "invocations",
        "errors",
        "throttles",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "p50_latency_ms",
        "p99_latency_ms",
    ];
    let mut out = columns.join(",");
    out.push('\n');
    for g in report["groups"].as_array().into_iter().flatten() {
        let row: Vec<String> = columns.iter().map(|c| cell(&g[*c])).collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    let mut response = out.into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!(
        "attachment; filename=\"basalt-usage-{}-by-{}.csv\"",
        q.range().0,
        q.by()
    )) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_quoted_and_formulas_defused() {
        assert_eq!(cell(&json!("a\"b")), "\"a\"\"b\"");
        assert_eq!(cell(&json!("=HYPERLINK(1)")), "\"'=HYPERLINK(1)\"");
        assert_eq!(cell(&json!(-3)), "\"-3\"");
        assert_eq!(cell(&Value::Null), "\"\"");
    }
}
