//! Parsing of a Bedrock Agents action group `apiSchema.payload`: an inline
//! OpenAPI 3.0 document (JSON or YAML) describing the operations an agent may
//! call. Each operation becomes an [`ApiOperation`] that can be offered to a
//! language model as a tool (see [`ApiOperation::tool_input_schema`] and
//! [`ApiOperation::name`]).
//!
//! The document is deserialized with the `openapiv3` crate, which validates its
//! structure. Schemas are turned back into plain JSON and their local `$ref`s
//! (`#/components/schemas/X`) are inlined. Everything that Basalt cannot
//! represent is refused with [`ApiSchemaError::Unsupported`] naming the place in
//! the document, and every input is bounded ([`ApiSchemaError::Limit`]): the
//! payload size, the number of operations, the nesting depth of schemas and the
//! total size of the schemas once references are inlined.

use std::collections::{HashMap, HashSet};

use openapiv3::{OpenAPI, Operation, Parameter, ParameterSchemaOrContent, ReferenceOr};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};
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

/// The longest tool name [`ApiOperation::name`] produces.
const MAX_NAME_LEN: usize = 64;

/// Header parameters that OpenAPI says to ignore.
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];

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

fn unsupported(path: impl Into<String>, what: impl Into<String>) -> ApiSchemaError {
    ApiSchemaError::Unsupported {
        path: path.into(),
        what: what.into(),
    }
}

/// Parses an inline OpenAPI 3 payload (JSON if it starts with `{` after whitespace, else YAML).
pub fn parse_api_schema(payload: &str) -> Result<Vec<ApiOperation>, ApiSchemaError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(ApiSchemaError::Limit(format!(
            "the payload is {} bytes; at most {MAX_PAYLOAD_BYTES} are allowed",
            payload.len()
        )));
    }
    let payload = payload.strip_prefix('\u{feff}').unwrap_or(payload);
    let is_json = payload.trim_start().starts_with('{');

    // A light first pass gives precise messages for the commonest mistakes
    // (a Swagger 2.0 document, a wrong version, no paths) before the full
    // OpenAPI deserialization, whose errors are less telling.
    let probe: Probe = deserialize(payload, is_json)?;
    check_version(&probe)?;
    if probe.paths.is_none() {
        return Err(no_operations());
    }
    let doc: OpenAPI = deserialize(payload, is_json)?;
    Builder::new(&doc)?.operations()
}

/// The fields of the document checked before the full deserialization.
#[derive(Deserialize)]
struct Probe {
    #[serde(default)]
    openapi: Option<Value>,
    #[serde(default)]
    swagger: Option<IgnoredAny>,
    #[serde(default)]
    paths: Option<IgnoredAny>,
}

fn deserialize<T: DeserializeOwned>(payload: &str, is_json: bool) -> Result<T, ApiSchemaError> {
    if is_json {
        serde_json::from_str(payload).map_err(|e| ApiSchemaError::Invalid(format!("JSON: {e}")))
    } else {
        serde_yaml::from_str(payload).map_err(|e| ApiSchemaError::Invalid(format!("YAML: {e}")))
    }
}

fn check_version(probe: &Probe) -> Result<(), ApiSchemaError> {
    match &probe.openapi {
        None if probe.swagger.is_some() => Err(ApiSchemaError::Invalid(
            "Swagger 2.0 documents are not supported; the document needs `openapi: 3.0.x`".into(),
        )),
        None => Err(ApiSchemaError::Invalid(
            "the document has no `openapi` version field".into(),
        )),
        Some(Value::String(version)) => {
            let mut parts = version.trim().split('.');
            let major = parts.next();
            let minor = parts.next();
            if major == Some("3") && matches!(minor, Some("0") | Some("1")) {
                Ok(())
            } else {
                Err(ApiSchemaError::Invalid(format!(
                    "OpenAPI version {version:?} is not supported; use 3.0.x"
                )))
            }
        }
        Some(other) => Err(ApiSchemaError::Invalid(format!(
            "`openapi` must be a version string such as \"3.0.0\", not {other}"
        ))),
    }
}

fn no_operations() -> ApiSchemaError {
    ApiSchemaError::Invalid("paths: the document defines no operations".into())
}

