//! The model catalog: pinned, versioned model IDs with their capabilities, lifecycle
//! and prices, validated from the configuration.
//!
//! Every model ID names exactly one set of weights, pinned by SHA-256; two IDs may share
//! weights (a LEGACY alias of the same file), but no ID can be re-pointed without
//! changing the configuration that pins it.

use std::collections::BTreeMap;

use time::OffsetDateTime;

use crate::config::{ConfigFile, WeightsConfig};
use crate::types::{CustomizationType, InferenceType, Modality};
use crate::CoreError;

/// What runs a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// A GGUF chat model on llama.cpp.
    LlamaCpp,
    /// A BERT sentence-embedding model (sentence-transformers layout), run on ONNX Runtime.
    OnnxBert,
    /// A model served elsewhere, reached over HTTP (see [`crate::config::UpstreamConfig`]).
    Remote,
    /// No model: answers with the request's last user message at once. For measuring
    /// the gateway's own overhead and for smoke tests.
    Echo,
}

/// The native InvokeModel body a model takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeBody {
    /// `{"prompt","max_gen_len","temperature","top_p"}` → `{"generation",...}`.
    MetaLlama,
    /// `{"inputText","dimensions","normalize"}` → `{"embedding","inputTextTokenCount"}`.
    TitanEmbed,
    /// A reranking model (Amazon Rerank, Cohere Rerank on Bedrock):
    /// `{"query","documents","top_n"}` → `{"results":[{"index","relevance_score"}]}`.
    Rerank,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleStatus {
    Active,
    Legacy,
    Eol,
}

impl LifecycleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LifecycleStatus::Active => "ACTIVE",
            LifecycleStatus::Legacy => "LEGACY",
            LifecycleStatus::Eol => "EOL",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    pub status: LifecycleStatus,
    pub start_of_life: Option<OffsetDateTime>,
    pub legacy_time: Option<OffsetDateTime>,
    pub end_of_life: Option<OffsetDateTime>,
    pub replacement: Option<String>,
}

impl Lifecycle {
    /// The status at `now`: dates that have passed win over the configured status.
    pub fn status_at(&self, now: OffsetDateTime) -> LifecycleStatus {
        if self.status == LifecycleStatus::Eol || self.end_of_life.is_some_and(|t| t <= now) {
            LifecycleStatus::Eol
        } else if self.status == LifecycleStatus::Legacy
            || self.legacy_time.is_some_and(|t| t <= now)
        {
            LifecycleStatus::Legacy
        } else {
            LifecycleStatus::Active
        }
    }
}

/// A validated catalog entry.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    pub id: String,
    pub name: String,
    pub provider: String,
    pub engine: EngineKind,
    /// Key into [`Catalog::weights`]; `None` for [`EngineKind::Echo`] and
    /// [`EngineKind::Remote`].
    pub weights: Option<String>,
    /// Where a [`EngineKind::Remote`] model is served (one or more deployments).
    pub deployments: Vec<crate::config::UpstreamConfig>,
    pub routing: crate::config::RoutingConfig,
    /// Models that answer when this one's deployments all failed.
    pub fallbacks: Vec<String>,
    pub native_body: NativeBody,
    pub input_modalities: Vec<Modality>,
    pub output_modalities: Vec<Modality>,
    pub streaming: bool,
    pub tools: bool,
    pub inference_types: Vec<InferenceType>,
    pub customizations: Vec<CustomizationType>,
    pub default_max_tokens: u32,
    pub max_input_tokens: Option<u32>,
    /// Vector length of a remote embedding model.
    pub dimensions: Option<u32>,
    pub lifecycle: Lifecycle,
    pub input_price_per_1k: f64,
    pub output_price_per_1k: f64,
    /// Price of 1,000 input tokens served from the prompt cache.
    pub cache_read_price_per_1k: f64,
    /// Hourly price of one provisioned model unit.
    pub provisioned_unit_hour_price: f64,
    /// A custom or imported model: invocable only through provisioned throughput.
    pub custom: bool,
}

impl ModelEntry {
    pub fn is_embedding(&self) -> bool {
        self.output_modalities.contains(&Modality::Embedding)
    }

