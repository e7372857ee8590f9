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
//!
//! Size alone does not bound the converter's work (found by fuzzing, `fuzz/README.md`):
//! it builds a schema again for each entry of a `type` array (16 levels of nested
//! `["object", "object"]`, 785 bytes, took 2 s and wrote 55 MB, doubling per level),
//! again for each distinct spelling of a `$ref`, names every rule after all the
//! properties it is nested in, takes cubic time in an object's optional properties,
//! copies its rules for each `pattern`, and merges an `allOf` by following `$ref`s
//! with no guard against cycles (a recursive schema written through `allOf`, or a
//! `$ref` to itself, overflows any stack). So a second pass (`Expansion`) refuses
//! those cycles and estimates the grammar llama.cpp would write. It also refuses a
//! pattern that repeats a non-ASCII character on its own (`^é+$`: the converter
//! repeats the last UTF-8 byte, and llama-cpp-2 leaks the resulting grammar) or holds
//! U+0000 (the grammar comes back as a C string, cut there).

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

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
    /// Keys of one JSON object. llama.cpp's JSON keeps keys in order and finds them by
    /// a linear scan, so parsing an object takes time quadratic in its keys.
    pub max_object_keys: usize,
    /// Optional properties of one object: those not in its `required` (an
    /// `additionalProperties` schema counts as one), or those an `allOf` merges from
    /// the alternatives of its `anyOf` / `type`-array parts. The converter's rule for
    /// them takes time cubic in their number.
    pub max_optional_properties: usize,
    /// The grammar llama.cpp would write, estimated in bytes: each schema
    /// object's rule, named after the properties it is nested in, counted again for
    /// each entry of an enclosing `type` array, each `allOf` that merges it and each
    /// distinct `$ref` spelling of it; plus the converter's work on pairs of optional
    /// properties.
    pub max_grammar_bytes: usize,
    /// `pattern`s times the estimated grammar bytes: the converter copies the rules it
    /// has made so far before converting each pattern.
    pub max_pattern_copy_bytes: usize,
}

/// The limits every schema is held to.
pub const SCHEMA_LIMITS: SchemaLimits = SchemaLimits {
    max_bytes: 256 * 1024,
    max_depth: 64,
    max_name_chars: 1024,
    max_literal_chars: 4096,
    max_object_keys: 4096,
    max_optional_properties: 256,
    max_grammar_bytes: 4 * 1024 * 1024,
    max_pattern_copy_bytes: 256 * 1024 * 1024,
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
    Expansion::new(schema, limits).check()
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

/// Bytes counted for a schema object's rule text, beyond its name.
const RULE_BYTES: usize = 32;
/// Bytes counted for any other JSON value (plus a string's own bytes).
const VALUE_BYTES: usize = 8;
/// Times a rule's name is written: its definition, and a use or two.
const NAME_USES: usize = 3;
/// Bytes a rule name grows by for an array element (`-tuple-12`, `-3`).
const INDEX_NAME_BYTES: usize = 8;
/// Bytes counted per pair of an object's optional properties: the converter builds
/// a rule for every run of them, from every start.
const OPTIONAL_PAIR_BYTES: usize = 16;

/// Keys whose value maps names to schemas.
const NAME_MAPS: [&str; 3] = ["properties", "$defs", "definitions"];
/// Keys that do not appear in the converter's rule names.
const UNNAMED_KEYS: [&str; 6] = [
    "properties",
    "$defs",
    "definitions",
    "anyOf",
    "oneOf",
    "allOf",
];

/// What llama.cpp builds below a value, estimated.
#[derive(Debug, Clone, Copy, Default)]
struct Work {
    /// Grammar bytes.
    bytes: usize,
    /// Schema objects, each a rule whose name grows with every level above it.
    rules: usize,
    /// `pattern`s converted.
    patterns: usize,
}

impl Work {
    /// Adds `other`, reached through a level that adds `name_bytes` to its rule names.
    fn add(&mut self, other: Work, name_bytes: usize) {
        self.bytes = self.bytes.saturating_add(other.bytes).saturating_add(
            other
                .rules
                .saturating_mul(name_bytes.saturating_mul(NAME_USES)),
        );
        self.rules = self.rules.saturating_add(other.rules);
        self.patterns = self.patterns.saturating_add(other.patterns);
    }

    fn times(self, n: usize) -> Work {
        Work {
            bytes: self.bytes.saturating_mul(n),
            rules: self.rules.saturating_mul(n),
            patterns: self.patterns.saturating_mul(n),
        }
    }
}

/// How a value was reached, for error paths.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Root,
    Key(&'a str),
    Index(usize),
    /// The `properties` an `allOf` merges through this `$ref`.
    Merge(&'a str),
}

/// A value the second pass will visit from the one on top of its stack.
#[derive(Debug, Clone, Copy)]
struct Edge<'a> {
    value: &'a Value,
    step: Step<'a>,
    name_bytes: usize,
}

/// A value being visited: its remaining edges and the work summed so far.
struct Frame<'a> {
    value: &'a Value,
    step: Step<'a>,
    name_bytes: usize,
    edges: Vec<Edge<'a>>,
    next: usize,
    work: Work,
    copies: usize,
}

