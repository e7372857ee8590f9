//! The playground: chat with any catalog model through ConverseStream, as the
//! signed-in key, streamed to the page as server-sent events (one per Converse stream
//! event, plus the answer's cost); compare two models side by side.

use std::collections::VecDeque;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures::StreamExt;
use minijinja::context;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::segment;
use crate::frames::FrameReader;
use crate::{Console, Signed};

pub async fn page(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
) -> Response {
    let core = &console.app().core;
    let models = super::overview::invocable_chat_models(
        &console,
        basalt_core::types::InferenceType::OnDemand,
    );
    let models: Vec<Value> = models
        .into_iter()
        .map(|m| {
            json!({
                "id": m.id, "name": m.name, "provider": m.provider,
                "state": super::overview::model_state(&console, m),
                "inputPrice": m.input_price_per_1k, "outputPrice": m.output_price_per_1k,
            })
        })
        .collect();
    let guardrails = console
        .call(&signed, Method::GET, "/guardrails?maxResults=100", None)
        .await
        .map(|v| v["guardrails"].clone())
        .unwrap_or(Value::Null);
    console.page(
        &signed,
        "playground.html",
        "playground",
        context! { models, guardrails, region => core.region() },
    )
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Turn {
    role: String,
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChatForm {
    model: String,
    #[serde(default)]
    system: String,
    messages: Vec<Turn>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    max_tokens: Option<u64>,
    #[serde(default)]
    stop: Vec<String>,
    guardrail_id: Option<String>,
    guardrail_version: Option<String>,
}

/// The ConverseStream body the form stands for (also what "view API request" shows).
fn converse_body(form: &ChatForm) -> Value {
    let messages: Vec<Value> = form
        .messages
        .iter()
        .map(|t| json!({"role": t.role, "content": [{"text": t.text}]}))
        .collect();
    let mut body = json!({ "messages": messages });
    if !form.system.trim().is_empty() {
        body["system"] = json!([{ "text": form.system }]);
    }
    let mut config = serde_json::Map::new();
    if let Some(t) = form.temperature {
        config.insert("temperature".into(), t.into());
    }
    if let Some(p) = form.top_p {
        config.insert("topP".into(), p.into());
    }
    if let Some(m) = form.max_tokens {
        config.insert("maxTokens".into(), m.into());
    }
    let stop: Vec<&String> = form.stop.iter().filter(|s| !s.is_empty()).collect();
    if !stop.is_empty() {
        config.insert("stopSequences".into(), json!(stop));
    }
    if !config.is_empty() {
        body["inferenceConfig"] = Value::Object(config);
    }
    if let Some(id) = form.guardrail_id.as_deref().filter(|g| !g.is_empty()) {
        body["guardrailConfig"] = json!({
            "guardrailIdentifier": id,
            "guardrailVersion": form.guardrail_version.as_deref().filter(|v| !v.is_empty()).unwrap_or("DRAFT"),
            "trace": "enabled",
        });
    }
    body
}

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

/// `POST /console/playground/stream` (JSON): ConverseStream as the signed-in key,
/// relayed as server-sent events.
pub async fn stream(
    State(console): State<Console>,
    Extension(signed): Extension<Signed>,
    Json(form): Json<ChatForm>,
) -> Response {
    let body = converse_body(&form);
    let path = format!("/model/{}/converse-stream", segment(&form.model));
    let failure = |status: StatusCode, message: String| {
        (status, Json(json!({ "message": message }))).into_response()
    };
    let response = match console
        .send(&signed, Method::POST, &path, Some(&body))
        .await
    {
        Ok(r) => r,
        Err(e) => return failure(e.status, e.to_string()),
    };
    if !response.status().is_success() {
        // The API's own error, read as the other pages read it.
        return match Console::read(response).await {
            Err(e) => failure(e.status, e.to_string()),
            Ok(_) => failure(StatusCode::BAD_GATEWAY, "the model call failed".into()),
        };
    }
    let prices = console
        .app()
        .core
        .resolve(&form.model)
        .map(|m| (m.input_price_per_1k, m.output_price_per_1k))
        .unwrap_or((0.0, 0.0));
    struct Relay {
        chunks: axum::body::BodyDataStream,
        reader: FrameReader,
        out: VecDeque<Bytes>,
        done: bool,
    }
    let relay = Relay {
        chunks: response.into_body().into_data_stream(),
        reader: FrameReader::default(),
        out: VecDeque::new(),
        done: false,
    };
    let events = futures::stream::unfold(relay, move |mut r| async move {
        loop {
            if let Some(b) = r.out.pop_front() {
                return Some((Ok::<Bytes, std::io::Error>(b), r));
            }
            if r.done {
                return None;
            }
            match r.reader.next_frame() {
                Ok(Some(frame)) if frame.kind == "event" => {
                    r.out.push_back(sse(&frame.name, &frame.payload));
                    if frame.name == "metadata" {
                        let usage = &frame.payload["usage"];
                        let cost = usage["inputTokens"].as_f64().unwrap_or(0.0) / 1000.0 * prices.0
                            + usage["outputTokens"].as_f64().unwrap_or(0.0) / 1000.0 * prices.1;
                        r.out.push_back(sse("cost", &json!({ "usd": cost })));
                    }
                    continue;
                }
                Ok(Some(frame)) => {
                    let text = frame.payload["message"]
                        .as_str()
                        .unwrap_or("the stream failed");
                    r.out.push_back(sse(
                        "error",
                        &json!({ "type": frame.name, "message": text }),
                    ));
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    r.out.push_back(sse("error", &json!({ "message": e })));
                    r.done = true;
                    continue;
                }
            }
            match r.chunks.next().await {
                Some(Ok(chunk)) => r.reader.push(&chunk),
                Some(Err(e)) => {
                    r.out.push_back(sse(
                        "error",
                        &json!({ "message": format!("the stream broke: {e}") }),
                    ));
                    r.done = true;
                }
                None => {
                    r.out.push_back(sse("done", &json!({})));
                    r.done = true;
                }
            }
        }
    });
    let mut response = Body::from_stream(events).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_a_converse_body() {
        let form: ChatForm = serde_json::from_value(json!({
            "model": "m", "system": "Be brief.", "messages": [{"role": "user", "text": "Hi"}],
            "temperature": 0.5, "maxTokens": 20, "stop": ["", "END"], "guardrailId": "g1"
        }))
        .expect("form");
        let body = converse_body(&form);
        assert_eq!(body["system"][0]["text"], "Be brief.");
        assert_eq!(body["messages"][0]["content"][0]["text"], "Hi");
        assert_eq!(body["inferenceConfig"]["maxTokens"], 20);
        assert_eq!(body["inferenceConfig"]["stopSequences"], json!(["END"]));
        assert_eq!(body["guardrailConfig"]["guardrailVersion"], "DRAFT");
        assert!(body["inferenceConfig"].get("topP").is_none());
    }
}
