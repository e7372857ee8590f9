//! A schema tree built with `arbitrary` → `json_schema_grammar`.
//!
//! Random JSON text rarely nests deeply, names a `$defs` entry or writes a pattern the
//! converter parses, so this target builds schemas from the bytes instead: objects with
//! long, Unicode or colliding property names, required subsets, `additionalProperties`,
//! arrays and tuples with counts, strings with patterns / formats / lengths, integer
//! bounds (huge, negative, fractional), enums and consts, `anyOf` / `oneOf` / `allOf`,
//! `type` arrays (nested, repeated), `$ref`s into `$defs` (cycles included), and "wide"
//! objects of up to a few thousand generated properties. The same contract as the raw
//! target: the conversion returns, whatever the schema.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Map, Number, Value};

#[derive(Arbitrary, Debug)]
struct Document {
    root: Node,
    /// `$defs.d0` … (a `Ref::Def` picks one by index, resolved or not).
    defs: Vec<Node>,
    /// `$defs.arr[…]` (reachable as `#/$defs/arr/0`, `…/00`, `…/0x`: llama.cpp reads the
    /// index with `stoull`, so many spellings alias one schema).
    arr_defs: Vec<Node>,
}

#[derive(Arbitrary, Debug)]
enum Node {
    Any,
    Null,
    Boolean,
    Number,
    Integer {
        minimum: Option<Num>,
        maximum: Option<Num>,
        exclusive_minimum: Option<Num>,
        exclusive_maximum: Option<Num>,
    },
    String {
        pattern: Option<Pattern>,
        format: Option<Format>,
        min_length: Option<Count>,
        max_length: Option<Count>,
    },
    Array {
        items: Option<Box<Node>>,
        prefix_items: Option<Vec<Node>>,
        min_items: Option<Count>,
        max_items: Option<Count>,
        typed: bool,
    },
    Object {
        properties: Vec<(Name, Node)>,
        /// Indices into `properties` (mod its length), or a name of its own.
        required: Vec<Required>,
        additional: Option<Additional>,
        wide: Option<Wide>,
        typed: bool,
    },
    Enum(Vec<Literal>),
    Const(Literal),
    AnyOf(Vec<Node>),
    OneOf(Vec<Node>),
    AllOf(Vec<Node>),
    Ref(Ref),
    /// `body` with `"type": [...]` set (a type array duplicates the schema per type).
    Types {
        types: Vec<TypeName>,
        body: Box<Node>,
    },
    /// Several keywords at once: the converter picks one by its own precedence.
    Merge(Box<Node>, Box<Node>),
    /// A long `description` (free text: must not count as grammar text).
    Described(Box<Node>, u16),
}

#[derive(Arbitrary, Debug)]
enum Num {
    Small(i8),
    Int(i64),
    Float(f64),
    Extreme(bool),
}

#[derive(Arbitrary, Debug)]
enum Count {
    Small(u8),
    Big(u32),
    Negative(i32),
    Fraction(f32),
    Huge,
}

