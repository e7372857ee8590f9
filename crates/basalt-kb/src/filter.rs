//! Bedrock's `RetrievalFilter`: parsed once from the request's JSON, then evaluated
//! against each chunk's metadata inside the search (so a filtered query still fills
//! `numberOfResults` when that many chunks match).
//!
//! Semantics, per operator (a missing key never matches, except for `notEquals` and
//! `notIn`, which match it — the chunk does not have the excluded value):
//! - `equals` / `notEquals`: same JSON value (numbers compared as numbers);
//! - `greaterThan` … `lessThanOrEquals`: numbers only;
//! - `in` / `notIn`: the filter value is a list; the attribute is one of its members;
//! - `startsWith`: string prefix;
//! - `listContains`: the attribute is a list with the value as a member;
//! - `stringContains`: the attribute is a string containing the value, or a list with
//!   a member that does;
//! - `andAll` / `orAll`: every / any of at least one sub-filter.

use serde_json::{Map, Value};

use crate::KbError;

/// Chunk metadata: attribute name → JSON value (string, number, boolean or list of strings).
pub type Metadata = Map<String, Value>;

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Equals(String, Value),
    NotEquals(String, Value),
    GreaterThan(String, f64),
    GreaterThanOrEquals(String, f64),
    LessThan(String, f64),
    LessThanOrEquals(String, f64),
    In(String, Vec<Value>),
    NotIn(String, Vec<Value>),
    StartsWith(String, String),
    ListContains(String, Value),
    StringContains(String, String),
    AndAll(Vec<Filter>),
    OrAll(Vec<Filter>),
}

const OPERATORS: &str = "equals, notEquals, greaterThan, greaterThanOrEquals, lessThan, \
lessThanOrEquals, in, notIn, startsWith, listContains, stringContains, andAll, orAll";

fn invalid(message: impl Into<String>) -> KbError {
    KbError::InvalidFilter(message.into())
}

impl Filter {
    /// Parses a `RetrievalFilter` union (exactly one operator key).
    pub fn parse(value: &Value) -> Result<Self, KbError> {
        Self::parse_at(value, "filter", 0)
    }

    fn parse_at(value: &Value, path: &str, depth: usize) -> Result<Self, KbError> {
        if depth > 16 {
            return Err(invalid(format!("{path} nests deeper than 16 levels")));
        }
        let object = value
            .as_object()
            .ok_or_else(|| invalid(format!("{path} must be an object with one operator")))?;
        let mut entries = object.iter();
        let (operator, operand) = match (entries.next(), entries.next()) {
            (Some(entry), None) => entry,
            _ => {
                return Err(invalid(format!(
                    "{path} must have exactly one operator, one of: {OPERATORS}"
                )))
            }
        };
        let at = format!("{path}.{operator}");
        match operator.as_str() {
            "andAll" | "orAll" => {
                let list = operand
                    .as_array()
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| invalid(format!("{at} must be a non-empty list of filters")))?;
                let parts = list
                    .iter()
                    .enumerate()
                    .map(|(i, f)| Self::parse_at(f, &format!("{at}[{i}]"), depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(if operator == "andAll" {
                    Self::AndAll(parts)
                } else {
                    Self::OrAll(parts)
                })
            }
            leaf => {
                let (key, value) = key_value(operand, &at)?;
                let number = || {
                    value
                        .as_f64()
                        .ok_or_else(|| invalid(format!("{at}.value must be a number")))
                };
                let string = || {
                    value
                        .as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid(format!("{at}.value must be a string")))
                };
                let list = || {
                    value
                        .as_array()
                        .cloned()
                        .ok_or_else(|| invalid(format!("{at}.value must be a list")))
                };
                Ok(match leaf {
                    "equals" => Self::Equals(key, scalar(value, &at)?),
                    "notEquals" => Self::NotEquals(key, scalar(value, &at)?),
                    "greaterThan" => Self::GreaterThan(key, number()?),
                    "greaterThanOrEquals" => Self::GreaterThanOrEquals(key, number()?),
                    "lessThan" => Self::LessThan(key, number()?),
                    "lessThanOrEquals" => Self::LessThanOrEquals(key, number()?),
                    "in" => Self::In(key, list()?),
                    "notIn" => Self::NotIn(key, list()?),
                    "startsWith" => Self::StartsWith(key, string()?),
                    "listContains" => Self::ListContains(key, scalar(value, &at)?),
                    "stringContains" => Self::StringContains(key, string()?),
                    other => {
                        return Err(invalid(format!(
                            "{path} has unknown operator {other:?}; supported: {OPERATORS}"
                        )))
                    }
                })
            }
        }
    }

