//! JSON schemas into llama.cpp grammars, safely.
//!
//! llama.cpp's schema-to-grammar converter is C++ that recurses on its input: its
//! rule-name regex (`[^a-zA-Z0-9-]+`, run by libstdc++'s backtracking executor)
//! recurses once per character of a property name, and the pattern and grammar
//! parsers once per nesting level. A 12,000-character property name overflowed a
//! 2 MiB serving thread and aborted the whole process. So, before anything reaches
//! the native code, a schema is bounded here in Rust ([`SchemaLimits`]: size,
//! depth, name and literal lengths), and every native conversion — schema to GBNF,
//! and GBNF to a grammar sampler — runs on a thread of its own with a known, large
//! stack ([`on_native_stack`]), never on the caller's.

use serde_json::Value;

use crate::EngineError;

/// Stack of the threads native conversions run on. Only the pages touched are
/// committed; the deepest bounded input measured uses a small fraction of it
/// (`tests::the_longest_allowed_name_converts_with_room_to_spare`).
pub const NATIVE_STACK_BYTES: usize = 64 * 1024 * 1024;

/// What a schema may hold before it reaches llama.cpp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaLimits {
    /// The schema as compact JSON, in bytes.
    pub max_bytes: usize,
    /// Nesting of JSON objects and arrays (a property of an object is two levels).
    pub max_depth: usize,
    /// Characters of an object key (property names, `$defs` names).
    pub max_name_chars: usize,
    /// Characters of a string that becomes grammar text: `enum` / `const` values,
    /// `pattern`, `$ref`, `format`.
    pub max_literal_chars: usize,
}

/// The limits every schema is held to.
pub const SCHEMA_LIMITS: SchemaLimits = SchemaLimits {
    max_bytes: 256 * 1024,
    max_depth: 64,
    max_name_chars: 1024,
    max_literal_chars: 4096,
};

/// Keys whose string values llama.cpp turns into grammar text or parses.
const LITERAL_KEYS: [&str; 5] = ["enum", "const", "pattern", "$ref", "format"];

/// Checks a schema against `limits`; the error says what is too large and where.
pub fn check_schema(schema: &Value, limits: &SchemaLimits) -> Result<(), EngineError> {
    walk(schema, limits, 1, false, &mut String::from("$"))?;
    let bytes = serde_json::to_vec(schema)
        .map_err(|e| invalid(format!("the JSON schema cannot be serialised: {e}")))?
        .len();
    if bytes > limits.max_bytes {
        return Err(invalid(format!(
            "the JSON schema is {bytes} bytes; at most {} are accepted",
            limits.max_bytes
        )));
    }
    Ok(())
}

fn invalid(message: String) -> EngineError {
    EngineError::InvalidRequest(message)
}

/// Depth-first over the schema; `literal` says the values here become grammar text.
fn walk(
    value: &Value,
    limits: &SchemaLimits,
    depth: usize,
    literal: bool,
    path: &mut String,
) -> Result<(), EngineError> {
    if depth > limits.max_depth {
        return Err(invalid(format!(
            "the JSON schema nests deeper than {} levels at {path}",
            limits.max_depth
        )));
    }
    match value {
        Value::String(s) if literal => {
            let chars = s.chars().count();
            if chars > limits.max_literal_chars {
                return Err(invalid(format!(
                    "the JSON schema's value at {path} is {chars} characters; at most {} are accepted",
                    limits.max_literal_chars
                )));
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, limits, depth + 1, literal, path)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let chars = key.chars().count();
                if chars > limits.max_name_chars {
                    return Err(invalid(format!(
                        "the JSON schema has a name of {chars} characters at {path}; names may have at most {} characters",
                        limits.max_name_chars
                    )));
                }
                let len = path.len();
                path.push('.');
                path.push_str(key);
                walk(
                    item,
                    limits,
                    depth + 1,
                    literal || LITERAL_KEYS.contains(&key.as_str()),
                    path,
                )?;
                path.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Runs `work` on a new thread with a [`NATIVE_STACK_BYTES`] stack and waits for it.
/// A panic there is an error here, not the caller's panic.
pub fn on_native_stack<T, F>(work: F) -> Result<T, EngineError>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("basalt-native".into())
            .stack_size(NATIVE_STACK_BYTES)
            .spawn_scoped(scope, work)
            .map_err(|e| EngineError::Compute(format!("cannot start a conversion thread: {e}")))?;
        handle
            .join()
            .map_err(|_| EngineError::Compute("a native conversion panicked".into()))
    })
}

