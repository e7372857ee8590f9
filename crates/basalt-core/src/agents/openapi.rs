//! Parsing of a Bedrock Agents action group `apiSchema.payload`: an inline
//! OpenAPI 3.0 document (JSON or YAML) describing the operations an agent may
//! call. Each operation becomes an [`ApiOperation`] that can be offered to a
//! language model as a tool (see [`ApiOperation::tool_input_schema`] and
//! [`ApiOperation::name`]).
//!
//! How, and why so:
//!
//! 1. The payload is read into a plain JSON value, with a budget on the values
//!    it may hold (YAML aliases can otherwise expand a small payload into
//!    gigabytes). Before a YAML payload reaches libyaml, a linear scan bounds
//!    how deeply its flow collections (`[`, `{`) nest (`yaml_flow_nesting_bound`):
//!    libyaml's scanner does work proportional to that depth for every token,
//!    and 1 MiB of `a: [[[[…` took over three minutes.
//! 2. The `openapiv3` crate validates the document's structure (paths,
//!    operations, parameters, request bodies, responses, components). It is
//!    given a copy in which every schema and every callback is replaced by
//!    `{}`: its untagged-enum deserializers retry each alternative at every
//!    nesting level, so a schema nested 20 levels with an invalid leaf took
//!    10 s, doubling per level.
//! 3. Schemas are then read from the plain JSON value, checked, and their local
//!    `$ref`s (`#/components/schemas/X`) inlined, within a depth limit and a
//!    budget on the size of the result, with cycles refused.
//!
//! Document order (which media type comes first, the order of operations and
//! properties) survives step 1 because the workspace builds `serde_json` with
//! its `preserve_order` feature.
//!
//! Everything that Basalt cannot represent is refused with
//! [`ApiSchemaError::Unsupported`] naming the place in the document. The parse
//! runs on a thread of its own with a known stack, so that the caller's stack
//! (a 2 MiB Tokio worker) is never at stake.

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;

use openapiv3::{OpenAPI, Operation, Parameter, ParameterSchemaOrContent, ReferenceOr};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The largest payload accepted, in bytes (1 MiB).
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The most operations one document may define.
pub const MAX_OPERATIONS: usize = 50;
/// How deeply schemas may nest (each property, item, composition member or
/// followed `$ref` is one level).
pub const MAX_SCHEMA_DEPTH: usize = 32;
/// The most JSON values all resolved schemas of one document may hold together
/// once `$ref`s are inlined; this bounds the blow-up of schemas that refer to
/// the same component many times.
pub const MAX_SCHEMA_VALUES: usize = 200_000;
/// The most JSON values (objects, arrays, scalars) the document may hold once
/// read, YAML aliases expanded.
pub const MAX_DOCUMENT_VALUES: usize = 1_000_000;
/// The most bytes of strings and keys the document may hold once read, YAML
/// aliases expanded.
pub const MAX_DOCUMENT_TEXT_BYTES: usize = 8 * 1024 * 1024;
/// The deepest nesting of YAML flow collections (`[…]`, `{…}`) accepted, as
/// bounded by a linear scan of the payload (an unbalanced bracket in text
/// counts as one level to the end of the payload).
pub const MAX_YAML_FLOW_NESTING: usize = 128;

/// The stack [`parse_api_schema`] parses on (reserved, not committed, until
/// used). The deepest documents the JSON and YAML parsers accept need about
/// 512 KiB in a debug build.
const PARSE_STACK_BYTES: usize = 8 * 1024 * 1024;

/// The longest tool name [`ApiOperation::name`] produces.
const MAX_NAME_LEN: usize = 64;

/// Header parameters that OpenAPI says to ignore.
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

/// The values `type` may take in an OpenAPI 3.0 schema.
const SCHEMA_TYPES: [&str; 6] = ["string", "number", "integer", "boolean", "array", "object"];

/// Where an API parameter goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterLocation {
    Path,
    Query,
    Header,
}

impl ParameterLocation {
    fn as_str(self) -> &'static str {
        match self {
            ParameterLocation::Path => "path",
            ParameterLocation::Query => "query",
            ParameterLocation::Header => "header",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApiParameter {
    pub name: String,
    pub location: ParameterLocation,
    pub description: Option<String>,
    pub required: bool,
    /// The parameter's JSON schema, with local `$ref`s resolved (plain JSON).
    pub schema: Value,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApiRequestBody {
    /// The media type, e.g. "application/json" (the first one the operation lists).
    pub content_type: String,
    pub description: Option<String>,
    pub required: bool,
    /// The body's JSON schema with local `$ref`s resolved (plain JSON). Bedrock
    /// agents pass bodies as a list of named properties, so the schema is
    /// always an object with a non-empty `properties` map.
    pub schema: Value,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ApiOperation {
    /// Upper case: "GET", "POST", "PUT", "PATCH", "DELETE".
    pub method: String,
    /// As written in the document, e.g. "/orders/{orderId}".
    pub path: String,
    pub operation_id: Option<String>,
    /// The operation's description, else its summary.
    pub description: Option<String>,
    pub parameters: Vec<ApiParameter>,
    pub request_body: Option<ApiRequestBody>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiSchemaError {
    /// Neither JSON nor YAML, or not an OpenAPI 3 document; the message says what the parser said.
    #[error("apiSchema is not a valid OpenAPI 3 document: {0}")]
    Invalid(String),
    /// A construct Basalt does not support, at `path` (e.g. "paths./orders/{id}.get.requestBody.content.application/json.schema").
    #[error("apiSchema: {what} at {path} is not supported")]
    Unsupported { path: String, what: String },
    #[error("apiSchema: {0}")]
    Limit(String),
}

fn unsupported(path: impl ToString, what: impl Into<String>) -> ApiSchemaError {
    ApiSchemaError::Unsupported {
        path: path.to_string(),
        what: what.into(),
    }
}

fn invalid(message: impl Into<String>) -> ApiSchemaError {
    ApiSchemaError::Invalid(message.into())
}

/// Parses an inline OpenAPI 3 payload (JSON if it starts with `{` after whitespace, else YAML).
pub fn parse_api_schema(payload: &str) -> Result<Vec<ApiOperation>, ApiSchemaError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ApiSchemaError::Limit(format!(
            "the payload is {} bytes; at most {MAX_PAYLOAD_BYTES} are allowed",
            payload.len()
        )));
    }
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("basalt-openapi".into())
            .stack_size(PARSE_STACK_BYTES)
            .spawn_scoped(scope, || parse_on_this_stack(payload))
            .map_err(|e| {
                ApiSchemaError::Limit(format!("cannot start a thread to parse the schema: {e}"))
            })?;
        handle
            .join()
            .map_err(|_| invalid("the OpenAPI parser failed unexpectedly"))?
    })
}

/// [`parse_api_schema`] on the current thread, whatever its stack.
fn parse_on_this_stack(payload: &str) -> Result<Vec<ApiOperation>, ApiSchemaError> {
    let payload = payload.strip_prefix('\u{feff}').unwrap_or(payload);
    let raw = read_document(payload)?;
    let Value::Object(root) = &raw else {
        return Err(invalid(
            "the document must be a JSON object or a YAML mapping",
        ));
    };
    check_version(root)?;
    if matches!(root.get("paths"), None | Some(Value::Null)) {
        return Err(no_operations());
    }
    let doc: OpenAPI =
        serde_json::from_value(skeleton(&raw)).map_err(|e| invalid(e.to_string()))?;
    Builder::new(&doc, &raw).operations()
}

fn no_operations() -> ApiSchemaError {
    invalid("paths: the document defines no operations")
}

