//! Bedrock's wire form of knowledge-base settings: `knowledgeBaseConfiguration`,
//! `storageConfiguration`, `dataSourceConfiguration` (S3, WEB, CUSTOM) and
//! `vectorIngestionConfiguration`, parsed into the core's typed settings and rendered
//! back from them for Get and List; and the upgrade of records stored before the
//! core had typed settings (they held these documents as given).

use basalt_core::knowledge::web::{Scope, WebSource, MAX_PAGES, MAX_PAGES_PER_MINUTE};
use basalt_core::knowledge::{
    check_identifier, Chunking, DataSource, DeletionPolicy, Embedding, FieldMapping, KnowledgeBase,
    Location, RdsStore, Storage, STORAGE_TYPES,
};
use serde_json::{json, Map, Value};

use crate::error::BedrockError;

fn invalid(message: impl Into<String>) -> BedrockError {
    BedrockError::validation(message)
}

fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter().try_fold(value, |v, k| v.get(k))?.as_str()
}

fn usize_at(value: &Value, path: &[&str], name: &str) -> Result<usize, BedrockError> {
    path.iter()
        .try_fold(value, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| invalid(format!("{name} is required (a positive integer)")))
}

// ---- knowledge bases ---------------------------------------------------------------

/// `knowledgeBaseConfiguration`: a VECTOR knowledge base's embedding model and, if
/// given, its dimensions and data type (FLOAT32 only).
pub fn embedding_of(config: &Value) -> Result<Embedding, BedrockError> {
    match str_at(config, &["type"]) {
        Some("VECTOR") => {}
        Some(other) => {
            return Err(invalid(format!(
                "knowledgeBaseConfiguration.type {other} is not supported by this server; supported: VECTOR"
            )))
        }
        None => return Err(invalid("knowledgeBaseConfiguration.type is required")),
    }
    let model = str_at(config, &["vectorKnowledgeBaseConfiguration", "embeddingModelArn"])
        .ok_or_else(|| {
            invalid("knowledgeBaseConfiguration.vectorKnowledgeBaseConfiguration.embeddingModelArn is required")
        })?;
    const MODEL_CONFIG: &str = "/vectorKnowledgeBaseConfiguration/embeddingModelConfiguration/bedrockEmbeddingModelConfiguration";
    let asked_dimensions = config
        .pointer(&format!("{MODEL_CONFIG}/dimensions"))
        .and_then(Value::as_u64)
        .map(|n| n as usize);
    let asked_float32 = match config
        .pointer(&format!("{MODEL_CONFIG}/embeddingDataType"))
        .and_then(Value::as_str)
    {
        None => false,
        Some("FLOAT32") => true,
        Some(other) => {
            return Err(invalid(format!(
                "embeddingDataType {other} is not supported; supported: FLOAT32"
            )))
        }
    };
    Ok(Embedding {
        model: model.to_owned(),
        asked_dimensions,
        asked_float32,
    })
}

/// `knowledgeBaseConfiguration` as Get answers it.
pub fn embedding_json(embedding: &Embedding) -> Value {
    let mut vector = json!({ "embeddingModelArn": embedding.model });
    let mut model_config = Map::new();
    if let Some(d) = embedding.asked_dimensions {
        model_config.insert("dimensions".into(), json!(d));
    }
    if embedding.asked_float32 {
        model_config.insert("embeddingDataType".into(), json!("FLOAT32"));
    }
    if !model_config.is_empty() {
        vector["embeddingModelConfiguration"] =
            json!({ "bedrockEmbeddingModelConfiguration": model_config });
    }
    json!({ "type": "VECTOR", "vectorKnowledgeBaseConfiguration": vector })
}