    /// Whether a chunk with this metadata passes.
    pub fn matches(&self, metadata: &Metadata) -> bool {
        match self {
            Self::AndAll(parts) => parts.iter().all(|f| f.matches(metadata)),
            Self::OrAll(parts) => parts.iter().any(|f| f.matches(metadata)),
            leaf => leaf.leaf_matches(leaf.key().and_then(|k| metadata.get(k))),
        }
    }

    /// The attribute a leaf operator tests (`None` for `andAll` / `orAll`).
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Equals(k, _)
            | Self::NotEquals(k, _)
            | Self::GreaterThan(k, _)
            | Self::GreaterThanOrEquals(k, _)
            | Self::LessThan(k, _)
            | Self::LessThanOrEquals(k, _)
            | Self::In(k, _)
            | Self::NotIn(k, _)
            | Self::StartsWith(k, _)
            | Self::ListContains(k, _)
            | Self::StringContains(k, _) => Some(k),
            Self::AndAll(_) | Self::OrAll(_) => None,
        }
    }

    /// Whether a leaf operator passes for the attribute's value (`None`: absent).
    /// Combinators answer false; evaluate them with [`Self::matches`].
    pub fn leaf_matches(&self, value: Option<&Value>) -> bool {
        match self {
            Self::Equals(_, v) => value.is_some_and(|m| same(m, v)),
            Self::NotEquals(_, v) => !value.is_some_and(|m| same(m, v)),
            Self::GreaterThan(_, v) => number_of(value).is_some_and(|m| m > *v),
            Self::GreaterThanOrEquals(_, v) => number_of(value).is_some_and(|m| m >= *v),
            Self::LessThan(_, v) => number_of(value).is_some_and(|m| m < *v),
            Self::LessThanOrEquals(_, v) => number_of(value).is_some_and(|m| m <= *v),
            Self::In(_, list) => value.is_some_and(|m| list.iter().any(|v| same(m, v))),
            Self::NotIn(_, list) => !value.is_some_and(|m| list.iter().any(|v| same(m, v))),
            Self::StartsWith(_, prefix) => value
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with(prefix.as_str())),
            Self::ListContains(_, v) => value
                .and_then(Value::as_array)
                .is_some_and(|l| l.iter().any(|m| same(m, v))),
            Self::StringContains(_, needle) => match value {
                Some(Value::String(s)) => s.contains(needle.as_str()),
                Some(Value::Array(l)) => l
                    .iter()
                    .any(|m| m.as_str().is_some_and(|s| s.contains(needle.as_str()))),
                _ => false,
            },
            Self::AndAll(_) | Self::OrAll(_) => false,
        }
    }

    /// Both filters must pass (a server-side mandatory filter joined to a request's).
    pub fn and(self, other: Filter) -> Filter {
        Filter::AndAll(vec![self, other])
    }
}

fn key_value(operand: &Value, at: &str) -> Result<(String, Value), KbError> {
    let key = operand
        .get("key")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| invalid(format!("{at}.key is required (a non-empty string)")))?;
    let value = operand
        .get("value")
        .filter(|v| !v.is_null())
        .ok_or_else(|| invalid(format!("{at}.value is required")))?;
    Ok((key.to_owned(), value.clone()))
}

fn scalar(value: Value, at: &str) -> Result<Value, KbError> {
    match value {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(value),
        _ => Err(invalid(format!(
            "{at}.value must be a string, number or boolean"
        ))),
    }
}

fn number_of(value: Option<&Value>) -> Option<f64> {
    value.and_then(Value::as_f64)
}

fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(value: Value) -> Metadata {
        value.as_object().cloned().unwrap_or_default()
    }

    fn check(filter: Value, metadata: Value) -> bool {
        match Filter::parse(&filter) {
            Ok(f) => f.matches(&meta(metadata)),
            Err(e) => panic!("filter {filter} did not parse: {e}"),
        }
    }

    #[test]
    fn every_leaf_operator_matches_and_rejects() {
        let m = json!({"year": 2021, "team": "search", "tags": ["a", "bc"], "draft": false});
        let cases = [
            (json!({"equals": {"key": "year", "value": 2021.0}}), true),
            (json!({"equals": {"key": "team", "value": "ads"}}), false),
            (json!({"notEquals": {"key": "team", "value": "ads"}}), true),
            (json!({"notEquals": {"key": "missing", "value": "x"}}), true),
            (json!({"greaterThan": {"key": "year", "value": 2020}}), true),
            (
                json!({"greaterThan": {"key": "year", "value": 2021}}),
                false,
            ),
            (
                json!({"greaterThanOrEquals": {"key": "year", "value": 2021}}),
                true,
            ),
            (json!({"lessThan": {"key": "year", "value": 2021}}), false),
            (
                json!({"lessThanOrEquals": {"key": "year", "value": 2021}}),
                true,
            ),
            (json!({"lessThan": {"key": "team", "value": 5}}), false),
            (
                json!({"in": {"key": "team", "value": ["ads", "search"]}}),
                true,
            ),
            (json!({"in": {"key": "team", "value": ["ads"]}}), false),
            (json!({"notIn": {"key": "team", "value": ["ads"]}}), true),
            (
                json!({"notIn": {"key": "team", "value": ["search"]}}),
                false,
            ),
            (json!({"startsWith": {"key": "team", "value": "sea"}}), true),
            (
                json!({"startsWith": {"key": "team", "value": "ear"}}),
                false,
            ),
            (
                json!({"listContains": {"key": "tags", "value": "bc"}}),
                true,
            ),
            (
                json!({"listContains": {"key": "tags", "value": "b"}}),
                false,
            ),
            (
                json!({"stringContains": {"key": "team", "value": "arc"}}),
                true,
            ),
            (
                json!({"stringContains": {"key": "tags", "value": "c"}}),
                true,
            ),
            (
                json!({"stringContains": {"key": "tags", "value": "z"}}),
                false,
            ),
            (json!({"equals": {"key": "draft", "value": false}}), true),
            (json!({"equals": {"key": "missing", "value": 1}}), false),
        ];
        for (filter, expected) in cases {
            assert_eq!(check(filter.clone(), m.clone()), expected, "{filter}");
        }
    }

    #[test]
    fn combinators_nest() {
        let m = json!({"year": 2021, "team": "search"});
        let f = json!({"andAll": [
            {"equals": {"key": "team", "value": "search"}},
            {"orAll": [
                {"lessThan": {"key": "year", "value": 2000}},
                {"greaterThan": {"key": "year", "value": 2020}}
            ]}
        ]});
        assert!(check(f, m.clone()));
        let f = json!({"andAll": [
            {"equals": {"key": "team", "value": "search"}},
            {"equals": {"key": "year", "value": 1999}}
        ]});
        assert!(!check(f, m));
    }

    #[test]
    fn malformed_filters_are_named() {
        let bad = [
            (json!({}), "exactly one operator"),
            (
                json!({"equals": {"key": "a", "value": 1}, "in": {}}),
                "exactly one",
            ),
            (
                json!({"near": {"key": "a", "value": 1}}),
                "unknown operator",
            ),
            (json!({"equals": {"value": 1}}), "filter.equals.key"),
            (json!({"equals": {"key": "a"}}), "filter.equals.value"),
            (
                json!({"greaterThan": {"key": "a", "value": "x"}}),
                "must be a number",
            ),
            (json!({"in": {"key": "a", "value": 3}}), "must be a list"),
            (json!({"andAll": []}), "non-empty list"),
            (json!({"orAll": [{"bogus": 1}]}), "filter.orAll[0]"),
            (json!([1, 2]), "must be an object"),
        ];
        for (filter, expected) in bad {
            match Filter::parse(&filter) {
                Ok(f) => panic!("{filter} parsed as {f:?}"),
                Err(e) => assert!(e.to_string().contains(expected), "{filter}: {e}"),
            }
        }
    }
}