/// Compiles a JSON schema into a llama.cpp grammar whose outputs validate against it,
/// after checking it against [`SCHEMA_LIMITS`].
pub fn json_schema_grammar(schema: &Value) -> Result<String, EngineError> {
    check_schema(schema, &SCHEMA_LIMITS)?;
    let text = schema.to_string();
    on_native_stack(move || llama_cpp_2::json_schema_to_grammar(&text))?.map_err(|_| {
        invalid(
            "the JSON schema cannot be enforced: llama.cpp's converter refused it (check `$ref` targets, `pattern` syntax, and that every `type` is a JSON Schema type)"
                .into(),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object_with_name(name: &str) -> Value {
        json!({"type": "object", "properties": {name: {"type": "string"}}, "required": [name]})
    }

    #[test]
    fn a_long_property_name_is_refused_before_the_converter() {
        let name = "!".repeat(12_000);
        let err = json_schema_grammar(&object_with_name(&name)).expect_err("too long");
        assert!(
            err.to_string().contains("name of 12000 characters"),
            "{err}"
        );
    }

    #[test]
    fn the_longest_allowed_name_converts_with_room_to_spare() {
        // The converter's recursion grows with the name; at the limit it must fit a
        // thread with an eighth of the stack native conversions get.
        let name = "!".repeat(SCHEMA_LIMITS.max_name_chars);
        let text = object_with_name(&name).to_string();
        let grammar = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .stack_size(NATIVE_STACK_BYTES / 8)
                .spawn_scoped(scope, || llama_cpp_2::json_schema_to_grammar(&text))
                .expect("thread")
                .join()
                .expect("no panic")
        })
        .expect("converts");
        assert!(grammar.contains("root ::="), "{grammar}");
    }

    #[test]
    fn deep_wide_and_long_literal_schemas_are_refused() {
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "object", "properties": {"a": deep}});
        }
        let err = check_schema(&deep, &SCHEMA_LIMITS).expect_err("too deep");
        assert!(err.to_string().contains("nests deeper"), "{err}");

        let long_enum = json!({"enum": ["x".repeat(5000)]});
        let err = check_schema(&long_enum, &SCHEMA_LIMITS).expect_err("long literal");
        assert!(err.to_string().contains("$.enum[0]"), "{err}");

        let long_pattern = json!({"type": "string", "pattern": "(".repeat(5000)});
        assert!(check_schema(&long_pattern, &SCHEMA_LIMITS).is_err());

        let props: serde_json::Map<String, Value> = (0..20_000)
            .map(|i| (format!("p{i}"), json!({"type": "string"})))
            .collect();
        let wide = json!({"type": "object", "properties": props});
        let err = check_schema(&wide, &SCHEMA_LIMITS).expect_err("too large");
        assert!(err.to_string().contains("bytes"), "{err}");

        // A long description is not grammar text and is accepted.
        let described = json!({"type": "string", "description": "d".repeat(10_000)});
        check_schema(&described, &SCHEMA_LIMITS).expect("descriptions are free text");
    }

    #[test]
    fn a_refused_schema_says_what_to_check() {
        let err = json_schema_grammar(
            &json!({"type": "object", "properties": {"a": {"$ref": "#/nope"}}}),
        )
        .expect_err("dangling ref");
        assert!(err.to_string().contains("$ref"), "{err}");
    }

    #[test]
    fn a_panic_on_the_native_stack_is_an_error() {
        let result: Result<(), EngineError> = on_native_stack(|| panic!("boom"));
        assert!(result.is_err());
    }
}