/// `storageConfiguration`: its type and, for RDS, its required fields (their
/// identifiers checked; the connection is checked against the configuration by the
/// core).
pub fn storage_of(storage: &Value) -> Result<Storage, BedrockError> {
    match str_at(storage, &["type"]) {
        Some("BASALT_EMBEDDED") => Ok(Storage::Embedded),
        Some("RDS") => {
            let rds = storage.get("rdsConfiguration").ok_or_else(|| {
                invalid("an RDS storageConfiguration needs rdsConfiguration")
            })?;
            let field = |name: &str| {
                str_at(rds, &[name])
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("rdsConfiguration.{name} is required")))
            };
            let defaults = FieldMapping::default();
            let mapping = |name: &str, default: &str| -> Result<String, BedrockError> {
                let value = str_at(rds, &["fieldMapping", name]).unwrap_or(default);
                check_identifier(value, &format!("fieldMapping.{name}"))
                    .map_err(BedrockError::agent)?;
                Ok(value.to_owned())
            };
            let table = field("tableName")?;
            check_identifier(&table, "tableName").map_err(BedrockError::agent)?;
            let connection = field("resourceArn")?;
            if connection.starts_with("postgres") && connection.contains('@') {
                return Err(invalid(
                    "rdsConfiguration.resourceArn must not carry credentials; they come from the server's [knowledge_bases.postgres] configuration",
                ));
            }
            Ok(Storage::Postgres(RdsStore {
                connection,
                database: field("databaseName")?,
                table,
                fields: FieldMapping {
                    primary_key: mapping("primaryKeyField", &defaults.primary_key)?,
                    vector: mapping("vectorField", &defaults.vector)?,
                    text: mapping("textField", &defaults.text)?,
                    metadata: mapping("metadataField", &defaults.metadata)?,
                },
                credentials_secret: str_at(rds, &["credentialsSecretArn"]).map(str::to_owned),
            }))
        }
        Some(other) => Err(invalid(format!(
            "storageConfiguration type {other} is not supported by this server; supported types: {STORAGE_TYPES}"
        ))),
        None => Err(invalid(format!(
            "storageConfiguration.type is required; supported types: {STORAGE_TYPES}"
        ))),
    }
}

/// `storageConfiguration` as Get answers it.
pub fn storage_json(storage: &Storage) -> Value {
    match storage {
        Storage::Embedded => json!({ "type": "BASALT_EMBEDDED" }),
        Storage::Postgres(rds) => {
            let mut config = json!({
                "resourceArn": rds.connection,
                "databaseName": rds.database,
                "tableName": rds.table,
                "fieldMapping": {
                    "primaryKeyField": rds.fields.primary_key,
                    "vectorField": rds.fields.vector,
                    "textField": rds.fields.text,
                    "metadataField": rds.fields.metadata,
                },
            });
            if let Some(secret) = &rds.credentials_secret {
                config["credentialsSecretArn"] = json!(secret);
            }
            json!({ "type": "RDS", "rdsConfiguration": config })
        }
    }
}

// ---- data sources ------------------------------------------------------------------