    /// A reranking model: it scores documents against a query (Rerank, and
    /// rerankingConfiguration in retrieval), and does not write text.
    pub fn is_rerank(&self) -> bool {
        self.native_body == NativeBody::Rerank
    }

    /// Cost in US dollars of an invocation.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        self.cost_with_cache(input_tokens, 0, output_tokens)
    }

    /// Cost in US dollars of an invocation of which `cache_read_tokens` of the
    /// input came from the prompt cache (priced at the cache-read price).
    pub fn cost_with_cache(
        &self,
        input_tokens: u64,
        cache_read_tokens: u64,
        output_tokens: u64,
    ) -> f64 {
        let cached = cache_read_tokens.min(input_tokens);
        ((input_tokens - cached) as f64 * self.input_price_per_1k
            + cached as f64 * self.cache_read_price_per_1k
            + output_tokens as f64 * self.output_price_per_1k)
            / 1000.0
    }
}

/// The validated catalog.
#[derive(Debug, Clone)]
pub struct Catalog {
    models: BTreeMap<String, ModelEntry>,
    weights: BTreeMap<String, WeightsConfig>,
    /// Alias → catalog model ID.
    aliases: BTreeMap<String, String>,
}

/// The inference types a catalog entry may list (`BATCH` is every model's).
const CATALOG_INFERENCE_TYPES: &[InferenceType] =
    &[InferenceType::OnDemand, InferenceType::Provisioned];

/// A catalog list of named values, each parsed; `field` and the allowed values in
/// the error.
fn parse_values<T: Copy>(
    id: &str,
    field: &str,
    values: &[String],
    parse: impl Fn(&str) -> Option<T>,
    allowed: &[&str],
) -> Result<Vec<T>, CoreError> {
    values
        .iter()
        .map(|v| {
            parse(v).ok_or_else(|| {
                invalid(
                    id,
                    format!("{field} has {v:?}; allowed: {}", allowed.join(", ")),
                )
            })
        })
        .collect()
}

fn invalid(id: &str, what: impl std::fmt::Display) -> CoreError {
    CoreError::Validation(format!("invalid configuration for model {id}: {what}"))
}

fn parse_time(
    id: &str,
    field: &str,
    value: &Option<String>,
) -> Result<Option<OffsetDateTime>, CoreError> {
    value
        .as_deref()
        .map(|v| {
            OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339).map_err(|e| {
                invalid(
                    id,
                    format!("lifecycle.{field} {v:?} is not an RFC 3339 time: {e}"),
                )
            })
        })
        .transpose()
}