enum Visit {
    Open,
    Done(Work),
}

/// The second pass of [`check_schema`], over a graph of the schema's values: each
/// value's children, plus, from an `allOf`, the `properties` of the objects its
/// `$ref` parts (and the `$ref` alternatives of its `anyOf` parts) lead to — which
/// llama.cpp's converter visits again, following `$ref`s without a guard. A cycle in
/// that graph is a recursion the converter never leaves; on the acyclic rest the work
/// is summed bottom-up, each value once. Iterative: the graph can be deeper than the
/// caller's stack.
struct Expansion<'a> {
    root: &'a Value,
    limits: &'a SchemaLimits,
    visits: HashMap<*const Value, Visit>,
    /// Distinct `$ref` strings, in the order found.
    refs: Vec<&'a str>,
    seen_refs: HashSet<&'a str>,
    /// `$ref`s whose chain of `$ref`-only targets is known to end, and its length.
    ref_chains: HashMap<&'a str, usize>,
}

impl<'a> Expansion<'a> {
    fn new(root: &'a Value, limits: &'a SchemaLimits) -> Self {
        Self {
            root,
            limits,
            visits: HashMap::new(),
            refs: Vec::new(),
            seen_refs: HashSet::new(),
            ref_chains: HashMap::new(),
        }
    }

    fn check(mut self) -> Result<(), EngineError> {
        let mut total = self.visit_all()?;
        for reference in self.refs.clone() {
            self.check_ref_chain(reference)?;
        }
        // Each distinct spelling of a `$ref` builds its target again, named after it.
        for &reference in &self.refs {
            if let Some(target) = resolve(self.root, reference) {
                if let Some(Visit::Done(work)) = self.visits.get(&std::ptr::from_ref(target)) {
                    total.add(*work, "ref".len() + reference.len());
                    self.check_total(total)?;
                }
            }
        }
        if total.patterns.saturating_mul(total.bytes) > self.limits.max_pattern_copy_bytes {
            return Err(invalid(format!(
                "the JSON schema has {} patterns in a grammar of about {} bytes, and llama.cpp copies the grammar for each pattern; use fewer patterns or a smaller schema",
                total.patterns, total.bytes
            )));
        }
        Ok(())
    }

    fn check_total(&self, work: Work) -> Result<(), EngineError> {
        if work.bytes > self.limits.max_grammar_bytes {
            return Err(invalid(format!(
                "the JSON schema would make a grammar of more than {} bytes (llama.cpp builds a schema again for each entry of a `type` array, each `allOf` that merges it and each distinct `$ref` to it, and names each rule after every property it is nested in)",
                self.limits.max_grammar_bytes
            )));
        }
        Ok(())
    }

