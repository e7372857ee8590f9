//! The real server binary on a free port with the real models: the HTTP surface
//! end to end, without the Python clients (those are in tests/clients).

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

struct Server {
    child: Child,
    base: String,
    data_dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn models_dir() -> PathBuf {
    std::env::var_os("BASALT_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("models"))
}

fn basalt(data_dir: &PathBuf) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_basalt"));
    cmd.env("BASALT_DATA_DIR", data_dir)
        .env("BASALT_MODELS_DIR", models_dir());
    cmd.env(
        "BASALT_CONFIG",
        repo().join("tests/fixtures/basalt-test.toml"),
    );
    cmd
}

fn start() -> Server {
    let data_dir = std::env::temp_dir().join(format!(
        "basalt-it-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&data_dir).expect("temp data dir");
    let mut child = basalt(&data_dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the basalt binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(120);
    let base = loop {
        assert!(
            Instant::now() < deadline,
            "server did not print its address in time"
        );
        let line = lines
            .next()
            .expect("server exited before listening")
            .expect("readable stdout");
        if let Some(addr) = line.strip_prefix("basalt listening on ") {
            break addr.trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base,
        data_dir,
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn create_key(server: &Server, name: &str) -> Value {
    let out = basalt(&server.data_dir)
        .args(["keys", "create", "--name", name, "--json"])
        .output()
        .expect("keys create runs");
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("keys create --json prints JSON")
}

const CHAT: &str = "huggingfacetb.smollm2-135m-instruct-v1%3A0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_both_dialects_with_auth_limits_and_metering() {
    let server = start();
    let key = create_key(&server, "it");
    let token = key["bearer_token"]
        .as_str()
        .expect("bearer token")
        .to_string();
    let http = reqwest::Client::new();
    let post = |path: &str, body: Vec<u8>, bearer: &str| {
        http.post(format!("{}{path}", server.base))
            .header("authorization", format!("Bearer {bearer}"))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };

    let health = http
        .get(format!("{}/health", server.base))
        .send()
        .await
        .expect("health");
    assert_eq!(health.status(), 200);

    // Converse with a bearer key.
    let body = json!({"messages":[{"role":"user","content":[{"text":"Say hi."}]}],"inferenceConfig":{"maxTokens":8,"temperature":0}});
    let r = post(
        &format!("/model/{CHAT}/converse"),
        body.to_string().into_bytes(),
        &token,
    )
    .await
    .expect("converse");
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().contains_key("x-amzn-requestid"),
        "Bedrock responses carry x-amzn-RequestId"
    );
    let v: Value = r.json().await.expect("json");
    assert!(
        v["usage"]["outputTokens"]
            .as_u64()
            .is_some_and(|n| (1..=8).contains(&n)),
        "{v}"
    );
    assert!(
        v["output"]["message"]["content"][0]["text"].is_string(),
        "{v}"
    );

    // OpenAI chat with the same key.
    let body = json!({"model":"huggingfacetb.smollm2-135m-instruct-v1:0","messages":[{"role":"user","content":"Say hi."}],"max_tokens":8,"temperature":0});
    let r = post(
        "/v1/chat/completions",
        body.to_string().into_bytes(),
        &token,
    )
    .await
    .expect("chat");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["object"], "chat.completion");

    // Malformed JSON, an oversized body and a bad key get the dialect's error shapes.
    let r = post(
        &format!("/model/{CHAT}/converse"),
        b"{not json".to_vec(),
        &token,
    )
    .await
    .expect("bad json");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()
            .get("x-amzn-errortype")
            .and_then(|v| v.to_str().ok()),
        Some("ValidationException")
    );
    let big = vec![b' '; 5 * 1024 * 1024];
    let r = post(&format!("/model/{CHAT}/converse"), big, &token)
        .await
        .expect("big body");
    assert_eq!(
        r.status(),
        400,
        "an oversized body is a ValidationException, not a 413 or a reset"
    );
    let r = post(
        "/v1/chat/completions",
        body.to_string().into_bytes(),
        "bsk-wrong",
    )
    .await
    .expect("bad key");
    assert_eq!(r.status(), 401);
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["error"]["code"], "invalid_api_key");

    // The server still serves, and metering saw the two successful calls.
    let r = post(&format!("/model/{CHAT}/converse"), json!({"messages":[{"role":"user","content":[{"text":"Hi"}]}],"inferenceConfig":{"maxTokens":2}}).to_string().into_bytes(), &token).await.expect("after errors");
    assert_eq!(r.status(), 200);
    let mut rows = Value::Null;
    for _ in 0..50 {
        let out = basalt(&server.data_dir)
            .args(["usage", "--json"])
            .output()
            .expect("usage runs");
        rows = serde_json::from_slice::<Value>(&out.stdout).expect("usage --json prints JSON")
            ["rows"]
            .clone();
        let calls: u64 = rows.as_array().map_or(0, |r| {
            r.iter()
                .filter(|r| r["key_name"] == "it")
                .map(|r| r["invocations"].as_u64().unwrap_or(0))
                .sum()
        });
        if calls >= 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("metering did not record the calls: {rows}");
}

/// SIGTERM while streamed answers are in flight on both serving threads (the acceptor
/// hands connections out in turn, so four connections land on both): every answer is
/// streamed to its end, and the process then exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_lets_every_serving_thread_finish_its_answers() {
    let mut server = start();
    let key = create_key(&server, "stop");
    let token = key["bearer_token"]
        .as_str()
        .expect("bearer token")
        .to_string();
    let mut streams = Vec::new();
    for i in 0..4 {
        // A client per request: one connection each.
        let http = reqwest::Client::new();
        let body = json!({"model":"huggingfacetb.smollm2-135m-instruct-v1:0","stream":true,"max_tokens":40,"temperature":0,
            "messages":[{"role":"user","content":format!("Count from 1 to {}.", 30 + i)}]});
        let response = http
            .post(format!("{}/v1/chat/completions", server.base))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .expect("the streamed request is answered");
        assert_eq!(response.status(), 200, "request {i} was not accepted");
        streams.push(response);
    }
    let stopped = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(stopped.success(), "SIGTERM could not be sent");
    for (i, response) in streams.into_iter().enumerate() {
        let text = response
            .text()
            .await
            .unwrap_or_else(|e| panic!("stream {i} was cut off by the stop: {e}"));
        assert!(
            text.trim_end().ends_with("data: [DONE]"),
            "stream {i} did not run to its end after SIGTERM: {text}"
        );
        assert!(
            text.contains("\"finish_reason\":\"length\"")
                || text.contains("\"finish_reason\":\"stop\""),
            "stream {i} has no finish reason: {text}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().expect("wait on the server") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.success(),
        "the server exited with {status} after SIGTERM"
    );
}
