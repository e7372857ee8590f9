//! Bedrock's metadata sidecars: `<file>.metadata.json` next to a document holds
//! `{"metadataAttributes": {name: value}}`, each value either plain JSON (string,
//! number, boolean, list of strings) or Bedrock's typed form
//! `{"value": {"type": "STRING", "stringValue": …}, "includeForEmbedding": …}`.
//! Direct ingestion's `inlineAttributes` use the typed value form.

use serde_json::{Map, Value};

use crate::filter::Metadata;
use crate::KbError;

/// The suffix that marks a sidecar.
pub const SIDECAR_SUFFIX: &str = ".metadata.json";

/// Largest sidecar read.
pub const MAX_SIDECAR_BYTES: usize = 10 * 1024;

fn invalid(m: String) -> KbError {
    KbError::Parse(m)
}

/// Parses a sidecar file.
pub fn parse_sidecar(bytes: &[u8]) -> Result<Metadata, KbError> {
    if bytes.len() > MAX_SIDECAR_BYTES {
        return Err(invalid(format!(
            "metadata file is {} bytes; the limit is {MAX_SIDECAR_BYTES}",
            bytes.len()
        )));
    }
    let value: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("metadata file is not JSON: {e}")))?;
    let attributes = value
        .get("metadataAttributes")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("metadata file has no metadataAttributes object".into()))?;
    let mut out = Map::new();
    for (key, raw) in attributes {
        let value = match raw.get("value") {
            Some(typed) if raw.is_object() => {
                typed_value(typed).map_err(|m| invalid(format!("metadataAttributes.{key}: {m}")))?
            }
            _ => plain_value(raw).map_err(|m| invalid(format!("metadataAttributes.{key}: {m}")))?,
        };
        out.insert(key.clone(), value);
    }
    Ok(out)
}

fn plain_value(raw: &Value) -> Result<Value, String> {
    match raw {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(raw.clone()),
        Value::Array(items) if items.iter().all(Value::is_string) => Ok(raw.clone()),
        _ => Err("a value must be a string, number, boolean or list of strings".into()),
    }
}

/// `{"type": "STRING"|"NUMBER"|"BOOLEAN"|"STRING_LIST", "stringValue"|…}`.
pub fn typed_value(typed: &Value) -> Result<Value, String> {
    let kind = typed
        .get("type")
        .and_then(Value::as_str)
        .ok_or("value.type is required")?;
    let field = match kind {
        "STRING" => "stringValue",
        "NUMBER" => "numberValue",
        "BOOLEAN" => "booleanValue",
        "STRING_LIST" => "stringListValue",
        other => {
            return Err(format!(
                "value.type {other:?} is not one of STRING, NUMBER, BOOLEAN, STRING_LIST"
            ))
        }
    };
    let v = typed
        .get(field)
        .ok_or_else(|| format!("a {kind} value needs {field}"))?;
    let ok = match kind {
        "STRING" => v.is_string(),
        "NUMBER" => v.is_number(),
        "BOOLEAN" => v.is_boolean(),
        _ => v.as_array().is_some_and(|l| l.iter().all(Value::is_string)),
    };
    if ok {
        Ok(v.clone())
    } else {
        Err(format!("{field} has the wrong type for {kind}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_and_typed_attributes() {
        let sidecar = json!({"metadataAttributes": {
            "year": 2020,
            "team": "search",
            "tags": ["a", "b"],
            "typed": {"value": {"type": "NUMBER", "numberValue": 3}, "includeForEmbedding": false}
        }});
        let m = parse_sidecar(sidecar.to_string().as_bytes()).unwrap_or_default();
        assert_eq!(m.get("year"), Some(&json!(2020)));
        assert_eq!(m.get("tags"), Some(&json!(["a", "b"])));
        assert_eq!(m.get("typed"), Some(&json!(3)));
    }

    #[test]
    fn bad_sidecars_are_named() {
        for (bytes, reason) in [
            (b"nope".to_vec(), "not JSON"),
            (b"{}".to_vec(), "no metadataAttributes"),
            (
                br#"{"metadataAttributes":{"x":{"a":1}}}"#.to_vec(),
                "metadataAttributes.x",
            ),
            (
                br#"{"metadataAttributes":{"x":{"value":{"type":"DATE"}}}}"#.to_vec(),
                "DATE",
            ),
        ] {
            match parse_sidecar(&bytes) {
                Ok(m) => panic!("parsed as {m:?}"),
                Err(e) => assert!(e.to_string().contains(reason), "{e}"),
            }
        }
    }
}