fn check_version(root: &Map<String, Value>) -> Result<(), ApiSchemaError> {
    match root.get("openapi") {
        None if root.contains_key("swagger") => Err(invalid(
            "Swagger 2.0 documents are not supported; the document needs `openapi: 3.0.x`",
        )),
        None => Err(invalid("the document has no `openapi` version field")),
        Some(Value::String(version)) => {
            let mut parts = version.trim().split('.');
            let major = parts.next();
            let minor = parts.next();
            if major == Some("3") && matches!(minor, Some("0") | Some("1")) {
                Ok(())
            } else {
                Err(invalid(format!(
                    "OpenAPI version {version:?} is not supported; use 3.0.x"
                )))
            }
        }
        Some(other) => Err(invalid(format!(
            "`openapi` must be a version string such as \"3.0.0\", not {other}"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Reading the payload
// ---------------------------------------------------------------------------

/// Reads the payload into a plain JSON value: JSON if it starts with `{`
/// after whitespace, else YAML. Mapping keys must be scalars (YAML's `200:`
/// becomes `"200"`), keys must be unique, and the value must fit
/// [`MAX_DOCUMENT_VALUES`] and [`MAX_DOCUMENT_TEXT_BYTES`].
fn read_document(payload: &str) -> Result<Value, ApiSchemaError> {
    let budget = ReadBudget {
        values: Cell::new(MAX_DOCUMENT_VALUES),
        text: Cell::new(MAX_DOCUMENT_TEXT_BYTES),
        exceeded: Cell::new(false),
    };
    let seed = ValueSeed { budget: &budget };
    let result = if payload.trim_start().starts_with('{') {
        let mut deserializer = serde_json::Deserializer::from_str(payload);
        seed.deserialize(&mut deserializer)
            .and_then(|value| deserializer.end().map(|()| value))
            .map_err(|e| format!("JSON: {e}"))
    } else {
        let depth = yaml_flow_nesting_bound(payload, MAX_YAML_FLOW_NESTING);
        if depth > MAX_YAML_FLOW_NESTING {
            return Err(ApiSchemaError::Limit(format!(
                "the YAML payload nests flow collections ([…] or {{…}}) more than \
                 {MAX_YAML_FLOW_NESTING} levels deep (an unbalanced bracket in a comment or \
                 in text counts as one level to the end of the payload); send it as JSON"
            )));
        }
        seed.deserialize(serde_yaml::Deserializer::from_str(payload))
            .map_err(|e| format!("YAML: {e}"))
    };
    if budget.exceeded.get() {
        return Err(ApiSchemaError::Limit(format!(
            "the document holds more than {MAX_DOCUMENT_VALUES} values or \
             {MAX_DOCUMENT_TEXT_BYTES} bytes of text once read (YAML aliases included)"
        )));
    }
    result.map_err(ApiSchemaError::Invalid)
}

struct ReadBudget {
    values: Cell<usize>,
    text: Cell<usize>,
    exceeded: Cell<bool>,
}

impl ReadBudget {
    fn spend<E: de::Error>(&self, text_bytes: usize) -> Result<(), E> {
        let values = self.values.get();
        let text = self.text.get();
        if values == 0 || text < text_bytes {
            self.exceeded.set(true);
            return Err(E::custom("the document is too large once read"));
        }
        self.values.set(values - 1);
        self.text.set(text - text_bytes);
        Ok(())
    }
}

/// Builds a [`Value`] from any self-describing deserializer, within a [`ReadBudget`].
#[derive(Clone, Copy)]
struct ValueSeed<'b> {
    budget: &'b ReadBudget,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON-compatible value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.spend(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.spend(0)?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.spend(0)?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.spend(0)?;
        serde_json::Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom(format!("the number {v} cannot be represented in JSON")))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.spend(v.len())?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.spend(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.budget.spend(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.spend(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.spend(0)?;
        let mut object = Map::new();
        while let Some(key) = map.next_key_seed(KeySeed {
            budget: self.budget,
        })? {
            let value = map.next_value_seed(self)?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("the key {key:?} appears twice")));
            }
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A mapping key: a string, or a number or boolean written as one (YAML's `200:`).
#[derive(Clone, Copy)]
struct KeySeed<'b> {
    budget: &'b ReadBudget,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string, number or boolean mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        self.budget.spend(v.len())?;
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        self.budget.spend(v.len())?;
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        self.visit_string(v.to_string())
    }
}

/// An upper bound on how deeply libyaml will nest flow collections while
/// scanning `text`, computed in one pass; the scan stops once the bound passes
/// `limit`.
///
/// Every `[` and `{` counts one level up. A closing `]` or `}` counts one
/// level down only where libyaml is sure to close a flow collection too (or
/// to treat the matching opener as text as well):
/// - a collection whose content, read with a strict subset of YAML's flow
///   syntax (scalars quoted only where a token starts, quote characters inside
///   unquoted scalars only when these start with an ordinary ASCII character,
///   no comments, tags, anchors or aliases), is clean: if libyaml started a
///   collection at the opener, it reads that content the same way, so it
///   closes the collection at the same place;
/// - a pair of brackets inside a quoted scalar with no quote, `#`, `!` or line
///   break between them: libyaml treats both as text, or both as structure.
///
/// Any other closer leaves the count where it is, so the result is never below
/// libyaml's real nesting; text that merely looks unusual (a comment inside a
/// flow collection, an unbalanced bracket in a description) only makes it
/// larger.
fn yaml_flow_nesting_bound(text: &str, limit: usize) -> usize {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        /// Where a token may start.
        Between,
        /// Inside an unquoted scalar that started with an ordinary character,
        /// where quote characters are text.
        Plain,
        /// After an indicator (`-`, `?`, `|`...) or a non-ASCII character
        /// (a byte order mark, which libyaml skips) where a token starts:
        /// a quote character from here on may start a quoted scalar or not.
        Odd,
        /// After a quoted scalar or a nested collection.
        After,
        SingleQuoted,
        DoubleQuoted,
    }
    struct Frame {
        opener: u8,
        clean: bool,
        state: State,
    }

    let bytes = text.as_bytes();
    let mut frames: Vec<Frame> = Vec::new();
    // Openers inside the current quoted scalar that may still pair up.
    let mut quoted_openers = 0usize;
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        i += 1;
        let Some(frame) = frames.last_mut() else {
            // Outside any flow collection: only openers matter.
            if b == b'[' || b == b'{' {
                depth += 1;
                frames.push(Frame {
                    opener: b,
                    clean: true,
                    state: State::Between,
                });
            }
            deepest = deepest.max(depth);
            if deepest > limit {
                return deepest;
            }
            continue;
        };
        match (frame.state, b) {
            (State::SingleQuoted | State::DoubleQuoted, b'[' | b'{') => {
                depth += 1;
                quoted_openers += 1;
            }
            (State::SingleQuoted | State::DoubleQuoted, b']' | b'}') => {
                if quoted_openers > 0 {
                    quoted_openers -= 1;
                    depth -= 1;
                }
            }
            (State::SingleQuoted, b'\'') => {
                quoted_openers = 0;
                if next == Some(b'\'') {
                    i += 1;
                } else {
                    frame.state = State::After;
                }
            }
            (State::DoubleQuoted, b'"') => {
                quoted_openers = 0;
                frame.state = State::After;
            }
            (State::DoubleQuoted, b'\\') => {
                quoted_openers = 0;
                i += 1;
            }
            (
                State::SingleQuoted | State::DoubleQuoted,
                b'\'' | b'"' | b'#' | b'!' | b'\n' | b'\r',
            ) => {
                quoted_openers = 0;
            }
            (State::SingleQuoted | State::DoubleQuoted, _) => {}
            (_, b'[' | b'{') => {
                frame.state = State::After;
                depth += 1;
                frames.push(Frame {
                    opener: b,
                    clean: true,
                    state: State::Between,
                });
            }
            (_, b']' | b'}') => {
                let Some(closed) = frames.pop() else {
                    continue;
                };
                let matches =
                    (closed.opener, b) == (b'[', b']') || (closed.opener, b) == (b'{', b'}');
                let verified = closed.clean && matches;
                if verified {
                    depth -= 1;
                }
                if let Some(parent) = frames.last_mut() {
                    parent.clean &= verified;
                    parent.state = State::After;
                }
            }
            (_, b',') => frame.state = State::Between,
            (State::Plain | State::Odd, b':') => {
                if matches!(next, None | Some(b' ' | b'\t' | b'\r' | b'\n')) {
                    frame.state = State::Between;
                }
            }
            (_, b':') => frame.state = State::Between,
            (State::Between, b'\'') => {
                frame.state = State::SingleQuoted;
                quoted_openers = 0;
            }
            (State::Between, b'"') => {
                frame.state = State::DoubleQuoted;
                quoted_openers = 0;
            }
            (State::Plain, b'\'' | b'"') => {}
            (_, b'\'' | b'"' | b'#' | b'!' | b'&' | b'*') => frame.clean = false,
            (_, b' ' | b'\t' | b'\r' | b'\n') => {}
            (State::Between, b'-' | b'?' | b'|' | b'>' | b'%' | b'@' | b'`') => {
                frame.state = State::Odd;
            }
            // An ordinary ASCII character starts a plain scalar; anything else
            // may be what libyaml skips before a token (a byte order mark).
            (State::Between, b) if b.is_ascii() => frame.state = State::Plain,
            (State::Between, _) => frame.state = State::Odd,
            (State::After, _) => {
                frame.clean = false;
                frame.state = State::Odd;
            }
            (State::Plain | State::Odd, _) => {}
        }
        deepest = deepest.max(depth);
        if deepest > limit {
            return deepest;
        }
    }
    deepest
}

/// A copy of the document for `openapiv3`, with every schema and every
/// callback replaced by `{}` (see the module documentation).
fn skeleton(document: &Value) -> Value {
    fn copy(value: &Value) -> Value {
        match value {
            Value::Object(object) => Value::Object(
                object
                    .iter()
                    .map(|(key, child)| {
                        let child = if key == "schema" || key == "callbacks" {
                            Value::Object(Map::new())
                        } else {
                            copy(child)
                        };
                        (key.clone(), child)
                    })
                    .collect(),
            ),
            Value::Array(items) => Value::Array(items.iter().map(copy).collect()),
            other => other.clone(),
        }
    }
    let mut out = copy(document);
    if let Some(Value::Object(schemas)) = out.pointer_mut("/components/schemas") {
        for schema in schemas.values_mut() {
            *schema = Value::Object(Map::new());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Places in the document
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// A place in the document, shown as `paths./orders/{id}.get.parameters[0].schema`.
#[derive(Clone, Debug, Default)]
struct Loc(Vec<Step>);

impl Loc {
    fn key(&self, key: &str) -> Loc {
        let mut steps = self.0.clone();
        steps.push(Step::Key(key.to_owned()));
        Loc(steps)
    }

    fn index(&self, index: usize) -> Loc {
        let mut steps = self.0.clone();
        steps.push(Step::Index(index));
        Loc(steps)
    }

    fn find<'v>(&self, root: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(root, |value, step| match step {
            Step::Key(key) => value.get(key.as_str()),
            Step::Index(index) => value.get(*index),
        })
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        for (i, step) in self.0.iter().enumerate() {
            match step {
                Step::Key(key) if i == 0 => f.write_str(key)?,
                Step::Key(key) => write!(f, ".{key}")?,
                Step::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// The component name `reference` designates in `#/components/<section>/`, or
/// the refusal of any other reference, found at `loc`.
fn component_name(
    reference: &str,
    section: &str,
    loc: &dyn fmt::Display,
) -> Result<String, ApiSchemaError> {
    let Some(pointer) = reference.strip_prefix('#') else {
        return Err(unsupported(
            loc,
            format!("a $ref to another document ({reference})"),
        ));
    };
    let prefix = format!("/components/{section}/");
    match pointer.strip_prefix(prefix.as_str()) {
        Some(name) if !name.is_empty() && !name.contains('/') => {
            // JSON pointer escapes, in the order RFC 6901 prescribes.
            Ok(name.replace("~1", "/").replace("~0", "~"))
        }
        _ => Err(unsupported(
            loc,
            format!("a $ref to {reference} (only #/components/{section}/<name> is supported here)"),
        )),
    }
}

/// Follows a chain of `$ref`s among the components of one section, starting
/// from `item` found at `loc`, and returns the object with its location.
fn follow_refs<'a, T>(
    item: &'a ReferenceOr<T>,
    loc: Loc,
    section: &str,
    lookup: impl Fn(&str) -> Option<&'a ReferenceOr<T>>,
) -> Result<(&'a T, Loc), ApiSchemaError> {
    let mut current = item;
    let mut loc = loc;
    let mut seen: Vec<String> = Vec::new();
    loop {
        match current {
            ReferenceOr::Item(value) => return Ok((value, loc)),
            ReferenceOr::Reference { reference } => {
                let name = component_name(reference, section, &loc)?;
                if seen.contains(&name) {
                    return Err(unsupported(loc, format!("a recursive $ref ({reference})")));
                }
                current = lookup(&name)
                    .ok_or_else(|| invalid(format!("{loc}: $ref {reference} points to nothing")))?;
                loc = Loc::default().key("components").key(section).key(&name);
                seen.push(name);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------

/// Checks schemas (plain JSON from the document) and inlines their `$ref`s
/// against the document's `components.schemas`.
struct SchemaResolver<'a> {
    /// `components.schemas`, as written.
    schemas: Option<&'a Map<String, Value>>,
    /// The components whose expansion is in progress, to detect cycles.
    stack: Vec<String>,
    /// How many more JSON values the resolved schemas may hold.
    budget: usize,
}

impl SchemaResolver<'_> {
    fn spend(&mut self, values: usize, loc: &str) -> Result<(), ApiSchemaError> {
        if values > self.budget {
            return Err(ApiSchemaError::Limit(format!(
                "the schemas hold more than {MAX_SCHEMA_VALUES} JSON values once $refs are \
                 inlined (reached at {loc})"
            )));
        }
        self.budget -= values;
        Ok(())
    }

    /// A copy of the schema `schema` found at `loc`, nested `depth` levels deep,
    /// with every `$ref` replaced by what it designates.
    fn resolve(
        &mut self,
        schema: &Value,
        loc: &str,
        depth: usize,
    ) -> Result<Value, ApiSchemaError> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(ApiSchemaError::Limit(format!(
                "schemas nest more than {MAX_SCHEMA_DEPTH} levels deep at {loc}"
            )));
        }
        self.spend(1, loc)?;
        let Value::Object(object) = schema else {
            return Err(invalid(format!("{loc}: a schema must be an object")));
        };
        if let Some(reference) = object.get("$ref") {
            let Value::String(reference) = reference else {
                return Err(invalid(format!("{loc}: $ref must be a string")));
            };
            let name = component_name(reference, "schemas", &loc)?;
            if self.stack.contains(&name) {
                return Err(unsupported(loc, format!("a recursive $ref ({reference})")));
            }
            let target = self
                .schemas
                .and_then(|schemas| schemas.get(&name))
                .ok_or_else(|| invalid(format!("{loc}: $ref {reference} points to nothing")))?;
            let target_loc = format!("components.schemas.{name}");
            self.stack.push(name);
            let resolved = self.resolve(target, &target_loc, depth + 1);
            self.stack.pop();
            return resolved;
        }

        let mut out = Map::new();
        for (key, value) in object {
            let resolved = match key.as_str() {
                "properties" => {
                    let Value::Object(properties) = value else {
                        return Err(invalid(format!("{loc}.properties must be an object")));
                    };
                    let mut resolved = Map::new();
                    for (name, property) in properties {
                        let property_loc = format!("{loc}.properties.{name}");
                        resolved.insert(
                            name.clone(),
                            self.resolve(property, &property_loc, depth + 1)?,
                        );
                    }
                    Value::Object(resolved)
                }
                "items" | "not" => self.resolve(value, &format!("{loc}.{key}"), depth + 1)?,
                "additionalProperties" => match value {
                    Value::Bool(_) => {
                        self.spend(1, loc)?;
                        value.clone()
                    }
                    _ => self.resolve(value, &format!("{loc}.{key}"), depth + 1)?,
                },
                "allOf" | "oneOf" | "anyOf" => {
                    let Value::Array(members) = value else {
                        return Err(invalid(format!("{loc}.{key} must be an array of schemas")));
                    };
                    let mut resolved = Vec::with_capacity(members.len());
                    for (i, member) in members.iter().enumerate() {
                        resolved.push(self.resolve(
                            member,
                            &format!("{loc}.{key}[{i}]"),
                            depth + 1,
                        )?);
                    }
                    Value::Array(resolved)
                }
                "type" => match value {
                    Value::String(t) if SCHEMA_TYPES.contains(&t.as_str()) => {
                        self.spend(1, loc)?;
                        value.clone()
                    }
                    _ => {
                        return Err(invalid(format!(
                            "{loc}.type must be one of {}, not {value}",
                            SCHEMA_TYPES.join(", ")
                        )));
                    }
                },
                "required" => match value {
                    Value::Array(names) if names.iter().all(Value::is_string) => {
                        self.spend(1 + names.len(), loc)?;
                        value.clone()
                    }
                    _ => {
                        return Err(invalid(format!(
                            "{loc}.required must be an array of strings"
                        )))
                    }
                },
                _ => {
                    self.spend(count_values(value, self.budget.saturating_add(1)), loc)?;
                    value.clone()
                }
            };
            out.insert(key.clone(), resolved);
        }
        Ok(Value::Object(out))
    }
}

/// How many JSON values `value` holds, counting no further than `cap`.
fn count_values(value: &Value, cap: usize) -> usize {
    let mut count = 0;
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        count += 1;
        if count >= cap {
            return count;
        }
        match v {
            Value::Array(items) => pending.extend(items.iter()),
            Value::Object(map) => pending.extend(map.values()),
            _ => {}
        }
    }
    count
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// Turns the checked document into [`ApiOperation`]s: its structure from
/// `openapiv3`, its schemas from the plain JSON value.
struct Builder<'a> {
    doc: &'a OpenAPI,
    raw: &'a Value,
    budget: usize,
}

impl<'a> Builder<'a> {
    fn new(doc: &'a OpenAPI, raw: &'a Value) -> Self {
        Builder {
            doc,
            raw,
            budget: MAX_SCHEMA_VALUES,
        }
    }

    fn operations(mut self) -> Result<Vec<ApiOperation>, ApiSchemaError> {
        let doc = self.doc;
        let mut count = 0usize;
        for (path, item) in doc.paths.iter() {
            match item {
                ReferenceOr::Reference { reference } => {
                    return Err(unsupported(
                        format!("paths.{path}"),
                        format!("a path item $ref ({reference})"),
                    ));
                }
                ReferenceOr::Item(item) => count += item.iter().count(),
            }
        }
        if count == 0 {
            return Err(no_operations());
        }
        if count > MAX_OPERATIONS {
            return Err(ApiSchemaError::Limit(format!(
                "the document defines {count} operations; at most {MAX_OPERATIONS} are allowed"
            )));
        }

        let mut operations: Vec<ApiOperation> = Vec::with_capacity(count);
        let mut names: HashMap<String, Loc> = HashMap::new();
        for (path, item) in doc.paths.iter() {
            let ReferenceOr::Item(item) = item else {
                continue;
            };
            let item_loc = Loc::default().key("paths").key(path);
            for (method, op) in item.iter() {
                let loc = item_loc.key(method);
                if !matches!(method, "get" | "post" | "put" | "patch" | "delete") {
                    return Err(unsupported(
                        loc,
                        format!("the {} method", method.to_ascii_uppercase()),
                    ));
                }
                let operation =
                    self.operation(path, method, &item.parameters, &item_loc, op, &loc)?;
                let name = operation.name();
                if let Some(first) = names.get(&name) {
                    return Err(unsupported(
                        loc,
                        format!("two operations named {name} (the other is {first})"),
                    ));
                }
                names.insert(name, loc);
                operations.push(operation);
            }
        }
        Ok(operations)
    }

    /// The schema written at `loc`, checked, with its `$ref`s inlined.
    fn schema_at(&mut self, loc: &Loc) -> Result<Value, ApiSchemaError> {
        let raw = self.raw;
        let schema = loc
            .find(raw)
            .ok_or_else(|| invalid(format!("{loc}: the schema cannot be found")))?;
        let schemas = raw
            .get("components")
            .and_then(|c| c.get("schemas"))
            .and_then(Value::as_object);
        let mut resolver = SchemaResolver {
            schemas,
            stack: Vec::new(),
            budget: self.budget,
        };
        let resolved = resolver.resolve(schema, &loc.to_string(), 0);
        self.budget = resolver.budget;
        resolved
    }

    fn operation(
        &mut self,
        path: &str,
        method: &str,
        path_parameters: &[ReferenceOr<Parameter>],
        item_loc: &Loc,
        op: &Operation,
        loc: &Loc,
    ) -> Result<ApiOperation, ApiSchemaError> {
        let shared = self.parameter_list(path_parameters, &item_loc.key("parameters"))?;
        let own = self.parameter_list(&op.parameters, &loc.key("parameters"))?;

        // Operation-level parameters override path-level ones of the same
        // name and location, in place; the others follow.
        let mut merged: Vec<(ApiParameter, Loc)> = Vec::with_capacity(shared.len() + own.len());
        let mut used = vec![false; own.len()];
        for (parameter, parameter_loc) in shared {
            let replacement = own
                .iter()
                .position(|(p, _)| p.name == parameter.name && p.location == parameter.location);
            match replacement {
                Some(i) => {
                    used[i] = true;
                    merged.push(own[i].clone());
                }
                None => merged.push((parameter, parameter_loc)),
            }
        }
        for (i, entry) in own.into_iter().enumerate() {
            if !used[i] {
                merged.push(entry);
            }
        }

        // The tool input has one namespace for all parameters.
        let mut by_name: HashMap<&str, &Loc> = HashMap::new();
        for (parameter, parameter_loc) in &merged {
            if let Some(other) = by_name.insert(&parameter.name, parameter_loc) {
                return Err(unsupported(
                    parameter_loc,
                    format!(
                        "two parameters named `{}` (the other is {other})",
                        parameter.name
                    ),
                ));
            }
        }

        check_path_template(path, loc, &merged)?;

        let request_body = match &op.request_body {
            None => None,
            Some(body) => Some(self.request_body(body, loc)?),
        };
        if let Some((body, body_loc)) = &request_body {
            let properties = body.schema.get("properties").and_then(Value::as_object);
            for name in properties.into_iter().flat_map(|p| p.keys()) {
                if by_name.contains_key(name.as_str()) {
                    return Err(unsupported(
                        body_loc.key("properties").key(name),
                        format!("a body property named `{name}` that is also a parameter name"),
                    ));
                }
            }
        }

        let description = non_blank(&op.description).or_else(|| non_blank(&op.summary));
        Ok(ApiOperation {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            operation_id: op.operation_id.clone(),
            description,
            parameters: merged.into_iter().map(|(p, _)| p).collect(),
            request_body: request_body.map(|(body, _)| body),
        })
    }

    /// The parameters of one list (path item or operation), with their
    /// places in the document; ignored headers are left out.
    fn parameter_list(
        &mut self,
        list: &[ReferenceOr<Parameter>],
        loc: &Loc,
    ) -> Result<Vec<(ApiParameter, Loc)>, ApiSchemaError> {
        let mut out: Vec<(ApiParameter, Loc)> = Vec::with_capacity(list.len());
        for (i, parameter) in list.iter().enumerate() {
            let parameter_loc = loc.index(i);
            let Some(parameter) = self.parameter(parameter, parameter_loc.clone())? else {
                continue;
            };
            if out
                .iter()
                .any(|(p, _)| p.name == parameter.name && p.location == parameter.location)
            {
                return Err(invalid(format!(
                    "{parameter_loc}: the {} parameter `{}` is listed twice",
                    parameter.location.as_str(),
                    parameter.name
                )));
            }
            out.push((parameter, parameter_loc));
        }
        Ok(out)
    }

    fn parameter(
        &mut self,
        parameter: &ReferenceOr<Parameter>,
        loc: Loc,
    ) -> Result<Option<ApiParameter>, ApiSchemaError> {
        let doc = self.doc;
        let lookup = |name: &str| doc.components.as_ref().and_then(|c| c.parameters.get(name));
        let (parameter, loc) = follow_refs(parameter, loc, "parameters", lookup)?;
        let (location, data) = match parameter {
            Parameter::Path { parameter_data, .. } => (ParameterLocation::Path, parameter_data),
            Parameter::Query { parameter_data, .. } => (ParameterLocation::Query, parameter_data),
            Parameter::Header { parameter_data, .. } => (ParameterLocation::Header, parameter_data),
            Parameter::Cookie { parameter_data, .. } => {
                return Err(unsupported(
                    loc,
                    format!("the cookie parameter `{}`", parameter_data.name),
                ));
            }
        };
        if data.name.is_empty() {
            return Err(invalid(format!("{loc}: a parameter has an empty name")));
        }
        if location == ParameterLocation::Header
            && IGNORED_HEADERS.contains(&data.name.to_ascii_lowercase().as_str())
        {
            return Ok(None);
        }
        let schema_loc = match &data.format {
            ParameterSchemaOrContent::Schema(_) => loc.key("schema"),
            ParameterSchemaOrContent::Content(content) => {
                let Some((content_type, media)) = content.first() else {
                    return Err(unsupported(
                        loc.key("content"),
                        "a parameter without a schema",
                    ));
                };
                let schema_loc = loc.key("content").key(content_type).key("schema");
                if media.schema.is_none() {
                    return Err(unsupported(schema_loc, "a parameter without a schema"));
                }
                schema_loc
            }
        };
        let schema = self.schema_at(&schema_loc)?;
        Ok(Some(ApiParameter {
            name: data.name.clone(),
            location,
            description: non_blank(&data.description),
            required: location == ParameterLocation::Path || data.required,
            schema,
        }))
    }

    /// The request body, with the place of its schema.
    fn request_body(
        &mut self,
        body: &ReferenceOr<openapiv3::RequestBody>,
        loc: &Loc,
    ) -> Result<(ApiRequestBody, Loc), ApiSchemaError> {
        let doc = self.doc;
        let lookup = |name: &str| {
            doc.components
                .as_ref()
                .and_then(|c| c.request_bodies.get(name))
        };
        let (body, body_loc) = follow_refs(body, loc.key("requestBody"), "requestBodies", lookup)?;
        let Some((content_type, media)) = body.content.first() else {
            return Err(unsupported(
                body_loc.key("content"),
                "a request body with no media type",
            ));
        };
        let schema_loc = body_loc.key("content").key(content_type).key("schema");
        let not_object = || {
            unsupported(
                &schema_loc,
                "a request body that is not an object with properties",
            )
        };
        if media.schema.is_none() {
            return Err(not_object());
        }
        let schema = self.schema_at(&schema_loc)?;
        let is_object = match schema.get("type") {
            None => true,
            Some(t) => t == "object",
        };
        let has_properties =
            matches!(schema.get("properties"), Some(Value::Object(p)) if !p.is_empty());
        if !is_object || !has_properties {
            return Err(not_object());
        }
        Ok((
            ApiRequestBody {
                content_type: content_type.clone(),
                description: non_blank(&body.description),
                required: body.required,
                schema,
            },
            schema_loc,
        ))
    }
}

fn non_blank(text: &Option<String>) -> Option<String> {
    text.as_ref().filter(|t| !t.trim().is_empty()).cloned()
}

/// Every `{variable}` of the path template needs a path parameter, and every
/// path parameter a `{variable}`.
fn check_path_template(
    path: &str,
    loc: &Loc,
    parameters: &[(ApiParameter, Loc)],
) -> Result<(), ApiSchemaError> {
    let mut variables: Vec<&str> = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(invalid(format!(
                "paths.{path}: the path has an unclosed `{{`"
            )));
        };
        variables.push(&after[..end]);
        rest = &after[end + 1..];
    }
    for variable in &variables {
        let found = parameters
            .iter()
            .any(|(p, _)| p.location == ParameterLocation::Path && p.name == *variable);
        if !found {
            return Err(invalid(format!(
                "{loc}: the path variable {{{variable}}} has no path parameter"
            )));
        }
    }
    for (parameter, parameter_loc) in parameters {
        if parameter.location == ParameterLocation::Path
            && !variables.contains(&parameter.name.as_str())
        {
            return Err(invalid(format!(
                "{parameter_loc}: the path parameter `{}` does not appear in the path {path}",
                parameter.name
            )));
        }
    }
    Ok(())
}

fn is_valid_tool_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl ApiOperation {
    /// One JSON schema object (`{"type":"object","properties":{...},"required":[...]}`)
    /// for a model's tool call: every path/query/header parameter as a property
    /// (its description kept), plus the request body's properties (a name
    /// shared by a parameter and a body property is refused at parse time).
    /// `required` lists the required parameters, then the body's required
    /// properties when the body itself is required; it is always present,
    /// possibly empty.
    pub fn tool_input_schema(&self) -> Value {
        let mut properties = Map::new();
        let mut required: Vec<Value> = Vec::new();
        for parameter in &self.parameters {
            let mut schema = parameter.schema.clone();
            if let (Some(description), Value::Object(object)) =
                (&parameter.description, &mut schema)
            {
                object.insert("description".into(), Value::String(description.clone()));
            }
            properties.insert(parameter.name.clone(), schema);
            if parameter.required {
                required.push(Value::String(parameter.name.clone()));
            }
        }
        if let Some(body) = &self.request_body {
            if let Some(Value::Object(body_properties)) = body.schema.get("properties") {
                for (name, schema) in body_properties {
                    properties.insert(name.clone(), schema.clone());
                }
            }
            let body_required = match body.schema.get("required") {
                Some(Value::Array(names)) if body.required => names.as_slice(),
                _ => &[],
            };
            for name in body_required {
                if name.is_string() && !required.contains(name) {
                    required.push(name.clone());
                }
            }
        }
        let mut schema = Map::new();
        schema.insert("type".into(), Value::String("object".into()));
        schema.insert("properties".into(), Value::Object(properties));
        schema.insert("required".into(), Value::Array(required));
        Value::Object(schema)
    }

    /// A stable short name for the operation: its operationId if present and it
    /// matches `^[A-Za-z0-9_-]{1,64}$`, else `<method lower>_<path with every
    /// char outside [A-Za-z0-9] replaced by '_', runs of '_' collapsed,
    /// trimmed>` cut to 64 chars (just the method when the path has no
    /// alphanumeric character).
    pub fn name(&self) -> String {
        if let Some(id) = self
            .operation_id
            .as_deref()
            .filter(|id| is_valid_tool_name(id))
        {
            return id.to_owned();
        }
        let mut slug = String::with_capacity(self.path.len());
        for c in self.path.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c);
            } else if !slug.is_empty() && !slug.ends_with('_') {
                slug.push('_');
            }
        }
        let slug = slug.trim_end_matches('_');
        let mut name = self.method.to_ascii_lowercase();
        if !slug.is_empty() {
            name.push('_');
            name.push_str(slug);
        }
        // Only ASCII is left, so any byte index is a char boundary.
        name.truncate(MAX_NAME_LEN);
        let trimmed = name.trim_end_matches('_').len();
        name.truncate(trimmed);
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ORDERS_JSON: &str = r##"{
      "openapi": "3.0.0",
      "info": {"title": "Orders", "version": "1.0.0"},
      "paths": {
        "/orders/{orderId}": {
          "get": {
            "summary": "Get an order",
            "description": "Returns one order by its id.",
            "operationId": "getOrder",
            "parameters": [
              {"name": "orderId", "in": "path", "description": "The order id.",
               "schema": {"type": "string"}},
              {"name": "verbose", "in": "query", "schema": {"type": "boolean"}}
            ],
            "responses": {"200": {"description": "The order"}}
          }
        },
        "/orders": {
          "post": {
            "summary": "Create an order",
            "operationId": "createOrder",
            "requestBody": {
              "description": "The new order.",
              "required": true,
              "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Order"}}
              }
            },
            "responses": {"201": {"description": "Created"}}
          }
        }
      },
      "components": {
        "schemas": {
          "Order": {
            "type": "object",
            "required": ["item", "quantity"],
            "properties": {
              "item": {"type": "string", "description": "What to order."},
              "quantity": {"type": "integer", "minimum": 1},
              "address": {"$ref": "#/components/schemas/Address"}
            }
          },
          "Address": {
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
          }
        }
      }
    }"##;

    const ORDERS_YAML: &str = r##"