#[derive(Arbitrary, Debug)]
enum Format {
    Date,
    Time,
    DateTime,
    Uuid,
    Uuid4,
    Email,
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Pattern {
    /// `^…$` around the tokens.
    Anchored(Vec<PatToken>),
    /// The tokens without anchors (unsupported: any string).
    Bare(Vec<PatToken>),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum PatToken {
    Literal(char),
    Text(String),
    Dot,
    Group(Vec<PatToken>),
    NonCapturing(Vec<PatToken>),
    Lookahead,
    Open,
    Close,
    Class(String),
    NegClass(String),
    Star,
    Plus,
    Question,
    Repeat(i32, Option<i32>),
    RepeatText(String),
    Alternation,
    Escape(char),
    Hex(u32),
    Anchor(bool),
    /// `(` × n, a literal, `)` × n: nesting near the converter's limit of 100.
    Nest(u8),
    /// One character many times (long literals, long character classes).
    Run(char, u16),
}

#[derive(Arbitrary, Debug)]
enum Name {
    Pick(u8),
    Raw(String),
    /// One character repeated: around the 1024-character limit when `len` is large.
    Long(char, u16),
    /// A common prefix then a few characters that all become `-` in a rule name, so
    /// that rule names collide.
    Colliding(u8, u8),
}

#[derive(Arbitrary, Debug)]
enum Required {
    Index(u8),
    Named(Name),
    NotAString(i8),
}

#[derive(Arbitrary, Debug)]
enum Additional {
    Bool(bool),
    Schema(Box<Node>),
    Invalid,
}

/// `count` generated properties, every `required_every`-th one required.
#[derive(Arbitrary, Debug)]
struct Wide {
    count: u16,
    required_every: u8,
    with_types: bool,
}

#[derive(Arbitrary, Debug)]
enum Literal {
    Str(String),
    Long(char, u16),
    Int(i64),
    Float(f64),
    Bool(bool),
    Null,
    Array(Vec<Literal>),
    Object(Vec<(String, Literal)>),
}

#[derive(Arbitrary, Debug)]
enum Ref {
    Def(u8),
    Arr(u8, String),
    Root,
    Path(Vec<String>),
    Raw(String),
    Long(char, u16),
    NotAString(i64),
}

#[derive(Arbitrary, Debug)]
enum TypeName {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
    Null,
    Bogus(String),
    Nested(Vec<TypeName>),
    NotAString(i8),
}

const NAMES: [&str; 16] = [
    "a",
    "b",
    "name",
    "root",
    "string",
    "value",
    "-",
    "",
    "a b",
    "é",
    "😀",
    "kv",
    "a-kv",
    "additional",
    "*",
    "ref",
];

fn repeat(c: char, len: u16) -> String {
    std::iter::repeat(c).take(usize::from(len)).collect()
}

fn long_len(len: u16) -> u16 {
    // Mostly near the limits (1024 name / 4096 literal characters), sometimes beyond.
    len % 4200
}

impl Name {
    fn text(&self) -> String {
        match self {
            Name::Pick(i) => NAMES[usize::from(*i) % NAMES.len()].to_string(),
            Name::Raw(s) => s.clone(),
            Name::Long(c, len) => repeat(*c, long_len(*len)),
            Name::Colliding(prefix, tail) => {
                let punct = ['!', '?', '#', ' ', '.', '_', '$', '%'];
                let mut s = NAMES[usize::from(*prefix) % NAMES.len()].to_string();
                let mut t = *tail;
                loop {
                    s.push(punct[usize::from(t % 8)]);
                    t /= 8;
                    if t == 0 {
                        break;
                    }
                }
                s
            }
        }
    }
}

impl Num {
    fn json(&self) -> Value {
        match self {
            Num::Small(n) => json!(n),
            Num::Int(n) => json!(n),
            Num::Float(f) => Number::from_f64(*f).map_or(json!(0.5), Value::Number),
            Num::Extreme(big) => {
                if *big {
                    json!(1e300)
                } else {
                    json!(-1e300)
                }
            }
        }
    }
}

impl Count {
    fn json(&self) -> Value {
        match self {
            Count::Small(n) => json!(n),
            Count::Big(n) => json!(n),
            Count::Negative(n) => json!(n),
            Count::Fraction(f) => Number::from_f64(f64::from(*f)).map_or(json!(1.5), Value::Number),
            Count::Huge => json!(u64::MAX),
        }
    }
}

impl Format {
    fn json(&self) -> Value {
        match self {
            Format::Date => json!("date"),
            Format::Time => json!("time"),
            Format::DateTime => json!("date-time"),
            Format::Uuid => json!("uuid"),
            Format::Uuid4 => json!("uuid4"),
            Format::Email => json!("email"),
            Format::Raw(s) => json!(s),
        }
    }
}

fn pattern_text(tokens: &[PatToken], out: &mut String) {
    for token in tokens {
        match token {
            PatToken::Literal(c) => out.push(*c),
            PatToken::Text(s) => out.push_str(s),
            PatToken::Dot => out.push('.'),
            PatToken::Group(inner) => {
                out.push('(');
                pattern_text(inner, out);
                out.push(')');
            }
            PatToken::NonCapturing(inner) => {
                out.push_str("(?:");
                pattern_text(inner, out);
                out.push(')');
            }
            PatToken::Lookahead => out.push_str("(?="),
            PatToken::Open => out.push('('),
            PatToken::Close => out.push(')'),
            PatToken::Class(s) => {
                out.push('[');
                out.push_str(s);
                out.push(']');
            }
            PatToken::NegClass(s) => {
                out.push_str("[^");
                out.push_str(s);
                out.push(']');
            }
            PatToken::Star => out.push('*'),
            PatToken::Plus => out.push('+'),
            PatToken::Question => out.push('?'),
            PatToken::Repeat(min, max) => {
                out.push_str(&match max {
                    Some(max) => format!("{{{min},{max}}}"),
                    None => format!("{{{min}}}"),
                });
            }
            PatToken::RepeatText(s) => {
                out.push('{');
                out.push_str(s);
                out.push('}');
            }
            PatToken::Alternation => out.push('|'),
            PatToken::Escape(c) => {
                out.push('\\');
                out.push(*c);
            }
            PatToken::Hex(n) => out.push_str(&match n % 3 {
                0 => format!("\\x{:02x}", n & 0xff),
                1 => format!("\\u{:04x}", n & 0xffff),
                _ => format!("\\U{:08x}", n),
            }),
            PatToken::Anchor(start) => out.push(if *start { '^' } else { '$' }),
            PatToken::Nest(n) => {
                let n = usize::from(*n);
                out.push_str(&"(".repeat(n));
                out.push('a');
                out.push_str(&")".repeat(n));
            }
            PatToken::Run(c, len) => out.push_str(&repeat(*c, long_len(*len))),
        }
    }
}

impl Pattern {
    fn json(&self) -> Value {
        match self {
            Pattern::Anchored(tokens) => {
                let mut s = String::from("^");
                pattern_text(tokens, &mut s);
                s.push('$');
                json!(s)
            }
            Pattern::Bare(tokens) => {
                let mut s = String::new();
                pattern_text(tokens, &mut s);
                json!(s)
            }
            Pattern::Raw(s) => json!(s),
        }
    }
}

impl Literal {
    fn json(&self) -> Value {
        match self {
            Literal::Str(s) => json!(s),
            Literal::Long(c, len) => json!(repeat(*c, long_len(*len))),
            Literal::Int(n) => json!(n),
            Literal::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Literal::Bool(b) => json!(b),
            Literal::Null => Value::Null,
            Literal::Array(items) => Value::Array(items.iter().map(Literal::json).collect()),
            Literal::Object(fields) => {
                Value::Object(fields.iter().map(|(k, v)| (k.clone(), v.json())).collect())
            }
        }
    }
}

impl Ref {
    fn json(&self) -> Value {
        match self {
            Ref::Def(i) => json!(format!("#/$defs/d{}", i % 8)),
            Ref::Arr(i, suffix) => json!(format!("#/$defs/arr/{}{suffix}", i % 4)),
            Ref::Root => json!("#/"),
            Ref::Path(parts) => json!(format!("#/{}", parts.join("/"))),
            Ref::Raw(s) => json!(s),
            Ref::Long(c, len) => json!(format!("#/$defs/{}", repeat(*c, long_len(*len)))),
            Ref::NotAString(n) => json!(n),
        }
    }
}

impl TypeName {
    fn json(&self) -> Value {
        match self {
            TypeName::Object => json!("object"),
            TypeName::Array => json!("array"),
            TypeName::String => json!("string"),
            TypeName::Integer => json!("integer"),
            TypeName::Number => json!("number"),
            TypeName::Boolean => json!("boolean"),
            TypeName::Null => json!("null"),
            TypeName::Bogus(s) => json!(s),
            TypeName::Nested(types) => Value::Array(types.iter().map(TypeName::json).collect()),
            TypeName::NotAString(n) => json!(n),
        }
    }
}

fn schemas(nodes: &[Node]) -> Value {
    Value::Array(nodes.iter().map(Node::json).collect())
}

impl Node {
    fn json(&self) -> Value {
        let mut m = Map::new();
        match self {
            Node::Any => {}
            Node::Null => {
                m.insert("type".into(), json!("null"));
            }
            Node::Boolean => {
                m.insert("type".into(), json!("boolean"));
            }
            Node::Number => {
                m.insert("type".into(), json!("number"));
            }
            Node::Integer {
                minimum,
                maximum,
                exclusive_minimum,
                exclusive_maximum,
            } => {
                m.insert("type".into(), json!("integer"));
                for (key, value) in [
                    ("minimum", minimum),
                    ("maximum", maximum),
                    ("exclusiveMinimum", exclusive_minimum),
                    ("exclusiveMaximum", exclusive_maximum),
                ] {
                    if let Some(v) = value {
                        m.insert(key.into(), v.json());
                    }
                }
            }
            Node::String {
                pattern,
                format,
                min_length,
                max_length,
            } => {
                m.insert("type".into(), json!("string"));
                if let Some(p) = pattern {
                    m.insert("pattern".into(), p.json());
                }
                if let Some(f) = format {
                    m.insert("format".into(), f.json());
                }
                if let Some(c) = min_length {
                    m.insert("minLength".into(), c.json());
                }
                if let Some(c) = max_length {
                    m.insert("maxLength".into(), c.json());
                }
            }
            Node::Array {
                items,
                prefix_items,
                min_items,
                max_items,
                typed,
            } => {
                if *typed {
                    m.insert("type".into(), json!("array"));
                }
                if let Some(items) = items {
                    m.insert("items".into(), items.json());
                }
                if let Some(prefix) = prefix_items {
                    m.insert("prefixItems".into(), schemas(prefix));
                }
                if let Some(c) = min_items {
                    m.insert("minItems".into(), c.json());
                }
                if let Some(c) = max_items {
                    m.insert("maxItems".into(), c.json());
                }
            }
            Node::Object {
                properties,
                required,
                additional,
                wide,
                typed,
            } => {
                if *typed {
                    m.insert("type".into(), json!("object"));
                }
                let mut props = Map::new();
                let mut names: Vec<String> = Vec::new();
                for (name, schema) in properties {
                    let name = name.text();
                    names.push(name.clone());
                    props.insert(name, schema.json());
                }
                let mut req: Vec<Value> = required
                    .iter()
                    .filter_map(|r| match r {
                        Required::Index(i) if !names.is_empty() => {
                            Some(json!(names[usize::from(*i) % names.len()]))
                        }
                        Required::Index(_) => None,
                        Required::Named(n) => Some(json!(n.text())),
                        Required::NotAString(n) => Some(json!(n)),
                    })
                    .collect();
                if let Some(w) = wide {
                    let every = usize::from(w.required_every.max(1));
                    for i in 0..usize::from(w.count % 3000) {
                        let name = format!("w{i}");
                        if i % every == 0 && w.required_every != 0 {
                            req.push(json!(name));
                        }
                        let schema = if w.with_types {
                            json!({"type": "string"})
                        } else {
                            json!({})
                        };
                        props.insert(name, schema);
                    }
                }
                if !props.is_empty() || !properties.is_empty() {
                    m.insert("properties".into(), Value::Object(props));
                }
                if !req.is_empty() {
                    m.insert("required".into(), Value::Array(req));
                }
                match additional {
                    Some(Additional::Bool(b)) => {
                        m.insert("additionalProperties".into(), json!(b));
                    }
                    Some(Additional::Schema(s)) => {
                        m.insert("additionalProperties".into(), s.json());
                    }
                    Some(Additional::Invalid) => {
                        m.insert("additionalProperties".into(), json!(1));
                    }
                    None => {}
                }
            }
            Node::Enum(values) => {
                m.insert(
                    "enum".into(),
                    Value::Array(values.iter().map(Literal::json).collect()),
                );
            }
            Node::Const(value) => {
                m.insert("const".into(), value.json());
            }
            Node::AnyOf(alts) => {
                m.insert("anyOf".into(), schemas(alts));
            }
            Node::OneOf(alts) => {
                m.insert("oneOf".into(), schemas(alts));
            }
            Node::AllOf(alts) => {
                m.insert("allOf".into(), schemas(alts));
            }
            Node::Ref(r) => {
                m.insert("$ref".into(), r.json());
            }
            Node::Types { types, body } => {
                let mut v = body.json();
                if let Value::Object(obj) = &mut v {
                    obj.insert(
                        "type".into(),
                        Value::Array(types.iter().map(TypeName::json).collect()),
                    );
                }
                return v;
            }
            Node::Merge(a, b) => {
                let mut v = a.json();
                if let (Value::Object(obj), Value::Object(other)) = (&mut v, b.json()) {
                    for (k, val) in other {
                        obj.entry(k).or_insert(val);
                    }
                }
                return v;
            }
            Node::Described(node, len) => {
                let mut v = node.json();
                if let Value::Object(obj) = &mut v {
                    obj.insert("description".into(), json!(repeat('d', *len)));
                }
                return v;
            }
        }
        Value::Object(m)
    }
}

impl Document {
    fn json(&self) -> Value {
        let mut root = self.root.json();
        if let Value::Object(obj) = &mut root {
            let mut defs = Map::new();
            for (i, d) in self.defs.iter().enumerate() {
                defs.insert(format!("d{i}"), d.json());
            }
            if !self.arr_defs.is_empty() {
                defs.insert("arr".into(), schemas(&self.arr_defs));
            }
            if !defs.is_empty() {
                obj.insert("$defs".into(), Value::Object(defs));
            }
        }
        root
    }
}

fuzz_target!(|doc: Document| {
    let schema = doc.json();
    // Triage: `BASALT_FUZZ_DUMP=file.json <target> artifact` writes the schema an
    // input stands for (e.g. to replay it elsewhere) instead of converting it.
    if let Some(path) = std::env::var_os("BASALT_FUZZ_DUMP") {
        std::fs::write(path, schema.to_string()).expect("write the schema");
        return;
    }
    if let Ok(grammar) = basalt_engine::chat::json_schema_grammar(&schema) {
        assert!(
            grammar.contains("root ::="),
            "a grammar without a root rule"
        );
    }
});