    /// Depth-first from the root; the work of the whole graph below it.
    fn visit_all(&mut self) -> Result<Work, EngineError> {
        let mut stack: Vec<Frame<'a>> = Vec::new();
        let first = Edge {
            value: self.root,
            step: Step::Root,
            name_bytes: 0,
        };
        let frame = self.open(first, &stack)?;
        self.visits
            .insert(std::ptr::from_ref(self.root), Visit::Open);
        stack.push(frame);
        let mut root_work = Work::default();
        while let Some(top) = stack.last_mut() {
            if let Some(&edge) = top.edges.get(top.next) {
                top.next += 1;
                match self.visits.get(&std::ptr::from_ref(edge.value)) {
                    Some(Visit::Done(work)) => {
                        top.work.add(*work, edge.name_bytes);
                        let work = top.work;
                        self.check_total(work)?;
                    }
                    Some(Visit::Open) => {
                        return Err(invalid(format!(
                            "the JSON schema's `allOf` at {} leads back to itself through `$ref` (llama.cpp merges `allOf` parts without a guard against recursion; put the `$ref` outside the `allOf`)",
                            path_of(&stack, edge.step)
                        )));
                    }
                    None => {
                        let frame = self.open(edge, &stack)?;
                        self.visits
                            .insert(std::ptr::from_ref(edge.value), Visit::Open);
                        stack.push(frame);
                    }
                }
                continue;
            }
            let Some(done) = stack.pop() else { break };
            let work = done.work.times(done.copies);
            self.check_total(work)?;
            self.visits
                .insert(std::ptr::from_ref(done.value), Visit::Done(work));
            match stack.last_mut() {
                Some(parent) => {
                    parent.work.add(work, done.name_bytes);
                    let work = parent.work;
                    self.check_total(work)?;
                }
                None => root_work = work,
            }
        }
        Ok(root_work)
    }