/// `provider.name-vN:M` (or `-vN-N:M`) with lowercase ASCII, digits, `.`, `-` and `_`.
fn is_pinned_model_id(id: &str) -> bool {
    let Some((body, minor)) = id.rsplit_once(':') else {
        return false;
    };
    let Some((head, major)) = body.rsplit_once("-v") else {
        return false;
    };
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    number(minor)
        // Bedrock writes a dotted major version with dashes: `cohere.rerank-v3-5:0`.
        && major.split('-').all(number)
        && head.contains('.')
        && head
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl Catalog {
    /// Validates the configuration into a catalog.
    pub fn from_config(config: &ConfigFile) -> Result<Self, CoreError> {
        for (name, w) in &config.weights {
            if w.files.is_empty() {
                return Err(CoreError::Validation(format!(
                    "invalid configuration: weights.{name} lists no files"
                )));
            }
            for f in &w.files {
                if f.sha256.len() != 64 || !f.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(CoreError::Validation(format!(
                        "invalid configuration: weights.{name} file {} has sha256 {:?}, expected 64 hex digits",
                        f.path, f.sha256
                    )));
                }
                if f.path.contains("..") || f.path.starts_with('/') {
                    return Err(CoreError::Validation(format!(
                        "invalid configuration: weights.{name} file path {:?} must be relative, without ..",
                        f.path
                    )));
                }
            }
        }
        let mut models = BTreeMap::new();
        for m in &config.models {
            let id = m.id.as_str();
            if !is_pinned_model_id(id) {
                return Err(invalid(
                    id,
                    "a model ID must be pinned and versioned, like provider.name-v1:0",
                ));
            }
            let engine = match m.engine.as_str() {
                "llama.cpp" => EngineKind::LlamaCpp,
                // llama.cpp-bert: the engine's name while BERT ran on llama.cpp (older configs).
                "onnxruntime-bert" | "llama.cpp-bert" => EngineKind::OnnxBert,
                "remote" => EngineKind::Remote,
                "echo" => EngineKind::Echo,
                other => {
                    return Err(invalid(
                        id,
                        format!(
                        "engine {other:?} is not one of llama.cpp, onnxruntime-bert, remote, echo"
                    ),
                    ))
                }
            };
            let remote = engine == EngineKind::Remote;
            let has_upstream = m.upstream.is_some() || !m.deployments.is_empty();
            if remote && m.upstream.is_some() == !m.deployments.is_empty() {
                return Err(invalid(
                    id,
                    "a remote model needs exactly one of [models.upstream] or deployments = [...]",
                ));
            }
            if !remote && (has_upstream || !m.fallbacks.is_empty()) {
                return Err(invalid(
                    id,
                    "only a remote model has an upstream, deployments or fallbacks; remove them",
                ));
            }
            let embedding = m.output_modalities.iter().any(|o| o == "EMBEDDING");
            let rerank = m.native_body == "rerank";
            let apis = if embedding {
                basalt_providers::EmbeddingAdapter::APIS
            } else if rerank {
                basalt_providers::RerankAdapter::APIS
            } else {
                basalt_providers::ChatAdapter::APIS
            };
            for u in m.upstream.iter().chain(&m.deployments) {
                if !apis.contains(&u.api.as_str()) {
                    return Err(invalid(
                        id,
                        format!(
                            "upstream api {:?} is not one of{}: {}",
                            u.api,
                            if embedding {
                                " the APIs with embeddings"
                            } else if rerank {
                                " the APIs with reranking"
                            } else {
                                ""
                            },
                            apis.join(", ")
                        ),
                    ));
                }
                if !(u.base_url.starts_with("http://") || u.base_url.starts_with("https://")) {
                    return Err(invalid(
                        id,
                        "upstream base_url must be an http:// or https:// URL",
                    ));
                }
            }
            match (&m.weights, engine) {
                (Some(_), EngineKind::Echo | EngineKind::Remote) => {
                    return Err(invalid(
                        id,
                        "echo and remote models have no weights; remove weights",
                    ))
                }
                (None, EngineKind::LlamaCpp | EngineKind::OnnxBert) => {
                    return Err(invalid(id, "weights is required: a key of [weights]"))
                }
                (Some(w), _) if !config.weights.contains_key(w) => {
                    return Err(invalid(
                        id,
                        format!("weights {w:?} is not defined under [weights]"),
                    ))
                }
                _ => {}
            }
            let native_body = match m.native_body.as_str() {
                "meta-llama" => NativeBody::MetaLlama,
                "titan-embed" => NativeBody::TitanEmbed,
                "rerank" => NativeBody::Rerank,
                other => {
                    return Err(invalid(
                        id,
                        format!(
                            "native_body {other:?} is not one of meta-llama, titan-embed, rerank"
                        ),
                    ))
                }
            };
            if rerank && (engine != EngineKind::Remote || embedding || m.tools || m.streaming) {
                return Err(invalid(
                    id,
                    "a rerank model (native_body rerank) is served by a remote provider (engine remote, api cohere or bedrock), outputs TEXT, and has no tools or streaming",
                ));
            }
            if engine != EngineKind::Echo
                && engine != EngineKind::Remote
                && embedding != (engine == EngineKind::OnnxBert)
                || embedding != (native_body == NativeBody::TitanEmbed)
                || (engine == EngineKind::Echo && embedding)
            {
                return Err(invalid(id, "embedding models use engine onnxruntime-bert or remote and native_body titan-embed; chat models llama.cpp, remote or echo and meta-llama"));
            }
            if (remote && embedding) != m.dimensions.is_some() {
                return Err(invalid(
                    id,
                    "dimensions (the vector length) is required for a remote embedding model, and only there",
                ));
            }
            if remote && (embedding || rerank) && !m.fallbacks.is_empty() {
                return Err(invalid(id, "fallbacks are for chat models"));
            }
            let modalities: Vec<&str> = Modality::ALL.iter().map(|m| m.as_str()).collect();
            let input_modalities = parse_values(
                id,
                "input_modalities",
                &m.input_modalities,
                Modality::parse,
                &modalities,
            )?;
            let output_modalities = parse_values(
                id,
                "output_modalities",
                &m.output_modalities,
                Modality::parse,
                &modalities,
            )?;
            let inference_names: Vec<&str> =
                CATALOG_INFERENCE_TYPES.iter().map(|t| t.as_str()).collect();
            let inference_types = parse_values(
                id,
                "inference_types",
                &m.inference_types,
                |v| InferenceType::parse(v).filter(|t| CATALOG_INFERENCE_TYPES.contains(t)),
                &inference_names,
            )?;
            let customization_names: Vec<&str> =
                CustomizationType::ALL.iter().map(|c| c.as_str()).collect();
            let customizations = parse_values(
                id,
                "customizations",
                &m.customizations,
                CustomizationType::parse,
                &customization_names,
            )?;
            if m.tools && !matches!(engine, EngineKind::LlamaCpp | EngineKind::Remote) {
                return Err(invalid(
                    id,
                    "tool use needs a chat model on llama.cpp or a remote one",
                ));
            }
            let status = match m.lifecycle.status.as_str() {
                "ACTIVE" => LifecycleStatus::Active,
                "LEGACY" => LifecycleStatus::Legacy,
                "EOL" => LifecycleStatus::Eol,
                other => {
                    return Err(invalid(
                        id,
                        format!("lifecycle.status {other:?} is not ACTIVE, LEGACY or EOL"),
                    ))
                }
            };
            if status != LifecycleStatus::Active && m.lifecycle.replacement.is_none() {
                return Err(invalid(
                    id,
                    "a LEGACY or EOL model must name its replacement",
                ));
            }
            if m.price.input_per_1k < 0.0 || m.price.output_per_1k < 0.0 {
                return Err(invalid(id, "prices cannot be negative"));
            }
            let entry = ModelEntry {
                id: m.id.clone(),
                name: m.name.clone(),
                provider: m.provider.clone(),
                engine,
                weights: m.weights.clone(),
                deployments: m.upstream.iter().chain(&m.deployments).cloned().collect(),
                routing: m.routing.clone(),
                fallbacks: m.fallbacks.clone(),
                native_body,
                input_modalities,
                output_modalities,
                streaming: m.streaming,
                tools: m.tools,
                inference_types,
                customizations,
                custom: m.custom,
                provisioned_unit_hour_price: m.price.provisioned_unit_hour.max(0.0),
                default_max_tokens: m.default_max_tokens.max(1),
                max_input_tokens: m.max_input_tokens,
                dimensions: m.dimensions,
                lifecycle: Lifecycle {
                    status,
                    start_of_life: parse_time(id, "start_of_life", &m.lifecycle.start_of_life)?,
                    legacy_time: parse_time(id, "legacy_time", &m.lifecycle.legacy_time)?,
                    end_of_life: parse_time(id, "end_of_life", &m.lifecycle.end_of_life)?,
                    replacement: m.lifecycle.replacement.clone(),
                },
                input_price_per_1k: m.price.input_per_1k,
                output_price_per_1k: m.price.output_per_1k,
                cache_read_price_per_1k: m
                    .price
                    .cache_read_input_per_1k
                    .unwrap_or(m.price.input_per_1k)
                    .max(0.0),
            };
            if models.insert(m.id.clone(), entry).is_some() {
                return Err(invalid(id, "the ID is defined twice"));
            }
        }
        for entry in models.values() {
            if let Some(r) = &entry.lifecycle.replacement {
                if !models.contains_key(r) {
                    return Err(invalid(
                        &entry.id,
                        format!("replacement {r} is not in the catalog"),
                    ));
                }
            }
            for f in &entry.fallbacks {
                match models.get(f) {
                    None => {
                        return Err(invalid(
                            &entry.id,
                            format!("fallback {f} is not in the catalog"),
                        ))
                    }
                    Some(target) if target.id == entry.id || target.is_embedding() => {
                        return Err(invalid(
                            &entry.id,
                            format!("fallback {f} must be another chat model"),
                        ))
                    }
                    Some(_) => {}
                }
            }
        }
        let mut aliases = BTreeMap::new();
        for alias in &config.aliases {
            let bad = |what: String| {
                CoreError::Validation(format!(
                    "invalid configuration: alias {:?}: {what}",
                    alias.id
                ))
            };
            if alias.id.is_empty()
                || alias.id.len() > 256
                || alias.id.chars().any(char::is_whitespace)
            {
                return Err(bad("an alias is 1-256 characters without spaces".into()));
            }
            if models.contains_key(&alias.id) {
                return Err(bad("it is already a catalog model's ID".into()));
            }
            if !models.contains_key(&alias.target) {
                return Err(bad(format!(
                    "its target {} is not in the catalog",
                    alias.target
                )));
            }
            if aliases
                .insert(alias.id.clone(), alias.target.clone())
                .is_some()
            {
                return Err(bad("it is defined twice".into()));
            }
        }
        Ok(Self {
            models,
            weights: config.weights.clone(),
            aliases,
        })
    }

    /// A catalog model by its ID (aliases are not followed: see [`Self::lookup`]).
    pub fn get(&self, id: &str) -> Option<&ModelEntry> {
        self.models.get(id)
    }

    /// A catalog model by its ID or one of its aliases.
    pub fn lookup(&self, id: &str) -> Option<&ModelEntry> {
        self.models
            .get(id)
            .or_else(|| self.aliases.get(id).and_then(|t| self.models.get(t)))
    }

    /// Whether `id` is an alias (not a catalog model ID).
    pub fn is_alias(&self, id: &str) -> bool {
        self.aliases.contains_key(id)
    }

    /// The aliases: (alias, target model ID).
    pub fn aliases(&self) -> impl Iterator<Item = (&str, &str)> {
        self.aliases.iter().map(|(a, t)| (a.as_str(), t.as_str()))
    }

    pub fn models(&self) -> impl Iterator<Item = &ModelEntry> {
        self.models.values()
    }

    pub fn weights(&self) -> &BTreeMap<String, WeightsConfig> {
        &self.weights
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Result<Catalog, CoreError> {
        let text = format!(
            r#"
[weights.w]
files = [{{ path = "m.gguf", sha256 = "{sha}" }}]

[[models]]
id = "acme.chat-v1:0"
name = "Chat"
provider = "Acme"
engine = "llama.cpp"
weights = "w"
native_body = "meta-llama"
input_modalities = ["TEXT"]
output_modalities = ["TEXT"]
lifecycle = {{ status = "ACTIVE" }}
price = {{ input_per_1k = 0.1, output_per_1k = 0.2 }}
{extra}
"#,
            sha = "a".repeat(64)
        );
        Catalog::from_config(&ConfigFile::parse(&text)?)
    }

    #[test]
    fn accepts_a_valid_entry_and_prices_it() {
        let catalog = config("").expect("valid");
        let m = catalog.get("acme.chat-v1:0").expect("present");
        assert!((m.cost(1000, 500) - 0.2).abs() < 1e-12);
        assert!(
            (m.cost_with_cache(1000, 400, 500) - m.cost(1000, 500)).abs() < 1e-12,
            "no cache price configured: cached input costs the input price"
        );
        let discounted = ModelEntry {
            cache_read_price_per_1k: m.input_price_per_1k / 10.0,
            ..m.clone()
        };
        let expected = m.cost(600, 500) + 400.0 * m.input_price_per_1k / 10.0 / 1000.0;
        assert!((discounted.cost_with_cache(1000, 400, 500) - expected).abs() < 1e-12);
        assert!(
            (discounted.cost_with_cache(10, 400, 0) - 10.0 * m.input_price_per_1k / 10.0 / 1000.0)
                .abs()
                < 1e-12,
            "cache reads never exceed the input"
        );
        assert!(!m.is_embedding());
    }

    #[test]
    fn rejects_unpinned_ids_unknown_keys_and_dangling_replacements() {
        let unpinned = config("[[models]]\nid = \"acme.latest\"\nname = \"x\"\nprovider = \"A\"\nengine = \"llama.cpp\"\nweights = \"w\"\nnative_body = \"meta-llama\"\ninput_modalities = [\"TEXT\"]\noutput_modalities = [\"TEXT\"]\nlifecycle = { status = \"ACTIVE\" }\nprice = { input_per_1k = 0.0 }\n");
        assert!(unpinned
            .expect_err("unpinned")
            .to_string()
            .contains("pinned"));
        let unknown = config("bogus = 1");
        assert!(unknown
            .expect_err("unknown key")
            .to_string()
            .contains("bogus"));
        let dangling = config("[[models]]\nid = \"acme.chat-v0:1\"\nname = \"old\"\nprovider = \"A\"\nengine = \"llama.cpp\"\nweights = \"w\"\nnative_body = \"meta-llama\"\ninput_modalities = [\"TEXT\"]\noutput_modalities = [\"TEXT\"]\nlifecycle = { status = \"EOL\", replacement = \"acme.gone-v9:0\" }\nprice = { input_per_1k = 0.0 }\n");
        assert!(dangling
            .expect_err("dangling")
            .to_string()
            .contains("acme.gone-v9:0"));
    }

    #[test]
    fn a_rerank_model_is_remote_on_an_api_with_reranking() {
        let rerank = |engine: &str, api: &str, extra: &str| {
            config(&format!(
                "[[models]]\nid = \"acme.rerank-v1:0\"\nname = \"R\"\nprovider = \"A\"\nengine = \"{engine}\"\nnative_body = \"rerank\"\ninput_modalities = [\"TEXT\"]\noutput_modalities = [\"TEXT\"]\nlifecycle = {{ status = \"ACTIVE\" }}\nprice = {{ input_per_1k = 2.0 }}\nupstream = {{ api = \"{api}\", base_url = \"http://127.0.0.1:1/v2\", model = \"rerank-v3.5\" }}\n{extra}"
            ))
        };
        let catalog = rerank("remote", "cohere", "").expect("valid");
        let m = catalog.get("acme.rerank-v1:0").expect("present");
        assert!(m.is_rerank() && !m.is_embedding());
        assert!(rerank("remote", "bedrock", "").is_ok());
        let wrong_api = rerank("remote", "openai", "").expect_err("no rerank on openai");
        assert!(wrong_api.to_string().contains("reranking"), "{wrong_api}");
        let streamed = rerank("remote", "cohere", "streaming = true").expect_err("no stream");
        assert!(streamed.to_string().contains("rerank model"), "{streamed}");
        assert!(!config("")
            .expect("valid")
            .get("acme.chat-v1:0")
            .expect("present")
            .is_rerank());
    }

    #[test]
    fn a_passed_end_of_life_date_makes_a_model_eol() {
        let lifecycle = Lifecycle {
            status: LifecycleStatus::Active,
            start_of_life: None,
            legacy_time: Some(time::macros::datetime!(2020-01-01 0:00 UTC)),
            end_of_life: Some(time::macros::datetime!(2030-01-01 0:00 UTC)),
            replacement: None,
        };
        assert_eq!(
            lifecycle.status_at(time::macros::datetime!(2019-01-01 0:00 UTC)),
            LifecycleStatus::Active
        );
        assert_eq!(
            lifecycle.status_at(time::macros::datetime!(2025-01-01 0:00 UTC)),
            LifecycleStatus::Legacy
        );
        assert_eq!(
            lifecycle.status_at(time::macros::datetime!(2031-01-01 0:00 UTC)),
            LifecycleStatus::Eol
        );
    }

    #[test]
    fn pinned_id_shape() {
        assert!(is_pinned_model_id(
            "huggingfacetb.smollm2-135m-instruct-v1:0"
        ));
        assert!(is_pinned_model_id(
            "sentence-transformers.all-minilm-l6-v2-v1:0"
        ));
        assert!(is_pinned_model_id("cohere.rerank-v3-5:0"));
        assert!(!is_pinned_model_id("cohere.rerank-v3-:0"));
        assert!(!is_pinned_model_id("cohere.rerank-v3-x:0"));
        assert!(!is_pinned_model_id("smollm2"));
        assert!(!is_pinned_model_id("acme.chat-v1"));
        assert!(!is_pinned_model_id("Acme.Chat-v1:0"));
    }
}
