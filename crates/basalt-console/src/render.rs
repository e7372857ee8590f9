//! Pages from minijinja templates embedded in the binary. Every `.html` template is
//! auto-escaped: text from users, documents and models is shown as text.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::{context, Environment, Value};

use crate::{Console, Signed};

/// The templates, by name.
const TEMPLATES: &[(&str, &str)] = &[
    ("base.html", include_str!("../templates/base.html")),
    ("macros.html", include_str!("../templates/macros.html")),
    ("sign_in.html", include_str!("../templates/sign_in.html")),
    ("error.html", include_str!("../templates/error.html")),
    (
        "error_fragment.html",
        include_str!("../templates/error_fragment.html"),
    ),
    ("overview.html", include_str!("../templates/overview.html")),
    (
        "playground.html",
        include_str!("../templates/playground.html"),
    ),
    ("models.html", include_str!("../templates/models.html")),
    ("keys.html", include_str!("../templates/keys.html")),
    ("usage.html", include_str!("../templates/usage.html")),
    (
        "guardrails.html",
        include_str!("../templates/guardrails.html"),
    ),
    (
        "guardrail.html",
        include_str!("../templates/guardrail.html"),
    ),
    (
        "guardrail_test.html",
        include_str!("../templates/guardrail_test.html"),
    ),
    (
        "knowledge_bases.html",
        include_str!("../templates/knowledge_bases.html"),
    ),
    (
        "knowledge_base.html",
        include_str!("../templates/knowledge_base.html"),
    ),
    (
        "ingestion_job.html",
        include_str!("../templates/ingestion_job.html"),
    ),
    (
        "retrieve_results.html",
        include_str!("../templates/retrieve_results.html"),
    ),
    ("batch.html", include_str!("../templates/batch.html")),
    (
        "batch_job.html",
        include_str!("../templates/batch_job.html"),
    ),
    ("agents.html", include_str!("../templates/agents.html")),
    ("agent.html", include_str!("../templates/agent.html")),
    (
        "agent_test.html",
        include_str!("../templates/agent_test.html"),
    ),
    (
        "customization.html",
        include_str!("../templates/customization.html"),
    ),
    (
        "customization_job.html",
        include_str!("../templates/customization_job.html"),
    ),
];

pub struct Templates {
    env: Environment<'static>,
}

/// Unix milliseconds (or seconds, when small) as `YYYY-MM-DD HH:MM:SS` UTC.
fn when(value: Value) -> String {
    let Some(n) = value
        .as_i64()
        .or_else(|| f64::try_from(value.clone()).ok().map(|f| f as i64))
    else {
        // Already a time string (RFC 3339 from the API): shown without its fraction.
        return value
            .as_str()
            .map(|s| s.replace('T', " ").chars().take(19).collect())
            .unwrap_or_default();
    };
    let ms = if n < 100_000_000_000 { n * 1000 } else { n };
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

fn usd(value: Value) -> String {
    let v = f64::try_from(value).unwrap_or(0.0);
    if v != 0.0 && v.abs() < 0.01 {
        format!("${v:.6}")
    } else {
        format!("${v:.2}")
    }
}

fn pretty(value: Value) -> String {
    serde_json::to_value(&value)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_default()
}

fn fixed(value: Value, digits: Option<usize>) -> String {
    let v = f64::try_from(value).unwrap_or(0.0);
    format!("{v:.*}", digits.unwrap_or(2))
}

fn compact(value: Value) -> String {
    serde_json::to_string(&value).unwrap_or_default()
}

impl Templates {
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            if let Err(e) = env.add_template(name, source) {
                // A template that does not parse is a bug caught by the unit test.
                tracing::error!(template = name, error = %e, "console template does not parse");
            }
        }
        env.add_function("asset", |name: &str| crate::assets::url(name));
        env.add_function("seg", |value: &str| crate::api::segment(value));
        env.add_filter("when", when);
        env.add_filter("usd", usd);
        env.add_filter("pretty", pretty);
        env.add_filter("compact", compact);
        env.add_filter("fixed", fixed);
        Self { env }
    }

    fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

impl Default for Templates {
    fn default() -> Self {
        Self::new()
    }
}

impl Console {
    /// A whole page as the signed-in key sees it.
    pub fn page(&self, signed: &Signed, template: &str, nav: &str, ctx: Value) -> Response {
        self.page_with_status(StatusCode::OK, signed, template, nav, ctx)
    }

    pub fn page_with_status(
        &self,
        status: StatusCode,
        signed: &Signed,
        template: &str,
        nav: &str,
        ctx: Value,
    ) -> Response {
        let me = context! {
            name => signed.principal.key_name,
            key_id => signed.principal.key_id,
            admin => signed.principal.is_admin,
            tenant => signed.principal.is_tenant(),
        };
        let ctx = context! { me, csrf => signed.csrf, nav, ..ctx };
        self.html(status, template, ctx)
    }

    /// A template rendered as is (a fragment or the sign-in page).
    pub fn html(&self, status: StatusCode, template: &str, ctx: Value) -> Response {
        match self.0.templates.render(template, ctx) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!(template, error = %e, "console page failed to render");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the page failed to render (see the server log)",
                )
                    .into_response()
            }
        }
    }

    /// A page that says what went wrong, with the API's message.
    pub fn error_page(&self, signed: &Signed, nav: &str, failure: &crate::ApiFailure) -> Response {
        self.page_with_status(
            failure.status,
            signed,
            "error.html",
            nav,
            context! { failure => failure.to_string() },
        )
    }

    /// A fragment with just the error (htmx targets).
    pub fn error_fragment(&self, failure: &crate::ApiFailure) -> Response {
        // htmx swaps only 2xx answers by default: the message is the content.
        self.html(
            StatusCode::OK,
            "error_fragment.html",
            context! { error => failure.to_string() },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_parses() {
        let mut env = Environment::new();
        for (name, source) in TEMPLATES {
            env.add_template(name, source)
                .unwrap_or_else(|e| panic!("template {name} does not parse: {e}"));
        }
    }

    #[test]
    fn filters_format_values() {
        assert_eq!(when(Value::from(0)), "1970-01-01 00:00:00");
        assert_eq!(
            when(Value::from(1_700_000_000_000i64)),
            "2023-11-14 22:13:20"
        );
        assert_eq!(
            when(Value::from("2024-01-02T03:04:05.123Z")),
            "2024-01-02 03:04:05"
        );
        assert_eq!(usd(Value::from(1.5)), "$1.50");
        assert_eq!(usd(Value::from(0.000123)), "$0.000123");
    }
}