    /// A value's own work and its edges; refuses an object with too many keys or
    /// optional properties.
    fn open(&mut self, edge: Edge<'a>, stack: &[Frame<'a>]) -> Result<Frame<'a>, EngineError> {
        let mut frame = Frame {
            value: edge.value,
            step: edge.step,
            name_bytes: edge.name_bytes,
            edges: Vec::new(),
            next: 0,
            work: Work::default(),
            copies: 1,
        };
        match edge.value {
            Value::Object(map) => {
                if map.len() > self.limits.max_object_keys {
                    return Err(invalid(format!(
                        "the JSON schema has an object of {} keys at {}; at most {} are accepted",
                        map.len(),
                        path_of(stack, edge.step),
                        self.limits.max_object_keys
                    )));
                }
                if let Some(Value::String(pattern)) = map.get("pattern") {
                    // The converter copies a pattern's characters into the grammar as
                    // they are, and the grammar comes back as a C string: it would end
                    // at the NUL, silently missing its other rules (found by fuzzing).
                    if pattern.contains('\0') {
                        return Err(invalid(format!(
                            "the JSON schema's pattern at {} contains the character U+0000, which cannot reach llama.cpp",
                            path_of(stack, edge.step)
                        )));
                    }
                    if let Some(c) = repeated_non_ascii(pattern) {
                        return Err(invalid(format!(
                            "the JSON schema's pattern at {} repeats the character {c:?} on its own, which llama.cpp cannot convert (it repeats the character's last UTF-8 byte); put it in a group: `({c})`",
                            path_of(stack, edge.step)
                        )));
                    }
                }
                let optional = self.optional_properties(map);
                if optional > self.limits.max_optional_properties {
                    return Err(invalid(format!(
                        "the JSON schema's object at {} has {optional} optional properties (not in `required`); at most {} are accepted",
                        path_of(stack, edge.step),
                        self.limits.max_optional_properties
                    )));
                }
                // A map of names to schemas is no rule of its own.
                let rules =
                    usize::from(!matches!(edge.step, Step::Key(key) if NAME_MAPS.contains(&key)));
                frame.work = Work {
                    bytes: RULE_BYTES.saturating_add(
                        optional
                            .saturating_mul(optional)
                            .saturating_mul(OPTIONAL_PAIR_BYTES),
                    ),
                    rules,
                    patterns: usize::from(map.get("pattern").is_some_and(Value::is_string)),
                };
                frame.copies = type_entries(map.get("type"));
                if let Some(Value::String(reference)) = map.get("$ref") {
                    if self.seen_refs.insert(reference) {
                        self.refs.push(reference);
                    }
                }
                frame.edges = map
                    .iter()
                    .map(|(key, value)| Edge {
                        value,
                        step: Step::Key(key),
                        // The converter names a property `parent-name` and an
                        // alternative `parent-0`: these keys add nothing themselves.
                        name_bytes: if UNNAMED_KEYS.contains(&key.as_str()) {
                            0
                        } else {
                            key.len() + 1
                        },
                    })
                    .collect();
                self.add_merges(map, &mut frame.edges);
            }
            Value::Array(items) => {
                frame.work.bytes = VALUE_BYTES;
                frame.edges = items
                    .iter()
                    .enumerate()
                    .map(|(i, value)| Edge {
                        value,
                        step: Step::Index(i),
                        name_bytes: INDEX_NAME_BYTES,
                    })
                    .collect();
            }
            Value::String(s) => frame.work.bytes = VALUE_BYTES.saturating_add(s.len()),
            _ => frame.work.bytes = VALUE_BYTES,
        }
        Ok(frame)
    }

    /// The `$ref` parts of an `allOf` (and `$ref` alternatives of its `anyOf` /
    /// `oneOf` parts) whose targets' properties the converter visits again here.
    fn add_merges(&self, map: &'a Map<String, Value>, edges: &mut Vec<Edge<'a>>) {
        if map.contains_key("$ref") {
            return; // llama.cpp reads nothing else of a `$ref` schema
        }
        let Some(Value::Array(parts)) = map.get("allOf") else {
            return;
        };
        for part in parts {
            let alternatives = match alternatives(part) {
                Some(alternatives) if !part_is_ref(part) => alternatives.iter().collect(),
                _ => vec![part],
            };
            for alternative in alternatives {
                let Some(Value::String(reference)) = alternative.get("$ref") else {
                    continue;
                };
                if let Some(properties @ Value::Object(_)) = self
                    .follow(alternative)
                    .and_then(|target| target.get("properties"))
                {
                    edges.push(Edge {
                        value: properties,
                        step: Step::Merge(reference),
                        name_bytes: 1,
                    });
                }
            }
        }
    }

    /// The larger of an object's own optional properties and those its `allOf`
    /// merges as optional (see [`SchemaLimits::max_optional_properties`]).
    fn optional_properties(&self, map: &Map<String, Value>) -> usize {
        let own = match map.get("properties") {
            Some(Value::Object(properties)) => {
                let required: HashSet<&str> = map
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|names| names.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let additional = map
                    .get("additionalProperties")
                    .is_some_and(|a| *a != Value::Bool(false));
                properties
                    .keys()
                    .filter(|name| !required.contains(name.as_str()))
                    .count()
                    .saturating_add(usize::from(additional))
            }
            _ => 0,
        };
        let merged = match map.get("allOf") {
            Some(Value::Array(parts)) => parts
                .iter()
                .filter(|part| !part_is_ref(part))
                .map(|part| {
                    if let Some(alternatives) = alternatives(part) {
                        alternatives
                            .iter()
                            .map(|a| property_count(self.follow(a)))
                            .fold(0, usize::saturating_add)
                    } else if matches!(part.get("type"), Some(Value::Array(_))) {
                        type_entries(part.get("type")).saturating_mul(property_count(Some(part)))
                    } else {
                        0
                    }
                })
                .fold(0, usize::saturating_add),
            _ => 0,
        };
        own.max(merged)
    }

    /// The schema a value stands for once its `$ref`s are followed (`None`: a `$ref`
    /// that does not resolve, or a chain longer than the limit).
    fn follow(&self, mut value: &'a Value) -> Option<&'a Value> {
        for _ in 0..=self.limits.max_depth {
            match value.get("$ref").and_then(Value::as_str) {
                Some(reference) => value = resolve(self.root, reference)?,
                None => return Some(value),
            }
        }
        None
    }

    /// Refuses a `$ref` whose target is a `$ref` whose target … comes back to it (it
    /// matches nothing, and llama.cpp's `allOf` recurses on it forever), or goes on
    /// for more than `max_depth` `$ref`s.
    fn check_ref_chain(&mut self, start: &'a str) -> Result<(), EngineError> {
        let mut chain: Vec<&'a str> = Vec::new();
        let mut current = start;
        let mut rest = 0;
        loop {
            if let Some(&known) = self.ref_chains.get(current) {
                rest = known;
                break;
            }
            if chain.contains(&current) {
                return Err(invalid(format!(
                    "the JSON schema's `$ref` {current} refers to itself through `$ref`s alone"
                )));
            }
            chain.push(current);
            if chain.len() + rest > self.limits.max_depth {
                break;
            }
            match resolve(self.root, current)
                .and_then(|target| target.get("$ref"))
                .and_then(Value::as_str)
            {
                Some(next) => current = next,
                None => break,
            }
        }
        if chain.len().saturating_add(rest) > self.limits.max_depth {
            return Err(invalid(format!(
                "the JSON schema's `$ref` {start} leads through more than {} `$ref`s in a row",
                self.limits.max_depth
            )));
        }
        for (i, reference) in chain.iter().enumerate() {
            self.ref_chains.insert(reference, chain.len() - i + rest);
        }
        Ok(())
    }
}

