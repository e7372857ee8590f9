//! Every JSON request body parser, through the real routes: a route from a fixed list
//! (each dialect's body-taking routes), a body from the bytes, sent as an
//! administrator key through `basalt_edge::call_as` to the whole API (an in-memory
//! store, an echo model; no network, no model weights), its answer read to the end
//! (streams included). Whatever the body, the answer is a response in the dialect's
//! shape and never a 500: a client's mistake is a 4xx.
#![no_main]

use std::path::Path;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use basalt_core::keys::{KeyService, MasterKey, Principal};
use basalt_core::metering::Meter;
use basalt_core::services::Services;
use basalt_edge::AppState;
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
region = "us-east-1"
[[models]]
id = "basalt.echo-v1:0"
name = "echo"
provider = "Basalt"
engine = "echo"
native_body = "meta-llama"
input_modalities = ["TEXT"]
output_modalities = ["TEXT"]
streaming = true
tools = false
lifecycle = { status = "ACTIVE", start_of_life = "2024-11-01T00:00:00Z" }
price = { input_per_1k = 0.001, output_per_1k = 0.002 }
"#;

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/model/basalt.echo-v1:0/converse"),
    ("POST", "/model/basalt.echo-v1:0/converse-stream"),
    ("POST", "/model/basalt.echo-v1:0/invoke"),
    (
        "POST",
        "/model/basalt.echo-v1:0/invoke-with-response-stream",
    ),
    ("POST", "/model/basalt.echo-v1:0/count-tokens"),
    ("POST", "/guardrail/g1/version/DRAFT/apply"),
    ("POST", "/guardrails"),
    ("PUT", "/guardrails/g1"),
    ("POST", "/guardrails/g1"),
    ("POST", "/model-invocation-job"),
    ("POST", "/model-customization-jobs"),
    ("POST", "/model-import-jobs"),
    ("POST", "/model-customization/custom-model-deployments"),
    ("POST", "/inference-profiles"),
    ("POST", "/provisioned-model-throughput"),
    ("PATCH", "/provisioned-model-throughput/p1"),
    ("POST", "/knowledgebases/"),
    ("PUT", "/knowledgebases/KB1"),
    ("POST", "/knowledgebases/KB1/datasources/"),
    ("POST", "/knowledgebases/KB1/datasources/DS1/ingestionjobs/"),
    ("POST", "/knowledgebases/KB1/datasources/DS1/documents"),
    ("POST", "/knowledgebases/KB1/retrieve"),
    ("POST", "/retrieveAndGenerate"),
    ("POST", "/agents/"),
    ("PUT", "/agents/A1/"),
    ("POST", "/agents/A1/agentversions/DRAFT/actiongroups/"),
    ("POST", "/agents/A1/agentaliases/"),
    (
        "POST",
        "/agents/A1/agentAliases/TSTALIASID/sessions/s1/text",
    ),
    ("POST", "/agents/s1"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/v1/embeddings"),
    ("POST", "/v1/responses"),
    ("POST", "/v1/messages"),
    ("POST", "/v1/messages/count_tokens"),
    ("POST", "/basalt/v1/keys"),
    ("PUT", "/basalt/v1/keys/key-1/limits"),
    ("PUT", "/basalt/v1/keys/key-1/policy"),
    ("PUT", "/basalt/v1/keys/key-1/retrieval-filter"),
];

struct App {
    runtime: tokio::runtime::Runtime,
    state: AppState,
    api: axum::Router,
    admin: Principal,
}

fn app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let config =
            basalt_core::config::ConfigFile::parse(CONFIG).expect("the fuzz config parses");
        let store =
            Arc::new(basalt_store::SqliteStore::open_in_memory().expect("an in-memory store"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let meter = Meter::start(store.clone());
        let keys = Arc::new(KeyService::new(
            store.clone(),
            MasterKey::from_bytes([7; 32]),
        ));
        let services = runtime
            .block_on(async {
                Services::start(&config, Path::new("/nonexistent"), meter, keys, store)
            })
            .expect("the services start");
        let state = AppState::new(services, None);
        let api = basalt_edge::api_routes().with_state(state.clone());
        App {
            runtime,
            state,
            api,
            admin: Principal {
                key_id: "key-fuzz".into(),
                key_name: "fuzz".into(),
                is_admin: true,
                limits: Default::default(),
                retrieval_filter: None,
                policy: None,
            },
        }
    })
}

#[derive(Debug, Arbitrary)]
struct Input {
    route: u8,
    body: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let app = app();
    let (method, path) = ROUTES[usize::from(input.route) % ROUTES.len()];
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("a method"))
        .uri(path)
        .header("content-type", "application/json")
        .body(Body::from(input.body.clone()))
        .expect("a request");
    let (status, body) = app.runtime.block_on(async {
        let response = basalt_edge::call_as(&app.state, &app.api, app.admin.clone(), request).await;
        let status = response.status();
        let body = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            axum::body::to_bytes(response.into_body(), 64 << 20),
        )
        .await;
        (status, body)
    });
    assert!(
        body.is_ok(),
        "{method} {path}: the answer did not end within 20 s"
    );
    assert_ne!(
        status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{method} {path}: a 500 for the body {:?}: {:?}",
        String::from_utf8_lossy(&input.body),
        body.ok()
            .and_then(|b| b.ok())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
    );
});