/// The component name `reference` designates in `#/components/<section>/`, or
/// the refusal of any other reference, found at `loc`.
fn component_name(reference: &str, section: &str, loc: &str) -> Result<String, ApiSchemaError> {
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
    loc: String,
    section: &str,
    lookup: impl Fn(&str) -> Option<&'a ReferenceOr<T>>,
) -> Result<(&'a T, String), ApiSchemaError> {
    let mut current = item;
    let mut loc = loc;
    let mut seen: HashSet<String> = HashSet::new();
    loop {
        match current {
            ReferenceOr::Item(value) => return Ok((value, loc)),
            ReferenceOr::Reference { reference } => {
                let name = component_name(reference, section, &loc)?;
                if !seen.insert(name.clone()) {
                    return Err(unsupported(loc, format!("a recursive $ref ({reference})")));
                }
                current = lookup(&name).ok_or_else(|| {
                    ApiSchemaError::Invalid(format!("{loc}: $ref {reference} points to nothing"))
                })?;
                loc = format!("components.{section}.{name}");
            }
        }
    }
}

/// Resolves the `$ref`s of schemas (already turned into plain JSON) against
/// the document's `components.schemas`.
struct SchemaResolver<'a> {
    /// `components.schemas`, as plain JSON.
    schemas: &'a HashMap<String, Value>,
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
    fn resolve(&mut self, schema: &Value, loc: &str, depth: usize) -> Result<Value, ApiSchemaError> {
        if depth > MAX_SCHEMA_DEPTH {
            return Err(ApiSchemaError::Limit(format!(
                "schemas nest more than {MAX_SCHEMA_DEPTH} levels deep at {loc}"
            )));
        }
        self.spend(1, loc)?;
        let Value::Object(object) = schema else {
            return Ok(schema.clone());
        };
        if let Some(reference) = object.get("$ref") {
            let Value::String(reference) = reference else {
                return Err(ApiSchemaError::Invalid(format!(
                    "{loc}: $ref must be a string"
                )));
            };
            let name = component_name(reference, "schemas", loc)?;
            if self.stack.contains(&name) {
                return Err(unsupported(loc, format!("a recursive $ref ({reference})")));
            }
            let schemas = self.schemas;
            let target = schemas.get(&name).ok_or_else(|| {
                ApiSchemaError::Invalid(format!("{loc}: $ref {reference} points to nothing"))
            })?;
            self.stack.push(name);
            let target_loc = format!("components.schemas.{}", self.stack[self.stack.len() - 1]);
            let resolved = self.resolve(target, &target_loc, depth + 1);
            self.stack.pop();
            return resolved;
        }

        let mut out = Map::new();
        for (key, value) in object {
            let resolved = match (key.as_str(), value) {
                ("properties", Value::Object(properties)) => {
                    let mut resolved = Map::new();
                    for (name, property) in properties {
                        let property_loc = format!("{loc}.properties.{name}");
                        resolved.insert(name.clone(), self.resolve(property, &property_loc, depth + 1)?);
                    }
                    Value::Object(resolved)
                }
                ("items" | "not" | "additionalProperties", Value::Object(_)) => {
                    self.resolve(value, &format!("{loc}.{key}"), depth + 1)?
                }
                ("allOf" | "oneOf" | "anyOf", Value::Array(members)) => {
                    let mut resolved = Vec::with_capacity(members.len());
                    for (i, member) in members.iter().enumerate() {
                        resolved.push(self.resolve(member, &format!("{loc}.{key}[{i}]"), depth + 1)?);
                    }
                    Value::Array(resolved)
                }
                ("minimum" | "maximum" | "multipleOf", Value::Number(_)) => {
                    self.spend(1, loc)?;
                    integral_number(value)
                }
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

/// `openapiv3` keeps `minimum`, `maximum` and `multipleOf` as `f64`, so `0`
/// comes back as `0.0`; give integral values their integer form again.
fn integral_number(value: &Value) -> Value {
    if let Some(f) = value.as_f64().filter(|_| value.is_f64()) {
        if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
            return Value::from(f as i64);
        }
    }
    value.clone()
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

/// Turns the typed document into [`ApiOperation`]s.
struct Builder<'a> {
    doc: &'a OpenAPI,
    schemas: HashMap<String, Value>,
    budget: usize,
}

impl<'a> Builder<'a> {
    fn new(doc: &'a OpenAPI) -> Result<Self, ApiSchemaError> {
        let mut schemas = HashMap::new();
        if let Some(components) = &doc.components {
            for (name, schema) in &components.schemas {
                let value = serde_json::to_value(schema).map_err(|e| {
                    ApiSchemaError::Invalid(format!("components.schemas.{name}: {e}"))
                })?;
                schemas.insert(name.clone(), value);
            }
        }
        Ok(Builder {
            doc,
            schemas,
            budget: MAX_SCHEMA_VALUES,
        })
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
        let mut names: HashMap<String, String> = HashMap::new();
        for (path, item) in doc.paths.iter() {
            let ReferenceOr::Item(item) = item else {
                continue;
            };
            for (method, op) in item.iter() {
                let loc = format!("paths.{path}.{method}");
                if !matches!(method, "get" | "post" | "put" | "patch" | "delete") {
                    return Err(unsupported(
                        loc,
                        format!("the {} method", method.to_ascii_uppercase()),
                    ));
                }
                let operation = self.operation(path, method, &item.parameters, op, &loc)?;
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

    fn resolve_schema(&mut self, schema: &Value, loc: &str) -> Result<Value, ApiSchemaError> {
        let mut resolver = SchemaResolver {
            schemas: &self.schemas,
            stack: Vec::new(),
            budget: self.budget,
        };
        let resolved = resolver.resolve(schema, loc, 0);
        self.budget = resolver.budget;
        resolved
    }

    fn operation(
        &mut self,
        path: &str,
        method: &str,
        path_parameters: &[ReferenceOr<Parameter>],
        op: &Operation,
        loc: &str,
    ) -> Result<ApiOperation, ApiSchemaError> {
        let shared = self.parameter_list(path_parameters, &format!("paths.{path}.parameters"))?;
        let own = self.parameter_list(&op.parameters, &format!("{loc}.parameters"))?;

        // Operation-level parameters override path-level ones of the same
        // name and location, in place; the others follow.
        let mut merged: Vec<(ApiParameter, String)> = Vec::with_capacity(shared.len() + own.len());
        let mut used = vec![false; own.len()];
        for (parameter, parameter_loc) in shared {
            let replacement = own.iter().position(|(p, _)| {
                p.name == parameter.name && p.location == parameter.location
            });
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
        let mut by_name: HashMap<&str, &str> = HashMap::new();
        for (parameter, parameter_loc) in &merged {
            if let Some(other) = by_name.insert(&parameter.name, parameter_loc) {
                return Err(unsupported(
                    parameter_loc.clone(),
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
        let body_properties = request_body.as_ref().and_then(|(body, body_loc)| match body.schema.get("properties") {
            Some(Value::Object(properties)) => Some((properties, body_loc)),
            _ => None,
        });
        if let Some((properties, body_loc)) = body_properties {
            for name in properties.keys() {
                if by_name.contains_key(name.as_str()) {
                    return Err(unsupported(
                        format!("{body_loc}.properties.{name}"),
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
    /// locations in the document; ignored headers are left out.
    fn parameter_list(
        &mut self,
        list: &[ReferenceOr<Parameter>],
        loc: &str,
    ) -> Result<Vec<(ApiParameter, String)>, ApiSchemaError> {
        let mut out: Vec<(ApiParameter, String)> = Vec::with_capacity(list.len());
        for (i, parameter) in list.iter().enumerate() {
            let parameter_loc = format!("{loc}[{i}]");
            let Some(parameter) = self.parameter(parameter, parameter_loc.clone())? else {
                continue;
            };
            if out
                .iter()
                .any(|(p, _)| p.name == parameter.name && p.location == parameter.location)
            {
                return Err(ApiSchemaError::Invalid(format!(
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
        loc: String,
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
            return Err(ApiSchemaError::Invalid(format!(
                "{loc}: a parameter has an empty name"
            )));
        }
        if location == ParameterLocation::Header
            && IGNORED_HEADERS.contains(&data.name.to_ascii_lowercase().as_str())
        {
            return Ok(None);
        }
        let (schema, schema_loc) = match &data.format {
            ParameterSchemaOrContent::Schema(schema) => (schema, format!("{loc}.schema")),
            ParameterSchemaOrContent::Content(content) => {
                let Some((content_type, media)) = content.first() else {
                    return Err(unsupported(
                        format!("{loc}.content"),
                        "a parameter without a schema",
                    ));
                };
                let schema_loc = format!("{loc}.content.{content_type}.schema");
                let Some(schema) = &media.schema else {
                    return Err(unsupported(schema_loc, "a parameter without a schema"));
                };
                (schema, schema_loc)
            }
        };
        let schema = serde_json::to_value(schema)
            .map_err(|e| ApiSchemaError::Invalid(format!("{schema_loc}: {e}")))?;
        let schema = self.resolve_schema(&schema, &schema_loc)?;
        Ok(Some(ApiParameter {
            name: data.name.clone(),
            location,
            description: non_blank(&data.description),
            required: location == ParameterLocation::Path || data.required,
            schema,
        }))
    }

    /// The request body, with the location of its schema.
    fn request_body(
        &mut self,
        body: &ReferenceOr<openapiv3::RequestBody>,
        loc: &str,
    ) -> Result<(ApiRequestBody, String), ApiSchemaError> {
        let doc = self.doc;
        let lookup = |name: &str| doc.components.as_ref().and_then(|c| c.request_bodies.get(name));
        let (body, body_loc) =
            follow_refs(body, format!("{loc}.requestBody"), "requestBodies", lookup)?;
        let Some((content_type, media)) = body.content.first() else {
            return Err(unsupported(
                format!("{body_loc}.content"),
                "a request body with no media type",
            ));
        };
        let schema_loc = format!("{body_loc}.content.{content_type}.schema");
        let not_object = || unsupported(schema_loc.clone(), "a request body that is not an object with properties");
        let Some(schema) = &media.schema else {
            return Err(not_object());
        };
        let schema = serde_json::to_value(schema)
            .map_err(|e| ApiSchemaError::Invalid(format!("{schema_loc}: {e}")))?;
        let schema = self.resolve_schema(&schema, &schema_loc)?;
        let is_object = match schema.get("type") {
            None => true,
            Some(t) => t == "object",
        };
        let has_properties = matches!(schema.get("properties"), Some(Value::Object(p)) if !p.is_empty());
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
    loc: &str,
    parameters: &[(ApiParameter, String)],
) -> Result<(), ApiSchemaError> {
    let mut variables: Vec<&str> = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let after = &rest[start + 1..];
        let Some(end) = after.find('}') else {
            return Err(ApiSchemaError::Invalid(format!(
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
            return Err(ApiSchemaError::Invalid(format!(
                "{loc}: the path variable {{{variable}}} has no path parameter"
            )));
        }
    }
    for (parameter, parameter_loc) in parameters {
        if parameter.location == ParameterLocation::Path
            && !variables.contains(&parameter.name.as_str())
        {
            return Err(ApiSchemaError::Invalid(format!(
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
            if let (Some(description), Value::Object(object)) = (&parameter.description, &mut schema) {
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
            if let (true, Some(Value::Array(names))) = (body.required, body.schema.get("required")) {
                for name in names {
                    if name.is_string() && !required.contains(name) {
                        required.push(name.clone());
                    }
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
        if let Some(id) = self.operation_id.as_ref().filter(|id| is_valid_tool_name(id)) {
            return id.clone();
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
        let ops = parse_api_schema(ORDERS_JSON).unwrap();
        assert_eq!(ops.len(), 2);

        let get = ops.iter().find(|o| o.method == "GET").unwrap();
        assert_eq!(get.path, "/orders/{orderId}");
        assert_eq!(get.operation_id.as_deref(), Some("getOrder"));
        assert_eq!(get.description.as_deref(), Some("Returns one order by its id."));
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

        let post = ops.iter().find(|o| o.method == "POST").unwrap();
        assert_eq!(post.path, "/orders");
        // No description: the summary stands in.
        assert_eq!(post.description.as_deref(), Some("Create an order"));
        assert!(post.parameters.is_empty());
        let body = post.request_body.as_ref().unwrap();
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
        let from_json = parse_api_schema(ORDERS_JSON).unwrap();
        let from_yaml = parse_api_schema(ORDERS_YAML).unwrap();
        assert_eq!(from_json, from_yaml);
    }

    #[test]
    fn operations_serialize_with_lowercase_locations() {
        let ops = parse_api_schema(ORDERS_JSON).unwrap();
        let value = serde_json::to_value(&ops[0]).unwrap();
        assert_eq!(value["parameters"][0]["location"], "path");
        let back: ApiOperation = serde_json::from_value(value).unwrap();
        assert_eq!(back, ops[0]);
    }

    #[test]
    fn tool_input_schema_for_parameters() {
        let ops = parse_api_schema(ORDERS_JSON).unwrap();
        let get = ops.iter().find(|o| o.method == "GET").unwrap();
        let schema = get.tool_input_schema();
        assert_eq!(schema["type"], "object");
        assert_eq!(
            schema["properties"]["orderId"],
            json!({"type": "string", "description": "The order id."})
        );
        assert_eq!(schema["properties"]["verbose"], json!({"type": "boolean"}));
        assert_eq!(schema["properties"].as_object().unwrap().len(), 2);
        assert_eq!(schema["required"], json!(["orderId"]));
        assert_eq!(schema.as_object().unwrap().len(), 3);
    }

    #[test]
    fn tool_input_schema_for_a_body() {
        let ops = parse_api_schema(ORDERS_JSON).unwrap();
        let post = ops.iter().find(|o| o.method == "POST").unwrap();
        let schema = post.tool_input_schema();
        assert_eq!(schema["type"], "object");
        let properties = schema["properties"].as_object().unwrap();
        assert_eq!(properties.len(), 3);
        assert_eq!(
            properties["item"],
            json!({"type": "string", "description": "What to order."})
        );
        assert_eq!(properties["quantity"], json!({"type": "integer", "minimum": 1}));
        assert_eq!(properties["address"]["type"], "object");
        assert_eq!(properties["address"]["properties"]["city"], json!({"type": "string"}));
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
        let ops = parse_api_schema(&text).unwrap();
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
        let ops = parse_api_schema(&text).unwrap();
        assert_eq!(ops.len(), 2);
        let get = ops.iter().find(|o| o.method == "GET").unwrap();
        let names: Vec<&str> = get.parameters.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["storeId", "limit", "cursor"]);
        assert_eq!(get.parameters[1].description.as_deref(), Some("Overridden."));
        assert!(get.parameters[1].required);
        assert_eq!(get.parameters[1].schema, json!({"type": "integer", "maximum": 100}));

        let delete = ops.iter().find(|o| o.method == "DELETE").unwrap();
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
        let ops = parse_api_schema(text).unwrap();
        let op = &ops[0];
        assert_eq!(op.parameters[0].name, "id");
        assert_eq!(op.parameters[0].schema, json!({"type": "string", "format": "uuid"}));
        let body = op.request_body.as_ref().unwrap();
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
        let err = parse_api_schema(&text).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("paths./orders.get.parameters[1]"), "{message}");
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
        assert!(message.contains("#/components/schemas/Missing"), "{message}");
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

    #[test]
    fn nesting_at_the_parser_limit_does_not_overflow_the_stack() {
        // Run on a thread with a 2 MiB stack, like a Tokio worker.
        let handle = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(|| {
                for depth in [60usize, 120, 200, 5000] {
                    let open = "{\"type\":\"array\",\"items\":".repeat(depth);
                    let close = "}".repeat(depth);
                    let schema = format!("{open}{{\"type\":\"string\"}}{close}");
                    let text = format!(
                        "{{\"openapi\":\"3.0.0\",\"info\":{{\"title\":\"t\",\"version\":\"1\"}},\
                         \"paths\":{{\"/d\":{{\"get\":{{\"parameters\":[{{\"name\":\"q\",\
                         \"in\":\"query\",\"schema\":{schema}}}],\"responses\":{{}}}}}}}}}}"
                    );
                    assert!(parse_api_schema(&text).is_err());
                    let yaml = format!("openapi: 3.0.0\npaths:\n  /d:\n    get:\n      x: {}", "[".repeat(depth));
                    assert!(parse_api_schema(&yaml).is_err());
                }
            })
            .unwrap();
        handle.join().unwrap();
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
            schemas.insert(format!("S{i}"), json!({"type": "object", "properties": properties}));
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
                path,
                "paths./orders/{id}.get.requestBody.content.application/json.schema",
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
        assert!(message.contains("paths./orders.get.parameters[0]"), "{message}");
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
        let ops = parse_api_schema(&text).unwrap();
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
        let ops = parse_api_schema(&text).unwrap();
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

        let v4 = doc(json!({"/a": {"get": {"responses": responses()}}}), None)
            .replace("3.0.3", "4.0.0");
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
        let expected = Err(ApiSchemaError::Invalid("paths: the document defines no operations".into()));
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
        assert_eq!(parse_api_schema(&doc(paths(50), None)).unwrap().len(), 50);
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
        assert_eq!(op("GET", "/orders/{orderId}", Some("getOrder")).name(), "getOrder");
        assert_eq!(op("GET", "/orders/{orderId}", None).name(), "get_orders_orderId");
        assert_eq!(op("GET", "/orders/{orderId}", Some("get order!")).name(), "get_orders_orderId");
        assert_eq!(op("GET", "/orders/{orderId}", Some("")).name(), "get_orders_orderId");
        assert_eq!(op("DELETE", "/v1//a-b_c/{x}/", None).name(), "delete_v1_a_b_c_x");
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
        .unwrap();
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
        let ops = parse_api_schema(&text).unwrap();
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
    fn errors_display_their_place() {
        let err = ApiSchemaError::Unsupported {
            path: "paths./a.head".into(),
            what: "the HEAD method".into(),
        };
        assert_eq!(err.to_string(), "apiSchema: the HEAD method at paths./a.head is not supported");
    }
}