/// A non-ASCII character that an anchored `pattern` repeats on its own (`é+`, `é?`,
/// `é{2}`, outside a character class). llama.cpp's converter applies the repetition
/// to the character's last byte, which makes a grammar that is not UTF-8; llama-cpp-2
/// then reports an error after leaking the grammar's buffer (found by fuzzing).
fn repeated_non_ascii(pattern: &str) -> Option<char> {
    if !(pattern.len() >= 2 && pattern.starts_with('^') && pattern.ends_with('$')) {
        return None; // not converted: any string
    }
    let mut in_class = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '[' if !in_class => in_class = true,
            ']' if in_class => in_class = false,
            _ if !in_class
                && !c.is_ascii()
                && matches!(chars.peek(), Some('*' | '+' | '?' | '{')) =>
            {
                return Some(c);
            }
            _ => {}
        }
    }
    None
}

/// Whether llama.cpp reads a schema as a `$ref` (the key wins over every other).
fn part_is_ref(part: &Value) -> bool {
    part.get("$ref").is_some()
}

/// The alternatives of an `anyOf` / `oneOf` schema (`oneOf` wins, as in llama.cpp).
fn alternatives(schema: &Value) -> Option<&Vec<Value>> {
    schema
        .get("oneOf")
        .or_else(|| schema.get("anyOf"))
        .and_then(Value::as_array)
}

fn property_count(schema: Option<&Value>) -> usize {
    schema
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
        .map_or(0, Map::len)
}

/// Schemas llama.cpp builds from one schema object: one per string of its `type`
/// array (nested arrays flattened), else one.
fn type_entries(ty: Option<&Value>) -> usize {
    fn leaves(value: &Value) -> usize {
        match value {
            Value::Array(items) => items.iter().map(leaves).fold(0, usize::saturating_add),
            _ => 1,
        }
    }
    match ty {
        Some(types @ Value::Array(_)) => leaves(types).max(1),
        _ => 1,
    }
}

/// Resolves a `$ref` as llama.cpp does: `#/` then keys taken as written (no `~0` /
/// `~1` escapes), an array index read as `std::stoull` reads it (so `0`, `00` and
/// `0x` all name the first element).
fn resolve<'v>(root: &'v Value, reference: &str) -> Option<&'v Value> {
    let mut target = root;
    for token in reference.strip_prefix("#/")?.split('/') {
        target = match target {
            Value::Object(map) => map.get(token)?,
            Value::Array(items) => items.get(stoull(token)?)?,
            _ => return None,
        };
    }
    Some(target)
}

/// `std::stoull`: leading white space, a sign, decimal digits, anything after.
fn stoull(token: &str) -> Option<usize> {
    let token = token.trim_start_matches([' ', '\t', '\n', '\u{b}', '\u{c}', '\r']);
    let (negative, digits) = match token.as_bytes().first() {
        Some(b'-') => (true, &token[1..]),
        Some(b'+') => (false, &token[1..]),
        _ => (false, token),
    };
    let end = digits.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = digits[..end].parse().ok()?;
    if negative && n != 0 {
        return None; // wraps to an index no array has
    }
    usize::try_from(n).ok()
}