/// `vectorIngestionConfiguration`: the chunking it asks for (`None`: none asked, the
/// default applies). Parsing and other transformations are refused by name.
pub fn chunking_of(config: Option<&Value>) -> Result<Option<Chunking>, BedrockError> {
    if let Some(parsing) = config.and_then(|c| c.get("parsingConfiguration")) {
        return Err(invalid(format!(
            "parsingConfiguration ({}) is not supported by this server: documents are parsed by file type",
            str_at(parsing, &["parsingStrategy"]).unwrap_or("?")
        )));
    }
    if config.is_some_and(|c| {
        c.get("customTransformationConfiguration").is_some()
            || c.get("contextEnrichmentConfiguration").is_some()
    }) {
        return Err(invalid(
            "customTransformationConfiguration and contextEnrichmentConfiguration are not supported by this server",
        ));
    }
    let Some(chunking) = config.and_then(|c| c.get("chunkingConfiguration")) else {
        return Ok(None);
    };
    let strategy = str_at(chunking, &["chunkingStrategy"])
        .ok_or_else(|| invalid("chunkingConfiguration.chunkingStrategy is required"))?;
    let parsed = match strategy {
        "FIXED_SIZE" => Chunking::FixedSize {
            max_tokens: usize_at(
                chunking,
                &["fixedSizeChunkingConfiguration", "maxTokens"],
                "fixedSizeChunkingConfiguration.maxTokens",
            )?,
            overlap_percentage: usize_at(
                chunking,
                &["fixedSizeChunkingConfiguration", "overlapPercentage"],
                "fixedSizeChunkingConfiguration.overlapPercentage",
            )?,
        },
        "HIERARCHICAL" => {
            let h = chunking
                .get("hierarchicalChunkingConfiguration")
                .ok_or_else(|| invalid("HIERARCHICAL needs hierarchicalChunkingConfiguration"))?;
            let levels = h
                .get("levelConfigurations")
                .and_then(Value::as_array)
                .filter(|l| l.len() == 2)
                .ok_or_else(|| {
                    invalid("hierarchicalChunkingConfiguration.levelConfigurations must hold two levels: parent, then child")
                })?;
            Chunking::Hierarchical {
                parent_max_tokens: usize_at(
                    &levels[0],
                    &["maxTokens"],
                    "levelConfigurations[0].maxTokens",
                )?,
                child_max_tokens: usize_at(
                    &levels[1],
                    &["maxTokens"],
                    "levelConfigurations[1].maxTokens",
                )?,
                overlap_tokens: usize_at(
                    h,
                    &["overlapTokens"],
                    "hierarchicalChunkingConfiguration.overlapTokens",
                )?,
            }
        }
        "SEMANTIC" => Chunking::Semantic {
            max_tokens: usize_at(
                chunking,
                &["semanticChunkingConfiguration", "maxTokens"],
                "semanticChunkingConfiguration.maxTokens",
            )?,
            buffer_size: usize_at(
                chunking,
                &["semanticChunkingConfiguration", "bufferSize"],
                "semanticChunkingConfiguration.bufferSize",
            )?,
            breakpoint_percentile: usize_at(
                chunking,
                &[
                    "semanticChunkingConfiguration",
                    "breakpointPercentileThreshold",
                ],
                "semanticChunkingConfiguration.breakpointPercentileThreshold",
            )?,
        },
        "NONE" => Chunking::None,
        other => {
            return Err(invalid(format!(
                "chunkingStrategy {other:?} is not one of FIXED_SIZE, HIERARCHICAL, SEMANTIC, NONE"
            )))
        }
    };
    parsed.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(Some(parsed))
}

/// `vectorIngestionConfiguration` as Get answers it (only when one was given).
pub fn chunking_json(chunking: &Chunking) -> Value {
    let config = match *chunking {
        Chunking::FixedSize {
            max_tokens,
            overlap_percentage,
        } => json!({
            "chunkingStrategy": "FIXED_SIZE",
            "fixedSizeChunkingConfiguration": {
                "maxTokens": max_tokens,
                "overlapPercentage": overlap_percentage,
            },
        }),
        Chunking::Hierarchical {
            parent_max_tokens,
            child_max_tokens,
            overlap_tokens,
        } => json!({
            "chunkingStrategy": "HIERARCHICAL",
            "hierarchicalChunkingConfiguration": {
                "levelConfigurations": [
                    { "maxTokens": parent_max_tokens },
                    { "maxTokens": child_max_tokens },
                ],
                "overlapTokens": overlap_tokens,
            },
        }),
        Chunking::Semantic {
            max_tokens,
            buffer_size,
            breakpoint_percentile,
        } => json!({
            "chunkingStrategy": "SEMANTIC",
            "semanticChunkingConfiguration": {
                "maxTokens": max_tokens,
                "bufferSize": buffer_size,
                "breakpointPercentileThreshold": breakpoint_percentile,
            },
        }),
        Chunking::None => json!({ "chunkingStrategy": "NONE" }),
    };
    json!({ "chunkingConfiguration": config })
}