openapi: 3.0.0
info:
  title: Orders
  version: 1.0.0
paths:
  /orders/{orderId}:
    get:
      summary: Get an order
      description: Returns one order by its id.
      operationId: getOrder
      parameters:
        - name: orderId
          in: path
          description: The order id.
          schema:
            type: string
        - name: verbose
          in: query
          schema:
            type: boolean
      responses:
        200:
          description: The order
  /orders:
    post:
      summary: Create an order
      operationId: createOrder
      requestBody:
        description: The new order.
        required: true
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/Order'
      responses:
        '201':
          description: Created
components:
  schemas:
    Order:
      type: object
      required: [item, quantity]
      properties:
        item:
          type: string
          description: What to order.
        quantity:
          type: integer
          minimum: 1
        address:
          $ref: '#/components/schemas/Address'
    Address:
      type: object
      properties:
        street: {type: string}
        city: {type: string}
"##;

    /// A minimal document with the given `paths` (and optional `components`).
    fn doc(paths: Value, components: Option<Value>) -> String {
        let mut d = json!({
            "openapi": "3.0.3",
            "info": {"title": "t", "version": "1"},
            "paths": paths,
        });
        if let Some(c) = components {
            d["components"] = c;
        }
        d.to_string()
    }

    fn responses() -> Value {
        json!({"200": {"description": "ok"}})
    }

    fn unsupported_at(result: Result<Vec<ApiOperation>, ApiSchemaError>) -> (String, String) {
        match result {
            Err(ApiSchemaError::Unsupported { path, what }) => (path, what),
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }

    fn limit_message(result: Result<Vec<ApiOperation>, ApiSchemaError>) -> String {
        match result {
            Err(ApiSchemaError::Limit(message)) => message,
            other => panic!("expected Limit, got {other:?}"),
        }
    }

    fn invalid_message(result: Result<Vec<ApiOperation>, ApiSchemaError>) -> String {
        match result {
            Err(ApiSchemaError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn json_document_gives_its_operations() {
        let ops = parse_api_schema(ORDERS_JSON).expect("parses");
        assert_eq!(ops.len(), 2);

        let get = ops.iter().find(|o| o.method == "GET").expect("a GET");
        assert_eq!(get.path, "/orders/{orderId}");
        assert_eq!(get.operation_id.as_deref(), Some("getOrder"));
        assert_eq!(
            get.description.as_deref(),
            Some("Returns one order by its id.")
        );
        assert_eq!(get.request_body, None);
        assert_eq!(
            get.parameters,
            vec![
                ApiParameter {
                    name: "orderId".into(),
                    location: ParameterLocation::Path,
                    description: Some("The order id.".into()),
                    required: true,
                    schema: json!({"type": "string"}),
                },
                ApiParameter {
                    name: "verbose".into(),
                    location: ParameterLocation::Query,
                    description: None,
                    required: false,
                    schema: json!({"type": "boolean"}),
                },
            ]
        );

        let post = ops.iter().find(|o| o.method == "POST").expect("a POST");
        assert_eq!(post.path, "/orders");
        // No description: the summary stands in.
        assert_eq!(post.description.as_deref(), Some("Create an order"));
        assert!(post.parameters.is_empty());
        let body = post.request_body.as_ref().expect("a body");
        assert_eq!(body.content_type, "application/json");
        assert_eq!(body.description.as_deref(), Some("The new order."));
        assert!(body.required);
        assert_eq!(
            body.schema,
            json!({
                "type": "object",
                "required": ["item", "quantity"],
                "properties": {
                    "item": {"type": "string", "description": "What to order."},
                    "quantity": {"type": "integer", "minimum": 1},
                    "address": {
                        "type": "object",
                        "properties": {"street": {"type": "string"}, "city": {"type": "string"}}
                    }
                }
            })
        );
    }

    #[test]
    fn yaml_document_gives_the_same_operations() {
        let from_json = parse_api_schema(ORDERS_JSON).expect("parses");
        let from_yaml = parse_api_schema(ORDERS_YAML).expect("parses");
        assert_eq!(from_json, from_yaml);
    }

    #[test]
    fn operations_serialize_with_lowercase_locations() {
        let ops = parse_api_schema(ORDERS_JSON).expect("parses");
        let value = serde_json::to_value(&ops[0]).expect("serializes");
        assert_eq!(value["parameters"][0]["location"], "path");
        let back: ApiOperation = serde_json::from_value(value).expect("deserializes");
        assert_eq!(back, ops[0]);
    }

    #[test]
    fn tool_input_schema_for_parameters() {
        let ops = parse_api_schema(ORDERS_JSON).expect("parses");
        let get = ops.iter().find(|o| o.method == "GET").expect("a GET");
        let schema = get.tool_input_schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["properties"]["orderId"],
            json!({"type": "string", "description": "The order id."})
        );
        assert_eq!(schema["properties"]["verbose"], json!({"type": "boolean"}));
        assert_eq!(
            schema["properties"].as_object().expect("an object").len(),
            2
        );
        assert_eq!(schema["required"], json!(["orderId"]));
        assert_eq!(schema.as_object().expect("an object").len(), 3);
    }

    #[test]
    fn tool_input_schema_for_a_body() {
        let ops = parse_api_schema(ORDERS_JSON).expect("parses");
        let post = ops.iter().find(|o| o.method == "POST").expect("a POST");
        let schema = post.tool_input_schema();
        assert_eq!(schema["type"], "object");
        let properties = schema["properties"].as_object().expect("an object");
        assert_eq!(properties.len(), 3);
        assert_eq!(
            properties["item"],
            json!({"type": "string", "description": "What to order."})
        );
        assert_eq!(
            properties["quantity"],
            json!({"type": "integer", "minimum": 1})
        );
        assert_eq!(properties["address"]["type"], "object");
        assert_eq!(
            properties["address"]["properties"]["city"],
            json!({"type": "string"})
        );
        assert_eq!(schema["required"], json!(["item", "quantity"]));
    }

    #[test]
    fn tool_input_schema_mixes_parameters_and_an_optional_body() {
        let text = doc(
            json!({"/carts/{cartId}/items": {"put": {
                "parameters": [
                    {"name": "cartId", "in": "path", "schema": {"type": "integer"}},
                    {"name": "X-Trace", "in": "header", "required": true,
                     "description": "Trace id", "schema": {"type": "string"}}
                ],
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object", "required": ["sku"],
                    "properties": {"sku": {"type": "string"}}
                }}}},
                "responses": responses()
            }}}),
            None,
        );
        let ops = parse_api_schema(&text).expect("parses");
        let schema = ops[0].tool_input_schema();
        assert_eq!(
            schema,
            json!({
                "type": "object",
                "properties": {
                    "cartId": {"type": "integer"},
                    "X-Trace": {"type": "string", "description": "Trace id"},
                    "sku": {"type": "string"}
                },
                // The body is optional, so its required property is not.
                "required": ["cartId", "X-Trace"]
            })
        );
        assert_eq!(ops[0].name(), "put_carts_cartId_items");
    }

    #[test]
    fn path_level_parameters_apply_to_each_operation() {
        let text = doc(
            json!({"/stores/{storeId}/items": {
                "parameters": [
                    {"name": "storeId", "in": "path", "description": "The store.",
                     "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "description": "Shared.",
                     "schema": {"type": "integer"}}
                ],
                "get": {
                    "operationId": "listItems",
                    "parameters": [
                        {"name": "limit", "in": "query", "required": true,
                         "description": "Overridden.", "schema": {"type": "integer", "maximum": 100}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}}
                    ],
                    "responses": responses()
                },
                "delete": {"operationId": "clearItems", "responses": responses()}
            }}),
            None,
        );
        let ops = parse_api_schema(&text).expect("parses");
        assert_eq!(ops.len(), 2);
        let get = ops.iter().find(|o| o.method == "GET").expect("a GET");
        let names: Vec<&str> = get.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["storeId", "limit", "cursor"]);
        assert_eq!(
            get.parameters[1].description.as_deref(),
            Some("Overridden.")
        );
        assert!(get.parameters[1].required);
        assert_eq!(
            get.parameters[1].schema,
            json!({"type": "integer", "maximum": 100})
        );

        let delete = ops.iter().find(|o| o.method == "DELETE").expect("a DELETE");
        let names: Vec<&str> = delete.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["storeId", "limit"]);
        assert!(delete.parameters[0].required);
        assert!(!delete.parameters[1].required);
        assert_eq!(delete.parameters[1].description.as_deref(), Some("Shared."));
    }

    #[test]
    fn component_parameters_and_request_bodies_are_resolved() {
        // Raw text: the order of the media types matters.
        let text = r##"{
          "openapi": "3.0.0",
          "info": {"title": "t", "version": "1"},
          "paths": {"/things/{id}": {"patch": {
            "parameters": [{"$ref": "#/components/parameters/Id"}],
            "requestBody": {"$ref": "#/components/requestBodies/Patch"},
            "responses": {"200": {"description": "ok"}}
          }}},
          "components": {
            "parameters": {
              "Id": {"$ref": "#/components/parameters/RealId"},
              "RealId": {"name": "id", "in": "path", "required": true,
                         "schema": {"$ref": "#/components/schemas/Id"}}
            },
            "requestBodies": {"Patch": {"required": true, "content": {
              "application/merge-patch+json": {"schema": {"$ref": "#/components/schemas/Thing"}},
              "application/json": {"schema": {"type": "string"}}
            }}},
            "schemas": {
              "Id": {"type": "string", "format": "uuid"},
              "Thing": {"properties": {"tags": {"type": "array",
                  "items": {"$ref": "#/components/schemas/Id"}}}}
            }
          }
        }"##;
        let ops = parse_api_schema(text).expect("parses");
        let op = &ops[0];
        assert_eq!(op.parameters[0].name, "id");
        assert_eq!(
            op.parameters[0].schema,
            json!({"type": "string", "format": "uuid"})
        );
        let body = op.request_body.as_ref().expect("a body");
        assert_eq!(body.content_type, "application/merge-patch+json");
        assert_eq!(
            body.schema,
            json!({"properties": {"tags": {"type": "array",
                "items": {"type": "string", "format": "uuid"}}}})
        );
    }

    #[test]
    fn cookie_parameter_is_refused_with_its_path() {
        let text = doc(
            json!({"/orders": {"get": {
                "parameters": [
                    {"name": "q", "in": "query", "schema": {"type": "string"}},
                    {"name": "session", "in": "cookie", "schema": {"type": "string"}}
                ],
                "responses": responses()
            }}}),
            None,
        );
        let err = parse_api_schema(&text).expect_err("refused");
        let message = err.to_string();
        assert!(
            message.contains("paths./orders.get.parameters[1]"),
            "{message}"
        );
        assert!(message.contains("cookie"), "{message}");
        let (path, _) = unsupported_at(Err(err));
        assert_eq!(path, "paths./orders.get.parameters[1]");
    }

    #[test]
    fn external_refs_are_refused() {
        let text = doc(
            json!({"/orders": {"post": {
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object",
                    "properties": {"customer": {"$ref": "customer.yaml#/Customer"}}
                }}}},
                "responses": responses()
            }}}),
            None,
        );
        let (path, what) = unsupported_at(parse_api_schema(&text));
        assert_eq!(
            path,
            "paths./orders.post.requestBody.content.application/json.schema.properties.customer"
        );
        assert!(what.contains("customer.yaml#/Customer"), "{what}");

        let text = doc(
            json!({"/orders": {"get": {
                "parameters": [{"$ref": "https://example.com/params.json#/limit"}],
                "responses": responses()
            }}}),
            None,
        );
        let (path, _) = unsupported_at(parse_api_schema(&text));
        assert_eq!(path, "paths./orders.get.parameters[0]");

        // A local ref outside the supported sections.
        let text = doc(
            json!({"/orders": {"get": {
                "parameters": [{"name": "q", "in": "query",
                                "schema": {"$ref": "#/components/schemas/A/properties/b"}}],
                "responses": responses()
            }}}),
            Some(json!({"schemas": {"A": {"type": "object"}}})),
        );
        let (path, _) = unsupported_at(parse_api_schema(&text));
        assert_eq!(path, "paths./orders.get.parameters[0].schema");
    }

    #[test]
    fn dangling_refs_are_invalid() {
        let text = doc(
            json!({"/orders": {"get": {
                "parameters": [{"name": "q", "in": "query",
                                "schema": {"$ref": "#/components/schemas/Missing"}}],
                "responses": responses()
            }}}),
            None,
        );
        let message = invalid_message(parse_api_schema(&text));
        assert!(
            message.contains("#/components/schemas/Missing"),
            "{message}"
        );
    }

    #[test]
    fn recursive_refs_are_refused() {
        let text = doc(
            json!({"/trees": {"post": {
                "requestBody": {"content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/Node"
                }}}},
                "responses": responses()
            }}}),
            Some(json!({"schemas": {
                "Node": {"type": "object", "properties": {
                    "value": {"type": "string"},
                    "children": {"type": "array", "items": {"$ref": "#/components/schemas/Node"}}
                }}
            }})),
        );
        let (path, what) = unsupported_at(parse_api_schema(&text));
        assert_eq!(path, "components.schemas.Node.properties.children.items");
        assert!(what.contains("a recursive $ref"), "{what}");

        // Self-referencing aliases, and cycles among parameters.
        let text = doc(
            json!({"/a": {"get": {
                "parameters": [{"name": "q", "in": "query",
                                "schema": {"$ref": "#/components/schemas/A"}}],
                "responses": responses()
            }}}),
            Some(json!({"schemas": {
                "A": {"$ref": "#/components/schemas/B"},
                "B": {"$ref": "#/components/schemas/A"}
            }})),
        );
        let (_, what) = unsupported_at(parse_api_schema(&text));
        assert!(what.contains("a recursive $ref"), "{what}");

        let text = doc(
            json!({"/a": {"get": {
                "parameters": [{"$ref": "#/components/parameters/P"}],
                "responses": responses()
            }}}),
            Some(json!({"parameters": {"P": {"$ref": "#/components/parameters/P"}}})),
        );
        let (path, what) = unsupported_at(parse_api_schema(&text));
        assert_eq!(path, "components.parameters.P");
        assert!(what.contains("a recursive $ref"), "{what}");
    }

    #[test]
    fn deep_schemas_hit_the_depth_limit() {
        // A chain of 40 components, each wrapping the next.
        let mut schemas = Map::new();
        for i in 0..40 {
            let next = if i == 39 {
                json!({"type": "string"})
            } else {
                json!({"$ref": format!("#/components/schemas/S{}", i + 1)})
            };
            schemas.insert(
                format!("S{i}"),
                json!({"type": "object", "properties": {"next": next}}),
            );
        }
        let text = doc(
            json!({"/deep": {"post": {
                "requestBody": {"content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/S0"
                }}}},
                "responses": responses()
            }}}),
            Some(json!({"schemas": Value::Object(schemas)})),
        );
        let message = limit_message(parse_api_schema(&text));
        assert!(message.contains("32"), "{message}");

        // Inline nesting deeper than the limit.
        let mut schema = json!({"type": "string"});
        for _ in 0..40 {
            schema = json!({"type": "array", "items": schema});
        }
        let text = doc(
            json!({"/deep": {"get": {
                "parameters": [{"name": "q", "in": "query", "schema": schema}],
                "responses": responses()
            }}}),
            None,
        );
        limit_message(parse_api_schema(&text));
    }

    /// A document whose only operation nests `depth` levels of `kind`.
    fn nested_document(kind: &str, depth: usize) -> String {
        let (open, close) = match kind {
            "items" => (r#"{"type":"array","items":"#, "}"),
            "properties" => (r#"{"type":"object","properties":{"a":"#, "}}"),
            "allOf" => (r#"{"allOf":["#, "]}"),
            "additionalProperties" => (r#"{"type":"object","additionalProperties":"#, "}"),
            "not" => (r#"{"not":"#, "}"),
            "callbacks" => (r#"{"responses":{},"callbacks":{"c":{"u":{"post":"#, "}}}}"),
            "example" => ("[", "]"),
            _ => unreachable!("{kind}"),
        };
        let (open, close) = (open.repeat(depth), close.repeat(depth));
        let operation = match kind {
            "callbacks" => format!(r#"{open}{{"responses":{{}}}}{close}"#),
            "example" => format!(
                r#"{{"responses":{{}},"parameters":[{{"name":"q","in":"query","schema":{{"type":"string","example":{open}1{close}}}}}]}}"#
            ),
            _ => format!(
                r#"{{"responses":{{}},"parameters":[{{"name":"q","in":"query","schema":{open}{{"type":"string"}}{close}}}]}}"#
            ),
        };
        format!(
            r#"{{"openapi":"3.0.0","info":{{"title":"t","version":"1"}},"paths":{{"/d":{{"get":{operation}}}}}}}"#
        )
    }

    const NESTED_KINDS: [&str; 7] = [
        "items",
        "properties",
        "allOf",
        "additionalProperties",
        "not",
        "callbacks",
        "example",
    ];

    #[test]
    fn deep_documents_do_not_overflow_a_small_callers_stack() {
        // The caller may be a Tokio worker with a 2 MiB stack, or less.
        let handle = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(|| {
                for kind in NESTED_KINDS {
                    for depth in [20, 33, 60, 120, 130, 5000] {
                        for yaml in [false, true] {
                            let mut text = nested_document(kind, depth);
                            if yaml {
                                // Flow-style YAML, read by serde_yaml.
                                text.insert_str(0, "# yaml\n");
                            }
                            let result = parse_api_schema(&text);
                            let schema_kind = !matches!(kind, "callbacks" | "example");
                            if depth <= 20 {
                                // Callbacks are not offered to the model; they are left alone.
                                assert!(result.is_ok(), "{kind} {depth} {yaml}: {result:?}");
                            } else if schema_kind || depth >= 130 {
                                assert!(result.is_err(), "{kind} {depth} {yaml}");
                            }
                        }
                    }
                }
            })
            .expect("thread");
        handle.join().expect("no panic");
    }

    #[test]
    fn the_deepest_documents_parse_in_an_eighth_of_the_parse_stack() {
        // As deep as the JSON and YAML parsers (and the YAML flow bound) let
        // through, found by trying; the worst needs about 512 KiB in a debug
        // build.
        let handle = std::thread::Builder::new()
            .stack_size(PARSE_STACK_BYTES / 8)
            .spawn(|| {
                for kind in NESTED_KINDS {
                    let depth = match kind {
                        "callbacks" => 30,
                        "properties" | "allOf" => 60,
                        _ => 120,
                    };
                    let json = nested_document(kind, depth);
                    let flow_yaml = format!("# yaml\n{json}");
                    let value: Value = serde_json::from_str(&json).expect("JSON");
                    let block_yaml = serde_yaml::to_string(&value).expect("YAML");
                    for text in [json, flow_yaml, block_yaml] {
                        match parse_on_this_stack(&text) {
                            Ok(_) => {}
                            Err(ApiSchemaError::Limit(message)) => {
                                assert!(message.contains("32 levels"), "{kind}: {message}")
                            }
                            Err(other) => panic!("{kind}: {other}"),
                        }
                    }
                }
            })
            .expect("thread");
        handle.join().expect("no panic");
    }

    #[test]
    fn exponential_ref_expansion_hits_the_value_limit() {
        // S0 has 8 properties referring to S1, which has 8 referring to S2...:
        // 8^10 schemas once inlined, all within the depth limit.
        let mut schemas = Map::new();
        for i in 0..10 {
            let mut properties = Map::new();
            for p in 0..8 {
                properties.insert(
                    format!("p{p}"),
                    json!({"$ref": format!("#/components/schemas/S{}", i + 1)}),
                );
            }
            schemas.insert(
                format!("S{i}"),
                json!({"type": "object", "properties": properties}),
            );
        }
        schemas.insert("S10".into(), json!({"type": "string"}));
        let text = doc(
            json!({"/big": {"post": {
                "requestBody": {"content": {"application/json": {"schema": {
                    "$ref": "#/components/schemas/S0"
                }}}},
                "responses": responses()
            }}}),
            Some(json!({"schemas": Value::Object(schemas)})),
        );
        let message = limit_message(parse_api_schema(&text));
        assert!(message.contains("JSON values"), "{message}");
    }

    #[test]
    fn yaml_alias_bombs_do_not_hang() {
        let mut yaml = String::from("openapi: 3.0.0\ninfo: {title: t, version: '1'}\nx-a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..12 {
            let prev = format!("*a{}", i - 1);
            yaml.push_str(&format!("x-a{i}: &a{i} [{}]\n", vec![prev; 9].join(", ")));
        }
        yaml.push_str("paths: {}\n");
        assert!(parse_api_schema(&yaml).is_err());
    }

    #[test]
    fn unsupported_methods_are_refused() {
        for method in ["head", "options", "trace"] {
            let text = doc(
                json!({"/orders": {
                    "get": {"responses": responses()},
                    method: {"responses": responses()}
                }}),
                None,
            );
            let (path, what) = unsupported_at(parse_api_schema(&text));
            assert_eq!(path, format!("paths./orders.{method}"));
            assert!(what.contains(&method.to_ascii_uppercase()), "{what}");
        }
    }

    #[test]
    fn bodies_that_are_not_objects_with_properties_are_refused() {
        let cases = [
            json!({"type": "array", "items": {"type": "string"}}),
            json!({"type": "string"}),
            json!({"type": "object"}),
            json!({"type": "object", "properties": {}}),
            json!({"type": "object", "additionalProperties": {"type": "string"}}),
            json!({"$ref": "#/components/schemas/Names"}),
        ];
        for schema in cases {
            let text = doc(
                json!({"/orders/{id}": {"get": {
                    "parameters": [{"name": "id", "in": "path", "schema": {"type": "string"}}],
                    "requestBody": {"content": {"application/json": {"schema": schema}}},
                    "responses": responses()
                }}}),
                Some(json!({"schemas": {"Names": {"type": "array", "items": {"type": "string"}}}})),
            );
            let (path, what) = unsupported_at(parse_api_schema(&text));
            assert_eq!(
                path, "paths./orders/{id}.get.requestBody.content.application/json.schema",
                "{schema}"
            );
            assert_eq!(what, "a request body that is not an object with properties");
        }

        // A media type without a schema, and a body without media types.
        let text = doc(
            json!({"/o": {"post": {
                "requestBody": {"content": {"text/plain": {}}},
                "responses": responses()
            }}}),
            None,
        );
        let (path, _) = unsupported_at(parse_api_schema(&text));
        assert_eq!(path, "paths./o.post.requestBody.content.text/plain.schema");
        let text = doc(
            json!({"/o": {"post": {"requestBody": {"content": {}}, "responses": responses()}}}),
            None,
        );
        let (path, _) = unsupported_at(parse_api_schema(&text));
        assert_eq!(path, "paths./o.post.requestBody.content");
    }

    #[test]
    fn body_property_and_parameter_with_one_name_are_refused() {
        let text = doc(
            json!({"/orders/{id}": {"put": {
                "parameters": [{"name": "id", "in": "path", "schema": {"type": "string"}}],
                "requestBody": {"content": {"application/json": {"schema": {
                    "type": "object", "properties": {"id": {"type": "string"}}
                }}}},
                "responses": responses()
            }}}),
            None,
        );
        let (path, what) = unsupported_at(parse_api_schema(&text));
        assert_eq!(
            path,
            "paths./orders/{id}.put.requestBody.content.application/json.schema.properties.id"
        );
        assert!(what.contains("`id`"), "{what}");
    }

    #[test]
    fn parameters_sharing_a_name_across_locations_are_refused() {
        let text = doc(
            json!({"/orders": {"get": {
                "parameters": [
                    {"name": "id", "in": "query", "schema": {"type": "string"}},
                    {"name": "id", "in": "header", "schema": {"type": "string"}}
                ],
                "responses": responses()
            }}}),
            None,
        );
        let (path, _) = unsupported_at(parse_api_schema(&text));
        assert_eq!(path, "paths./orders.get.parameters[1]");

        // The same name and location twice in one list is a broken document.
        let text = doc(
            json!({"/orders": {"get": {
                "parameters": [
                    {"name": "id", "in": "query", "schema": {"type": "string"}},
                    {"name": "id", "in": "query", "schema": {"type": "integer"}}
                ],
                "responses": responses()
            }}}),
            None,
        );
        invalid_message(parse_api_schema(&text));
    }

    #[test]
    fn path_template_and_path_parameters_must_match() {
        let text = doc(
            json!({"/orders/{orderId}": {"get": {"responses": responses()}}}),
            None,
        );
        let message = invalid_message(parse_api_schema(&text));
        assert!(message.contains("{orderId}"), "{message}");

        let text = doc(
            json!({"/orders": {"get": {
                "parameters": [{"name": "orderId", "in": "path", "schema": {"type": "string"}}],
                "responses": responses()
            }}}),
            None,
        );
        let message = invalid_message(parse_api_schema(&text));
        assert!(
            message.contains("paths./orders.get.parameters[0]"),
            "{message}"
        );
    }

    #[test]
    fn standard_headers_are_ignored() {
        let text = doc(
            json!({"/orders": {"get": {
                "parameters": [
                    {"name": "Authorization", "in": "header", "required": true, "schema": {"type": "string"}},
                    {"name": "accept", "in": "header", "schema": {"type": "string"}},
                    {"name": "X-Tenant", "in": "header", "schema": {"type": "string"}}
                ],
                "responses": responses()
            }}}),
            None,
        );
        let ops = parse_api_schema(&text).expect("parses");
        let names: Vec<&str> = ops[0].parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["X-Tenant"]);
        assert_eq!(ops[0].parameters[0].location, ParameterLocation::Header);
    }

    #[test]
    fn parameters_with_content_use_its_schema() {
        let text = doc(
            json!({"/search": {"get": {
                "parameters": [{"name": "filter", "in": "query",
                    "content": {"application/json": {"schema": {"type": "object",
                        "properties": {"color": {"type": "string"}}}}}}],
                "responses": responses()
            }}}),
            None,
        );
        let ops = parse_api_schema(&text).expect("parses");
        assert_eq!(
            ops[0].parameters[0].schema,
            json!({"type": "object", "properties": {"color": {"type": "string"}}})
        );
    }

    #[test]
    fn garbage_is_invalid() {
        for text in [
            "",
            "   ",
            "hello world",
            "{not json",
            "[1, 2, 3]",
            "- a\n- b\n",
            "key: [unclosed",
            "\u{0}\u{1}\u{2}",
            "{\"openapi\": \"3.0.0\"}}",
            "a: 1\n---\nb: 2\n",
        ] {
            match parse_api_schema(text) {
                Err(ApiSchemaError::Invalid(_)) => {}
                other => panic!("{text:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn other_versions_and_shapes_are_invalid() {
        let swagger = r#"{"swagger": "2.0", "info": {"title": "t", "version": "1"}, "paths": {}}"#;
        let message = invalid_message(parse_api_schema(swagger));
        assert!(message.contains("Swagger"), "{message}");

        let v4 =
            doc(json!({"/a": {"get": {"responses": responses()}}}), None).replace("3.0.3", "4.0.0");
        let message = invalid_message(parse_api_schema(&v4));
        assert!(message.contains("4.0.0"), "{message}");

        // A float in YAML, not a version string.
        let message = invalid_message(parse_api_schema(
            "openapi: 3.0\ninfo: {title: t, version: '1'}\npaths: {}\n",
        ));
        assert!(message.contains("version string"), "{message}");

        // A 3.1 document that openapiv3 cannot read: the parser's message.
        let v31 = doc(
            json!({"/a": {"get": {
                "parameters": [{"name": "q", "in": "query", "schema": {"type": ["string", "null"]}}],
                "responses": responses()
            }}}),
            None,
        )
        .replace("3.0.3", "3.1.0");
        invalid_message(parse_api_schema(&v31));

        // Missing required fields.
        let message = invalid_message(parse_api_schema(
            r#"{"openapi": "3.0.0", "paths": {"/a": {"get": {"responses": {}}}}}"#,
        ));
        assert!(message.contains("info"), "{message}");
    }

    #[test]
    fn documents_without_operations_are_invalid() {
        let expected = Err(ApiSchemaError::Invalid(
            "paths: the document defines no operations".into(),
        ));
        assert_eq!(
            parse_api_schema(r#"{"openapi": "3.0.0", "info": {"title": "t", "version": "1"}}"#),
            expected
        );
        assert_eq!(parse_api_schema(&doc(json!({}), None)), expected);
        assert_eq!(parse_api_schema(&doc(json!({"/a": {}}), None)), expected);
        assert_eq!(
            parse_api_schema("openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n"),
            expected
        );
    }

    #[test]
    fn payload_size_is_limited() {
        let mut text = doc(json!({"/a": {"get": {"responses": responses()}}}), None);
        assert!(parse_api_schema(&text).is_ok());
        text.push_str(&" ".repeat(MAX_PAYLOAD_BYTES));
        let message = limit_message(parse_api_schema(&text));
        assert!(message.contains("1048576"), "{message}");
    }

    #[test]
    fn operation_count_is_limited() {
        let paths = |n: usize| {
            let mut paths = Map::new();
            for i in 0..n {
                paths.insert(format!("/r{i}"), json!({"get": {"responses": responses()}}));
            }
            Value::Object(paths)
        };
        assert_eq!(
            parse_api_schema(&doc(paths(50), None))
                .expect("parses")
                .len(),
            50
        );
        let message = limit_message(parse_api_schema(&doc(paths(51), None)));
        assert!(message.contains("51"), "{message}");
    }

    #[test]
    fn names_come_from_the_operation_id_or_the_path() {
        let op = |method: &str, path: &str, id: Option<&str>| ApiOperation {
            method: method.into(),
            path: path.into(),
            operation_id: id.map(String::from),
            description: None,
            parameters: Vec::new(),
            request_body: None,
        };
        assert_eq!(
            op("GET", "/orders/{orderId}", Some("getOrder")).name(),
            "getOrder"
        );
        assert_eq!(
            op("GET", "/orders/{orderId}", None).name(),
            "get_orders_orderId"
        );
        assert_eq!(
            op("GET", "/orders/{orderId}", Some("get order!")).name(),
            "get_orders_orderId"
        );
        assert_eq!(
            op("GET", "/orders/{orderId}", Some("")).name(),
            "get_orders_orderId"
        );
        assert_eq!(
            op("DELETE", "/v1//a-b_c/{x}/", None).name(),
            "delete_v1_a_b_c_x"
        );
        assert_eq!(op("POST", "/", None).name(), "post");
        assert_eq!(op("PUT", "/café/ünï", None).name(), "put_caf_n");
        let long_id = "a".repeat(64);
        assert_eq!(op("GET", "/x", Some(&long_id)).name(), long_id);
        assert_eq!(op("GET", "/x", Some(&"a".repeat(65))).name(), "get_x");
        let long = op("PATCH", &format!("/{}", "segment/".repeat(20)), None).name();
        assert_eq!(long.len(), 64);
        assert!(long.starts_with("patch_segment_segment"));
        assert!(!long.ends_with('_'));
        assert!(is_valid_tool_name(&long));
    }

    #[test]
    fn parsed_names_are_used_and_duplicates_refused() {
        let ops = parse_api_schema(&doc(
            json!({"/orders/{orderId}": {"get": {
                "parameters": [{"name": "orderId", "in": "path", "schema": {"type": "string"}}],
                "responses": responses()
            }}}),
            None,
        ))
        .expect("parses");
        assert_eq!(ops[0].name(), "get_orders_orderId");

        let text = doc(
            json!({
                "/a": {"get": {"operationId": "same", "responses": responses()}},
                "/b": {"get": {"operationId": "same", "responses": responses()}}
            }),
            None,
        );
        let (path, what) = unsupported_at(parse_api_schema(&text));
        assert_eq!(path, "paths./b.get");
        assert!(what.contains("two operations named same"), "{what}");

        // Distinct paths that sanitize to one name.
        let text = doc(
            json!({
                "/a-b": {"get": {"responses": responses()}},
                "/a_b": {"get": {"responses": responses()}}
            }),
            None,
        );
        let (_, what) = unsupported_at(parse_api_schema(&text));
        assert!(what.contains("get_a_b"), "{what}");
    }

    #[test]
    fn path_item_refs_are_refused() {
        let text = doc(json!({"/a": {"$ref": "#/components/pathItems/A"}}), None);
        let (path, _) = unsupported_at(parse_api_schema(&text));
        assert_eq!(path, "paths./a");
    }

    #[test]
    fn composition_keywords_are_resolved() {
        let text = doc(
            json!({"/pets": {"post": {
                "requestBody": {"required": true, "content": {"application/json": {"schema": {
                    "type": "object",
                    "required": ["pet"],
                    "properties": {
                        "pet": {"oneOf": [
                            {"$ref": "#/components/schemas/Cat"},
                            {"$ref": "#/components/schemas/Dog"}
                        ]},
                        "labels": {"type": "object",
                                   "additionalProperties": {"$ref": "#/components/schemas/Label"}}
                    }
                }}}},
                "responses": responses()
            }}}),
            Some(json!({"schemas": {
                "Cat": {"type": "object", "properties": {"meows": {"type": "boolean"}}},
                "Dog": {"type": "object", "properties": {"barks": {"type": "boolean"}}},
                "Label": {"type": "string", "example": {"$ref": "not a reference"}}
            }})),
        );
        let ops = parse_api_schema(&text).expect("parses");
        let schema = ops[0].tool_input_schema();
        assert_eq!(
            schema["properties"]["pet"]["oneOf"][1],
            json!({"type": "object", "properties": {"barks": {"type": "boolean"}}})
        );
        assert_eq!(
            schema["properties"]["labels"]["additionalProperties"],
            json!({"type": "string", "example": {"$ref": "not a reference"}})
        );
        assert_eq!(schema["required"], json!(["pet"]));
    }

    #[test]
    fn yaml_flow_nesting_bound_is_small_for_ordinary_documents() {
        let line = |i: usize| {
            format!(
                "  p{i}: {{type: string, enum: ['a', \"b\", 'it''s'], pattern: '^[a-z]{{2,3}}$', \
                 description: Customer's \"nick\" name, x-map: {{\"k\": [1, [2, {{}}]], url: http://x/y}}}}\n  \
                 q{i}: [{{a: 1}}, {{b: [x, y]}}]  # a comment [with] brackets\n  \
                 r{i}: '[balanced] in quotes'\n  s{i}: |\n    text [with {{ brackets }}]\n"
            )
        };
        let mut yaml = String::from("properties:\n");
        for i in 0..400 {
            yaml.push_str(&line(i));
        }
        let bound = yaml_flow_nesting_bound(&yaml, usize::MAX);
        // The deepest real nesting: p{i}.x-map.k[1][2]{}.
        assert_eq!(bound, 5);
        // And serde_yaml reads it.
        serde_yaml::from_str::<serde_yaml::Value>(&yaml).expect("YAML");

        // An unbalanced bracket in text (a comment, a quoted or block scalar)
        // stays counted: 100 of them are fine, 200 are refused.
        let unbalanced = |n: usize| {
            let mut yaml = String::new();
            for i in 0..n {
                yaml.push_str(&format!("d{i}: 'range [start, end)'  # or {{\n"));
            }
            yaml
        };
        let bound = yaml_flow_nesting_bound(&unbalanced(50), usize::MAX);
        assert_eq!(bound, 100);
        assert!(
            yaml_flow_nesting_bound(&unbalanced(100), MAX_YAML_FLOW_NESTING)
                > MAX_YAML_FLOW_NESTING
        );
    }

    #[test]
    fn yaml_flow_nesting_bound_is_not_fooled() {
        let deep = |unit: &str| format!("a: {}", unit.repeat(200));
        for unit in [
            "[",
            "{a: ",
            "[ \"]\", ",
            "[ ']]]]', ",
            "[ # ]\n",
            "[ !<a]b> ",
            "[ \"\\\"]\", ",
            "[ ? ']', ",
            "[ &x ']', ",
            "[ 'x', ']', ",
            "[\n\u{feff}'x]', ",
            "[ \u{85}'x]', ",
        ] {
            let text = deep(unit);
            assert!(
                yaml_flow_nesting_bound(&text, MAX_YAML_FLOW_NESTING) > MAX_YAML_FLOW_NESTING,
                "{unit:?}"
            );
        }
        // Text that only looks like quotes before the real thing.
        let text = format!("d: |\n  x [ 'y\nb: {}", "[".repeat(200));
        assert!(yaml_flow_nesting_bound(&text, MAX_YAML_FLOW_NESTING) > MAX_YAML_FLOW_NESTING);
        let text = format!("d: x [ \"y\nb: {}", "[\"]\"".repeat(200));
        assert!(yaml_flow_nesting_bound(&text, MAX_YAML_FLOW_NESTING) > MAX_YAML_FLOW_NESTING);
    }

    #[test]
    fn deeply_nested_yaml_flow_is_refused_before_libyaml() {
        // libyaml takes time proportional to the flow depth for every token:
        // this payload took minutes before the bound.
        let text = format!("a: {}", "[".repeat(MAX_PAYLOAD_BYTES - 10));
        let started = std::time::Instant::now();
        let message = limit_message(parse_api_schema(&text));
        assert!(message.contains("flow collections"), "{message}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        let text = format!("# comment\n{}", "{a: ".repeat(MAX_PAYLOAD_BYTES / 5));
        limit_message(parse_api_schema(&text));
    }

    #[test]
    fn yaml_aliases_cannot_blow_the_document_up() {
        let mut yaml = String::from("openapi: 3.0.0\ninfo: {title: t, version: '1'}\nx-list: &a [");
        yaml.push_str(
            &vec!["aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"; 2000]
                .join(","),
        );
        yaml.push_str("]\nx-many: [");
        yaml.push_str(&vec!["*a"; 100_000].join(","));
        yaml.push_str("]\npaths: {}\n");
        assert!(yaml.len() < MAX_PAYLOAD_BYTES);
        let message = limit_message(parse_api_schema(&yaml));
        assert!(message.contains("aliases"), "{message}");
    }

    #[test]
    fn invalid_nested_schemas_fail_fast() {
        // openapiv3 alone takes time doubling per level on these.
        for kind in [
            "not",
            "items",
            "additionalProperties",
            "allOf",
            "properties",
        ] {
            let (open, close) = match kind {
                "items" => (r#"{"type":"array","items":"#, "}"),
                "properties" => (r#"{"type":"object","properties":{"a":"#, "}}"),
                "allOf" => (r#"{"allOf":["#, "]}"),
                "additionalProperties" => (r#"{"type":"object","additionalProperties":"#, "}"),
                _ => (r#"{"not":"#, "}"),
            };
            let schema = format!("{}{{\"type\":5}}{}", open.repeat(30), close.repeat(30));
            let text = format!(
                r#"{{"openapi":"3.0.0","info":{{"title":"t","version":"1"}},"paths":{{"/d":{{"get":{{"responses":{{}},"parameters":[{{"name":"q","in":"query","schema":{schema}}}]}}}}}}}}"#
            );
            let started = std::time::Instant::now();
            assert!(parse_api_schema(&text).is_err());
            assert!(
                started.elapsed() < std::time::Duration::from_secs(2),
                "{kind}"
            );
        }
    }

    #[test]
    fn schemas_are_checked() {
        for (schema, expected) in [
            (json!({"type": "strin"}), "type must be one of"),
            (json!({"type": ["string", "null"]}), "type must be one of"),
            (json!("string"), "a schema must be an object"),
            (
                json!({"type": "object", "properties": []}),
                "properties must be an object",
            ),
            (
                json!({"type": "object", "required": "a"}),
                "required must be an array of strings",
            ),
            (
                json!({"allOf": {"type": "string"}}),
                "allOf must be an array",
            ),
            (
                json!({"type": "array", "items": true}),
                "a schema must be an object",
            ),
            (json!({"$ref": 5}), "$ref must be a string"),
        ] {
            let text = doc(
                json!({"/a": {"get": {
                    "parameters": [{"name": "q", "in": "query", "schema": schema}],
                    "responses": responses()
                }}}),
                None,
            );
            let message = invalid_message(parse_api_schema(&text));
            assert!(message.contains(expected), "{message}");
            assert!(
                message.contains("paths./a.get.parameters[0].schema"),
                "{message}"
            );
        }
    }

    #[test]
    fn duplicate_keys_are_invalid() {
        let text = r#"{"openapi": "3.0.0", "openapi": "3.0.1", "info": {"title": "t", "version": "1"}, "paths": {}}"#;
        let message = invalid_message(parse_api_schema(text));
        assert!(message.contains("twice"), "{message}");
        let yaml = "openapi: 3.0.0\ninfo: {title: t, version: '1'}\npaths:\n  /a: {}\n  /a: {}\n";
        let message = invalid_message(parse_api_schema(yaml));
        assert!(message.contains("twice"), "{message}");
    }

    #[test]
    fn the_first_content_type_is_the_documents_first() {
        // Not alphabetical: the document's order.
        let text = r##"{"openapi": "3.0.0", "info": {"title": "t", "version": "1"},
          "paths": {"/z": {"post": {
            "requestBody": {"content": {
              "text/plain": {"schema": {"type": "object", "properties": {"t": {"type": "string"}}}},
              "application/json": {"schema": {"type": "object", "properties": {"j": {"type": "string"}}}}
            }},
            "responses": {"200": {"description": "ok"}}
          }}, "/a": {"get": {"responses": {"200": {"description": "ok"}}}}}}"##;
        let ops = parse_api_schema(text).expect("parses");
        assert_eq!(ops[0].path, "/z");
        assert_eq!(
            ops[0].request_body.as_ref().expect("a body").content_type,
            "text/plain"
        );
        let schema = ops[0].tool_input_schema();
        let properties: Vec<&String> = schema["properties"]
            .as_object()
            .expect("an object")
            .keys()
            .collect();
        assert_eq!(properties, ["t"]);
    }

    /// How deeply `value` nests collections.
    fn yaml_depth(value: &serde_yaml::Value) -> usize {
        match value {
            serde_yaml::Value::Sequence(items) => {
                1 + items.iter().map(yaml_depth).max().unwrap_or(0)
            }
            serde_yaml::Value::Mapping(map) => {
                1 + map
                    .iter()
                    .map(|(k, v)| yaml_depth(k).max(yaml_depth(v)))
                    .max()
                    .unwrap_or(0)
            }
            serde_yaml::Value::Tagged(tagged) => yaml_depth(&tagged.value),
            _ => 0,
        }
    }

    /// Random flow YAML with the constructs that could mislead the bound.
    struct FlowYaml(u64);

    impl FlowYaml {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
            choices[(self.next() % choices.len() as u64) as usize]
        }

        fn gap(&mut self) -> &'static str {
            self.pick(&[
                "",
                " ",
                "\n",
                "\n  ",
                " # c ] [ ' \" {\n",
                "\n\u{feff}",
                " \u{85}",
                "\t",
                "\u{2028}",
                " #]\n",
            ])
        }

        fn scalar(&mut self) -> String {
            let prefix = self.pick(&["", "", "", "!t ", "!<x]> ", "&a ", "!!str "]);
            let body = self.pick(&[
                "a",
                "x'y",
                "x\"y",
                "a#b",
                "é",
                "a b",
                "'a'",
                "'a]b'",
                "'a''b]'",
                "'[x'",
                "\"a\\\"]\"",
                "\"]\"",
                "\"[\"",
                "\"a'b\"",
                "'#]'",
                "'x\n]'",
                "\"x\n]\"",
                "''",
            ]);
            format!("{prefix}{body}")
        }

        fn node(&mut self, depth: usize) -> String {
            if depth > 12 || self.next() % 3 == 0 {
                return self.scalar();
            }
            let sequence = self.next() % 2 == 0;
            let mut out = String::from(if sequence { "[" } else { "{" });
            for i in 0..self.next() % 4 {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(self.gap());
                if !sequence {
                    out.push_str(&self.scalar());
                    out.push_str(": ");
                }
                out.push_str(&self.node(depth + 1));
                out.push_str(self.gap());
            }
            out.push(if sequence { ']' } else { '}' });
            out
        }
    }

    #[test]
    fn yaml_flow_nesting_bound_is_never_below_libyamls_nesting() {
        // Random flow collections (and single-character mutations of them)
        // that libyaml reads: the bound must reach their depth. (Run with
        // millions of iterations while developing; none fell below.)
        let mut random = FlowYaml(0x5eed);
        let mut deep = 0;
        for _ in 0..3000 {
            let prefix = random.pick(&[
                "",
                "a: ",
                "- ",
                "x: |\n  [ ' {\ny: ",
                "# [ '\n",
                "x: 'a [ \"'\ny: ",
            ]);
            let mut text = format!("{prefix}{}", random.node(0));
            if random.next() % 4 == 0 {
                let at = prefix.len() + (random.next() as usize) % (text.len() - prefix.len() + 1);
                if text.is_char_boundary(at) {
                    let insert = random.pick(&["'", "\"", "]", "[", "#", "!", ",", " ", "\n"]);
                    text.insert_str(at, insert);
                }
            }
            let Ok(value) = serde_yaml::from_str::<serde_yaml::Value>(&text) else {
                continue;
            };
            // The prefix's block mapping or sequence is one level libyaml's
            // flow nesting does not count.
            let block = usize::from(prefix.contains(": ") || prefix.starts_with("- "));
            let depth = yaml_depth(&value).saturating_sub(block);
            deep += usize::from(depth >= 4);
            let bound = yaml_flow_nesting_bound(&text, usize::MAX);
            assert!(bound >= depth, "{text:?}: depth {depth}, bound {bound}");
        }
        assert!(deep > 100, "{deep}");
    }

    #[test]
    fn errors_display_their_place() {
        let err = ApiSchemaError::Unsupported {
            path: "paths./a.head".into(),
            what: "the HEAD method".into(),
        };
        assert_eq!(
            err.to_string(),
            "apiSchema: the HEAD method at paths./a.head is not supported"
        );
    }
}