/// `$.a.b[0]` for a value about to be visited from the top of `stack`.
fn path_of(stack: &[Frame<'_>], step: Step<'_>) -> String {
    let mut path = String::from("$");
    for s in stack.iter().map(|f| f.step).chain(std::iter::once(step)) {
        match s {
            Step::Root => {}
            Step::Key(key) => {
                path.push('.');
                path.push_str(key);
            }
            Step::Index(i) => path.push_str(&format!("[{i}]")),
            Step::Merge(reference) => path.push_str(&format!("(allOf → {reference})")),
        }
    }
    path
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

    // Regression tests from fuzzing the schema → grammar path (fuzz/README.md). Each
    // refused schema below crashed the process, or ran for seconds to hours, or grew
    // gigabytes, in llama.cpp's converter before the second pass refused it.

    fn converts(schema: &Value) {
        let grammar = json_schema_grammar(schema).expect("converts");
        assert!(grammar.contains("root ::="), "{grammar}");
    }

    fn refused(schema: &Value, expected: &str) {
        let err = json_schema_grammar(schema).expect_err("refused");
        assert!(err.to_string().contains(expected), "{err}");
    }

    #[test]
    fn a_ref_that_leads_only_to_itself_is_refused() {
        // Overflowed the 64 MiB native stack (an `allOf` part follows `$ref`s with no
        // guard), which aborts the whole server.
        refused(
            &json!({"$defs": {"a": {"$ref": "#/$defs/a"}}, "allOf": [{"$ref": "#/$defs/a"}]}),
            "refers to itself",
        );
        refused(
            &json!({
                "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}},
                "allOf": [{"$ref": "#/$defs/a"}]
            }),
            "refers to itself",
        );
        // Chains of `$ref`-only targets are bounded too.
        let mut root = Map::new();
        root.insert("$ref".into(), json!("#/r0"));
        for i in 0..100 {
            root.insert(format!("r{i}"), json!({"$ref": format!("#/r{}", i + 1)}));
        }
        root.insert("r100".into(), json!({"type": "string"}));
        refused(&Value::Object(root), "`$ref`s in a row");
    }

    #[test]
    fn recursion_through_all_of_is_refused() {
        // A recursive schema written through `allOf` (as some generators wrap a
        // `$ref` to add a description) recursed until the stack overflowed, after
        // growing ~10 GiB of rule names.
        refused(
            &json!({
                "$defs": {"node": {"type": "object", "properties": {
                    "child": {"allOf": [{"$ref": "#/$defs/node"}]}
                }}},
                "$ref": "#/$defs/node"
            }),
            "`allOf` at $.$defs.node.properties.child",
        );
        let node = json!({"type": "object", "properties": {
            "name": {"type": "string"},
            "children": {"type": "array", "items": {
                "allOf": [{"anyOf": [{"$ref": "#/$defs/node"}, {"type": "null"}]}]
            }}
        }});
        refused(
            &json!({"$defs": {"node": node}, "$ref": "#/$defs/node"}),
            "allOf",
        );
    }

    #[test]
    fn recursion_through_plain_refs_and_all_of_without_recursion_convert() {
        converts(&json!({
            "$defs": {"node": {"type": "object", "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}
            }}},
            "$ref": "#/$defs/node"
        }));
        converts(&json!({
            "$defs": {"base": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}},
            "allOf": [{"$ref": "#/$defs/base"}, {"type": "object", "properties": {"extra": {"type": "boolean"}}}]
        }));
        converts(&json!({
            "$defs": {"pet": {"type": "object", "properties": {"kind": {"enum": ["cat", "dog"]}}}},
            "type": "object",
            "properties": {"pet": {"allOf": [{"$ref": "#/$defs/pet"}], "description": "the pet"}},
            "required": ["pet"]
        }));
    }

    #[test]
    fn many_optional_properties_are_refused() {
        // Found by the fuzzer as timeouts: the converter's rule for optional
        // properties is cubic in them (2,000 took 19 s, 1,230 took 1.8 s).
        let props = |n: usize| -> Map<String, Value> {
            (0..n).map(|i| (format!("p{i}"), json!({}))).collect()
        };
        refused(
            &json!({"type": "object", "properties": props(2000)}),
            "2000 optional properties",
        );
        // Merged into an `allOf` from `anyOf` alternatives, they count too.
        refused(
            &json!({
                "$defs": {"wide": {"type": "object", "properties": props(100)}},
                "allOf": [{"anyOf": [
                    {"$ref": "#/$defs/wide"}, {"$ref": "#/$defs/wide"}, {"$ref": "#/$defs/wide"}
                ]}]
            }),
            "300 optional properties",
        );
        converts(&json!({"type": "object", "properties": props(200)}));
        // Required ones are cheap.
        let names: Vec<String> = (0..3000).map(|i| format!("p{i}")).collect();
        converts(&json!({"type": "object", "properties": props(3000), "required": names}));
    }

    #[test]
    fn nested_type_arrays_are_refused_before_they_grow() {
        // 1.2 KiB: each level's `type` array builds the level below twice, 2^24
        // times at the bottom (depth 16 already took 2 s and wrote a 55 MB grammar).
        let mut schema = json!({"type": "string"});
        for _ in 0..24 {
            schema = json!({"type": ["object", "object"], "properties": {"a": schema}});
        }
        refused(&schema, "grammar of more than");

        let mut nullable = json!({"type": "string"});
        for _ in 0..8 {
            nullable = json!({"type": ["object", "null"], "properties": {"v": {"type": "integer"}, "next": nullable}});
        }
        converts(&nullable);
    }

    #[test]
    fn each_spelling_of_a_ref_counts() {
        // llama.cpp reads an array index with `stoull`, so `0`, `0x1`, `0x2` … all
        // name one schema, which it builds again for each spelling (3,000 of them
        // took 8 s and wrote a 220 MB grammar).
        let names: Vec<String> = (0..300).map(|i| format!("q{i}")).collect();
        let target = json!({"type": "object",
            "properties": names.iter()
                .map(|n| (n.clone(), json!({"type": "integer", "minimum": 1})))
                .collect::<Map<String, Value>>(),
            "required": names});
        let refs: Vec<Value> = (0..3000)
            .map(|i| json!({"$ref": format!("#/$defs/arr/0x{i}")}))
            .collect();
        refused(
            &json!({"$defs": {"arr": [target]}, "anyOf": refs}),
            "grammar of more than",
        );
        let root = json!({"$defs": {"arr": [{"type": "string"}]}});
        assert_eq!(
            resolve(&root, "#/$defs/arr/ +0x7"),
            Some(&json!({"type": "string"}))
        );
        assert_eq!(resolve(&root, "#/$defs/arr/x"), None);
        assert_eq!(resolve(&root, "#/$defs/arr/-1"), None);
    }

    #[test]
    fn long_names_over_many_properties_are_refused() {
        // Every rule is named after all the properties it is nested in: 28 names of
        // 1,024 characters over 3,000 properties (84 KB) wrote a 346 MB grammar.
        let names: Vec<String> = (0..3000).map(|i| format!("p{i}")).collect();
        let mut schema = json!({"type": "object",
            "properties": names.iter().map(|n| (n.clone(), json!({}))).collect::<Map<String, Value>>(),
            "required": names});
        for i in 0..28 {
            schema = json!({"type": "object", "properties": {format!("{}{i:02}", "x".repeat(1022)): schema}});
        }
        refused(&schema, "grammar of more than");
    }

    #[test]
    fn many_patterns_in_a_large_schema_are_refused() {
        // The converter copies all its rules before each pattern (5,000: 2.5 s).
        let schema = |n: usize| {
            let names: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
            json!({"type": "object",
                "properties": names.iter()
                    .map(|n| (n.clone(), json!({"type": "string", "pattern": "^a$"})))
                    .collect::<Map<String, Value>>(),
                "required": names})
        };
        refused(&schema(2000), "2000 patterns");
        converts(&schema(100));
    }

    #[test]
    fn a_repeated_non_ascii_character_in_a_pattern_is_refused_before_the_converter() {
        // Found by the fuzzer (LeakSanitizer): the converter repeats only the last byte
        // of `é`, the grammar is not UTF-8, and llama-cpp-2's `json_schema_to_grammar`
        // returns its error without freeing the grammar: every such request leaked.
        refused(
            &json!({"type": "string", "pattern": "^é+$"}),
            "put it in a group",
        );
        refused(
            &json!({"type": "object", "properties": {"code": {"type": "string", "pattern": "^ab😀{2}$"}}}),
            "pattern at $.properties.code",
        );
        converts(&json!({"type": "string", "pattern": "^(é)+$"}));
        converts(&json!({"type": "string", "pattern": "^[é?]x$"}));
        converts(&json!({"type": "string", "pattern": "^é\\+x$"}));
        // Unanchored patterns are not converted (any string), so they pass.
        converts(&json!({"type": "string", "pattern": "é+"}));
    }

    #[test]
    fn a_nul_in_a_pattern_is_refused() {
        // Found by the fuzzer: the grammar came back cut at the NUL (llama-cpp-2 reads
        // it as a C string), `Ok` but without its `root` rule.
        refused(
            &json!({"anyOf": [{"type": "string", "pattern": "^\u{0}$"}]}),
            "pattern at $.anyOf[0] contains the character U+0000",
        );
        refused(
            &json!({"type": "string", "pattern": "^a[\u{0}-z]$"}),
            "U+0000",
        );
    }

    #[test]
    fn objects_of_many_keys_are_refused() {
        // llama.cpp's JSON finds keys by a linear scan: parsing is quadratic in them.
        let keys: Map<String, Value> = (0..5000).map(|i| (format!("{i:x}"), json!(0))).collect();
        refused(
            &json!({"type": "object", "x": keys}),
            "object of 5000 keys at $.x",
        );
    }
}