/// The strings of a list member (`inclusionPrefixes`, `failureReasons`), if any.
fn strings_at(value: &Value, name: &str) -> Vec<String> {
    value
        .get(name)
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `dataSourceConfiguration`: an S3 source (`s3Configuration.bucketArn`: `file:///…`,
/// `s3://…` or `arn:aws:s3:::bucket`), WEB or CUSTOM.
pub fn location_of(config: &Value) -> Result<Location, BedrockError> {
    let kind = str_at(config, &["type"])
        .ok_or_else(|| invalid("dataSourceConfiguration.type is required"))?;
    match kind {
        "S3" => {
            let s3 = config
                .get("s3Configuration")
                .ok_or_else(|| invalid("an S3 data source needs s3Configuration"))?;
            let arn = str_at(s3, &["bucketArn"])
                .ok_or_else(|| invalid("s3Configuration.bucketArn is required"))?;
            let prefixes = strings_at(s3, "inclusionPrefixes");
            if arn.starts_with("file://") {
                Ok(Location::Folder {
                    uri: arn.to_owned(),
                    prefixes,
                })
            } else if let Some(bucket) = arn.strip_prefix("arn:aws:s3:::") {
                Ok(Location::Bucket {
                    uri: format!("s3://{bucket}/"),
                    prefixes,
                    bucket: arn.to_owned(),
                })
            } else if arn.starts_with("s3://") {
                Ok(Location::Bucket {
                    uri: arn.to_owned(),
                    prefixes,
                    bucket: arn.to_owned(),
                })
            } else {
                Err(invalid(format!(
                    "s3Configuration.bucketArn {arn:?} must be arn:aws:s3:::bucket, s3://bucket/prefix/ or file:///absolute/path/"
                )))
            }
        }
        "CUSTOM" => Ok(Location::Custom),
        "WEB" => Ok(Location::Web(web_source_of(
            config
                .get("webConfiguration")
                .ok_or_else(|| invalid("a WEB data source needs webConfiguration"))?,
        )?)),
        other => Err(invalid(format!(
            "data source type {other} is not supported by this server; supported: S3 (s3:// buckets and file:/// folders), WEB, CUSTOM"
        ))),
    }
}

/// `webConfiguration`: the seeds and the crawler's settings, each checked here so
/// that errors name Bedrock's fields (the core checks them again at each crawl).
pub fn web_source_of(web: &Value) -> Result<WebSource, BedrockError> {
    let seeds: Vec<String> = web
        .pointer("/sourceConfiguration/urlConfiguration/seedUrls")
        .and_then(Value::as_array)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            invalid("webConfiguration.sourceConfiguration.urlConfiguration.seedUrls needs at least one URL")
        })?
        .iter()
        .map(|s| s.get("url").and_then(Value::as_str).unwrap_or_default().to_owned())
        .collect();
    let crawler = web.get("crawlerConfiguration");
    let scope = match crawler.and_then(|c| c.get("scope")).and_then(Value::as_str) {
        None => Scope::Default,
        Some("HOST_ONLY") => Scope::HostOnly,
        Some("SUBDOMAINS") => Scope::Subdomains,
        Some(other) => {
            return Err(invalid(format!(
                "crawlerConfiguration.scope {other:?} is not HOST_ONLY or SUBDOMAINS"
            )))
        }
    };
    let patterns = |name: &str| -> Result<Vec<String>, BedrockError> {
        crawler
            .and_then(|c| c.get(name))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                let p = p.as_str().unwrap_or_default();
                regex::Regex::new(p).map_err(|e| {
                    invalid(format!(
                        "crawlerConfiguration.{name}: {p:?} is not a regular expression: {e}"
                    ))
                })?;
                Ok(p.to_owned())
            })
            .collect()
    };
    let limit = |name: &str, max: u64| -> Result<Option<u64>, BedrockError> {
        match crawler.and_then(|c| c.pointer(&format!("/crawlerLimits/{name}"))) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|n| (1..=max).contains(n))
                .map(Some)
                .ok_or_else(|| invalid(format!("crawlerLimits.{name} must be 1..{max}"))),
        }
    };
    Ok(WebSource {
        seeds,
        scope,
        include: patterns("inclusionFilters")?,
        exclude: patterns("exclusionFilters")?,
        max_pages: limit("maxPages", MAX_PAGES)?,
        pages_per_minute: limit("rateLimit", MAX_PAGES_PER_MINUTE)?,
        user_agent_suffix: crawler
            .and_then(|c| c.get("userAgentHeader").or_else(|| c.get("userAgent")))
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// `dataSourceConfiguration` as Get answers it.
pub fn location_json(location: &Location) -> Value {
    let s3 = |bucket: &str, prefixes: &[String]| {
        let mut s3 = json!({ "bucketArn": bucket });
        if !prefixes.is_empty() {
            s3["inclusionPrefixes"] = json!(prefixes);
        }
        json!({ "type": "S3", "s3Configuration": s3 })
    };
    match location {
        Location::Folder { uri, prefixes } => s3(uri, prefixes),
        Location::Bucket {
            bucket, prefixes, ..
        } => s3(bucket, prefixes),
        Location::Custom => json!({ "type": "CUSTOM" }),
        Location::Web(web) => {
            let seeds: Vec<Value> = web.seeds.iter().map(|u| json!({ "url": u })).collect();
            let mut crawler = Map::new();
            let mut limits = Map::new();
            if let Some(n) = web.max_pages {
                limits.insert("maxPages".into(), json!(n));
            }
            if let Some(n) = web.pages_per_minute {
                limits.insert("rateLimit".into(), json!(n));
            }
            if !limits.is_empty() {
                crawler.insert("crawlerLimits".into(), Value::Object(limits));
            }
            if !web.include.is_empty() {
                crawler.insert("inclusionFilters".into(), json!(web.include));
            }
            if !web.exclude.is_empty() {
                crawler.insert("exclusionFilters".into(), json!(web.exclude));
            }
            match web.scope {
                Scope::Default => {}
                Scope::HostOnly => {
                    crawler.insert("scope".into(), json!("HOST_ONLY"));
                }
                Scope::Subdomains => {
                    crawler.insert("scope".into(), json!("SUBDOMAINS"));
                }
            }
            if let Some(agent) = &web.user_agent_suffix {
                crawler.insert("userAgentHeader".into(), json!(agent));
            }
            let mut config = json!({
                "sourceConfiguration": { "urlConfiguration": { "seedUrls": seeds } },
            });
            if !crawler.is_empty() {
                config["crawlerConfiguration"] = Value::Object(crawler);
            }
            json!({ "type": "WEB", "webConfiguration": config })
        }
    }
}

/// `dataDeletionPolicy`.
pub fn deletion_policy_of(policy: Option<&str>) -> Result<DeletionPolicy, BedrockError> {
    match policy {
        None | Some("DELETE") => Ok(DeletionPolicy::Delete),
        Some("RETAIN") => Ok(DeletionPolicy::Retain),
        Some(other) => Err(invalid(format!(
            "dataDeletionPolicy {other:?} is not one of DELETE, RETAIN"
        ))),
    }
}

// ---- records stored before the typed settings ----------------------------------------

/// The stored record kinds whose form changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredKind {
    KnowledgeBase,
    DataSource,
}

/// A record body as the store keeps it now, from one stored before the core had
/// typed settings (Bedrock's field names, with the configuration documents as the
/// caller gave them); `None` for a body already in the current form.
pub fn upgrade_stored_record(kind: StoredKind, body: &str) -> Result<Option<String>, String> {
    let old: Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let text = |name: &str| old.get(name).and_then(Value::as_str).map(str::to_owned);
    let required =
        |name: &str| text(name).ok_or_else(|| format!("the stored record has no {name}"));
    let int = |name: &str| old.get(name).and_then(Value::as_i64).unwrap_or_default();
    let reasons = strings_at(&old, "failureReasons");
    let new = match kind {
        StoredKind::KnowledgeBase => {
            let Some(config) = old.get("knowledgeBaseConfiguration") else {
                return Ok(None);
            };
            let storage = old
                .get("storageConfiguration")
                .ok_or("the stored record has no storageConfiguration")?;
            serde_json::to_string(&KnowledgeBase {
                knowledge_base_id: required("knowledgeBaseId")?,
                name: required("name")?,
                description: text("description"),
                role_arn: required("roleArn")?,
                embedding: embedding_of(config).map_err(|e| e.message)?,
                storage: storage_of(storage).map_err(|e| e.message)?,
                embedding_model_id: required("embeddingModelId")?,
                dimensions: old
                    .get("dimensions")
                    .and_then(Value::as_u64)
                    .ok_or("the stored record has no dimensions")?
                    as usize,
                status: required("status")?,
                failure_reasons: reasons,
                created_ms: int("createdMs"),
                updated_ms: int("updatedMs"),
            })
        }
        StoredKind::DataSource => {
            let Some(config) = old.get("dataSourceConfiguration") else {
                return Ok(None);
            };
            serde_json::to_string(&DataSource {
                data_source_id: required("dataSourceId")?,
                knowledge_base_id: required("knowledgeBaseId")?,
                name: required("name")?,
                description: text("description"),
                location: location_of(config).map_err(|e| e.message)?,
                chunking: chunking_of(old.get("vectorIngestionConfiguration"))
                    .map_err(|e| e.message)?,
                deletion_policy: deletion_policy_of(text("dataDeletionPolicy").as_deref())
                    .map_err(|e| e.message)?,
                status: required("status")?,
                failure_reasons: reasons,
                created_ms: int("createdMs"),
                updated_ms: int("updatedMs"),
            })
        }
    };
    new.map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_core_types() {
        let kb = json!({"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {
            "embeddingModelArn": "arn:aws:bedrock:us-east-1::foundation-model/amazon.titan-embed-text-v2:0",
            "embeddingModelConfiguration": {"bedrockEmbeddingModelConfiguration": {"dimensions": 384, "embeddingDataType": "FLOAT32"}}}});
        assert_eq!(embedding_json(&embedding_of(&kb).expect("parses")), kb);
        let rds = json!({"type": "RDS", "rdsConfiguration": {
            "resourceArn": "test", "credentialsSecretArn": "arn:aws:secretsmanager:us-east-1:0:secret:x",
            "databaseName": "kb", "tableName": "chunks",
            "fieldMapping": {"primaryKeyField": "id", "vectorField": "embedding", "textField": "chunks", "metadataField": "metadata"}}});
        assert_eq!(storage_json(&storage_of(&rds).expect("parses")), rds);
        for ds in [
            json!({"type": "S3", "s3Configuration": {"bucketArn": "arn:aws:s3:::docs", "inclusionPrefixes": ["a/"]}}),
            json!({"type": "S3", "s3Configuration": {"bucketArn": "file:///srv/docs/"}}),
            json!({"type": "CUSTOM"}),
            json!({"type": "WEB", "webConfiguration": {
                "sourceConfiguration": {"urlConfiguration": {"seedUrls": [{"url": "https://docs.example.com/"}]}},
                "crawlerConfiguration": {"crawlerLimits": {"maxPages": 10, "rateLimit": 60},
                    "inclusionFilters": [".*\\.html"], "scope": "HOST_ONLY", "userAgentHeader": "tests"}}}),
        ] {
            assert_eq!(location_json(&location_of(&ds).expect("parses")), ds);
        }
        let chunking = json!({"chunkingConfiguration": {"chunkingStrategy": "HIERARCHICAL",
            "hierarchicalChunkingConfiguration": {"levelConfigurations": [{"maxTokens": 1000}, {"maxTokens": 200}], "overlapTokens": 60}}});
        let parsed = chunking_of(Some(&chunking))
            .expect("parses")
            .expect("a chunking");
        assert_eq!(chunking_json(&parsed), chunking);
        assert_eq!(chunking_of(None).expect("nothing asked"), None);
    }

    #[test]
    fn bad_settings_name_bedrocks_fields() {
        let web = |crawler: Value| {
            json!({"type": "WEB", "webConfiguration": {
                "sourceConfiguration": {"urlConfiguration": {"seedUrls": [{"url": "https://a.com"}]}},
                "crawlerConfiguration": crawler}})
        };
        for (config, needle) in [
            (
                web(json!({"scope": "EVERYWHERE"})),
                "crawlerConfiguration.scope",
            ),
            (
                web(json!({"inclusionFilters": ["("]})),
                "crawlerConfiguration.inclusionFilters",
            ),
            (
                web(json!({"crawlerLimits": {"rateLimit": 1000}})),
                "crawlerLimits.rateLimit",
            ),
            (
                json!({"type": "WEB", "webConfiguration": {"sourceConfiguration": {"urlConfiguration": {"seedUrls": []}}}}),
                "seedUrls",
            ),
            (json!({"type": "SHAREPOINT"}), "SHAREPOINT"),
            (
                json!({"type": "S3", "s3Configuration": {"bucketArn": "docs"}}),
                "bucketArn",
            ),
        ] {
            let err = location_of(&config).expect_err("refused");
            assert!(err.message.contains(needle), "{config}: {}", err.message);
        }
        let err = storage_of(&json!({"type": "PINECONE"})).expect_err("refused");
        assert!(err.message.contains("BASALT_EMBEDDED"), "{}", err.message);
        let err = embedding_of(&json!({"type": "KENDRA"})).expect_err("refused");
        assert!(err.message.contains("KENDRA"), "{}", err.message);
    }

    /// A record written before the typed settings reads as the same record.
    #[test]
    fn stored_records_of_the_old_form_are_upgraded() {
        let old_kb = json!({
            "knowledgeBaseId": "KB00000001", "name": "docs", "description": null,
            "roleArn": "arn:aws:iam::0:role/kb",
            "knowledgeBaseConfiguration": {"type": "VECTOR", "vectorKnowledgeBaseConfiguration": {"embeddingModelArn": "all-minilm-l6-v2"}},
            "storageConfiguration": {"type": "BASALT_EMBEDDED"},
            "embeddingModelId": "all-minilm-l6-v2", "dimensions": 384, "status": "ACTIVE",
            "failureReasons": [], "createdMs": 5, "updatedMs": 6});
        let body = upgrade_stored_record(StoredKind::KnowledgeBase, &old_kb.to_string())
            .expect("upgrades")
            .expect("was old");
        let kb: KnowledgeBase = serde_json::from_str(&body).expect("reads as the new form");
        assert_eq!(kb.knowledge_base_id, "KB00000001");
        assert_eq!(kb.embedding.model, "all-minilm-l6-v2");
        assert_eq!(kb.storage, Storage::Embedded);
        assert_eq!((kb.dimensions, kb.created_ms, kb.updated_ms), (384, 5, 6));
        assert_eq!(
            upgrade_stored_record(StoredKind::KnowledgeBase, &body).expect("reads"),
            None,
            "a current record is left alone"
        );
        let old_ds = json!({
            "dataSourceId": "DS00000001", "knowledgeBaseId": "KB00000001", "name": "web",
            "dataSourceConfiguration": {"type": "WEB", "webConfiguration": {
                "sourceConfiguration": {"urlConfiguration": {"seedUrls": [{"url": "https://a.com/"}]}}}},
            "vectorIngestionConfiguration": {"chunkingConfiguration": {"chunkingStrategy": "NONE"}},
            "dataDeletionPolicy": "RETAIN", "status": "AVAILABLE", "failureReasons": ["x"],
            "createdMs": 7, "updatedMs": 8});
        let body = upgrade_stored_record(StoredKind::DataSource, &old_ds.to_string())
            .expect("upgrades")
            .expect("was old");
        let ds: DataSource = serde_json::from_str(&body).expect("reads as the new form");
        assert_eq!(ds.deletion_policy, DeletionPolicy::Retain);
        assert_eq!(ds.chunking, Some(Chunking::None));
        assert_eq!(ds.failure_reasons, ["x"]);
        match ds.location {
            Location::Web(web) => assert_eq!(web.seeds, ["https://a.com/"]),
            other => panic!("{other:?}"),
        }
    }
}
