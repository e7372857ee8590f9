//! A Hugging Face tokenizer (`tokenizer.json`, `tokenizer_config.json`, the chat
//! template) as GGUF tokenizer metadata, the way llama.cpp reads it: byte-level BPE
//! (`tokenizer.ggml.model = "gpt2"`) with its merges, the pre-tokenizer llama.cpp must
//! apply (`tokenizer.ggml.pre`), token types, special tokens and the chat template.
//!
//! llama.cpp's own converter names the pre-tokenizer by hashing what the Python
//! tokenizer makes of a test text; here it is read from the pre-tokenizer that
//! `tokenizer.json` declares, and one this module does not know is refused with what it
//! declared (tokenizing with the wrong rules would serve a subtly different model).

use std::collections::BTreeMap;

use serde_json::Value;

use super::gguf_write::MetaValue;
use super::sentencepiece;
use super::ConvertError;

/// Most tokens a vocabulary may have.
const MAX_VOCAB: usize = 1 << 20;

// llama.cpp's token types.
const NORMAL: i32 = 1;
const UNKNOWN: i32 = 2;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// Llama 3's split pattern (`tokenizer.ggml.pre = "llama-bpe"`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's: Llama 3's with single digits (`"qwen2"`).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The files of a tokenizer, parsed.
pub struct TokenizerFiles<'a> {
    pub tokenizer: &'a Value,
    /// `tokenizer_config.json`, or `null` when absent.
    pub tokenizer_config: &'a Value,
    /// `config.json` (special token IDs when the tokenizer's config does not name them).
    pub model_config: &'a Value,
    /// `chat_template.jinja`, when the folder has one.
    pub chat_template_file: Option<String>,
    /// `tokenizer.model`, when the folder has one (a SentencePiece model: used first,
    /// as llama.cpp's converter does).
    pub sentencepiece: Option<Vec<u8>>,
    /// `added_tokens.json`, or `null`.
    pub added_tokens_file: &'a Value,
}

/// What the tokenizer becomes.
pub struct GgufVocab {
    pub metadata: Vec<(String, MetaValue)>,
    pub size: usize,
    pub chat_template: bool,
}

/// The tokenizer as GGUF metadata, for a model whose embedding has `vocab_size` rows
/// (tokens past the tokenizer's are padding, as llama.cpp's converter writes them).
pub fn gguf_vocab(files: &TokenizerFiles, vocab_size: usize) -> Result<GgufVocab, ConvertError> {
    let (mut metadata, added_ids) = match &files.sentencepiece {
        Some(bytes) => sentencepiece_vocab(files, bytes, vocab_size)?,
        None => byte_level_vocab(files, vocab_size)?,
    };
    metadata.extend(special_tokens(files, &added_ids, vocab_size));
    let template = chat_template(files);
    let has_template = template.is_some();
    if let Some(template) = template {
        metadata.push(entry("tokenizer.chat_template", MetaValue::Text(template)));
    }
    Ok(GgufVocab {
        metadata,
        size: vocab_size,
        chat_template: has_template,
    })
}

/// The metadata of a tokenizer and the IDs of its added tokens by text.
type VocabParts = (Vec<(String, MetaValue)>, BTreeMap<String, usize>);

/// A SentencePiece BPE model (`tokenizer.model`: Llama 2, Mistral 7B) as llama.cpp's
/// `llama` tokenizer, as llama.cpp's converter writes it: every piece with its score
/// and type, `added_tokens.json` and `tokenizer_config.json`'s `added_tokens_decoder`
/// over them (score -1000), padding pieces past the model's up to `vocab_size`.
fn sentencepiece_vocab(
    files: &TokenizerFiles,
    bytes: &[u8],
    vocab_size: usize,
) -> Result<VocabParts, ConvertError> {
    let refuse = |why: String| ConvertError::Refused(format!("tokenizer.model: {why}"));
    let model = sentencepiece::parse(bytes)?;
    if !model.bpe {
        return Err(refuse(
            "a Unigram SentencePiece model is not converted here (BPE ones, as Llama 2 and Mistral use, are); import a GGUF file of this model".into(),
        ));
    }
    if model.pieces.len() > vocab_size {
        return Err(refuse(format!(
            "{} pieces, more than the model's vocab_size {vocab_size}",
            model.pieces.len()
        )));
    }
    let mut tokens: Vec<String> = (0..vocab_size).map(|i| format!("[PAD{i}]")).collect();
    let mut scores = vec![-10_000.0f32; vocab_size];
    let mut types = vec![UNUSED; vocab_size];
    for (i, piece) in model.pieces.iter().enumerate() {
        tokens[i] = piece.text.clone();
        scores[i] = piece.score;
        types[i] = piece.kind;
    }
    if let Some(added) = files.added_tokens_file.as_object() {
        for (text, id) in added {
            if let Some(id) = token_id(id).filter(|id| *id < vocab_size) {
                tokens[id] = text.clone();
                scores[id] = -1000.0;
                types[id] = USER_DEFINED;
            }
        }
    }
    if let Some(decoder) = files
        .tokenizer_config
        .get("added_tokens_decoder")
        .and_then(Value::as_object)
    {
        for (id, entry) in decoder {
            let Some(id) = id.parse::<usize>().ok().filter(|id| *id < vocab_size) else {
                continue;
            };
            let Some(content) = entry.get("content").and_then(Value::as_str) else {
                continue;
            };
            let special = entry.get("special").and_then(Value::as_bool) == Some(true);
            if special || looks_special(content) {
                tokens[id] = content.to_owned();
                types[id] = CONTROL;
            } else {
                tokens[id] = content.replace('\u{2581}', " ");
                types[id] = USER_DEFINED;
            }
            scores[id] = -1000.0;
        }
    }
    // Special tokens are named by text: the tokenizer's added tokens, else the model's
    // control and unknown pieces.
    let mut added_ids = added_token_ids(files.tokenizer)?;
    for (id, token) in tokens.iter().enumerate() {
        if matches!(types[id], CONTROL | UNKNOWN) {
            added_ids.entry(token.clone()).or_insert(id);
        }
    }
    let metadata = vec![
        entry("tokenizer.ggml.model", MetaValue::Text("llama".into())),
        entry("tokenizer.ggml.pre", MetaValue::Text("default".into())),
        entry("tokenizer.ggml.tokens", MetaValue::TextArray(tokens)),
        entry("tokenizer.ggml.scores", MetaValue::F32Array(scores)),
        entry("tokenizer.ggml.token_type", MetaValue::I32Array(types)),
        entry(
            "tokenizer.ggml.add_space_prefix",
            MetaValue::Bool(model.add_dummy_prefix),
        ),
    ];
    Ok((metadata, added_ids))
}

/// `tokenizer.json`'s added tokens by text (none when the file is absent).
fn added_token_ids(tokenizer: &Value) -> Result<BTreeMap<String, usize>, ConvertError> {
    Ok(added_tokens(tokenizer)?
        .into_iter()
        .map(|entry| (entry.content, entry.id))
        .collect())
}

struct AddedToken {
    id: usize,
    content: String,
    special: bool,
}

fn added_tokens(tokenizer: &Value) -> Result<Vec<AddedToken>, ConvertError> {
    let refuse = |why: String| ConvertError::Refused(format!("tokenizer.json: {why}"));
    let added = tokenizer
        .get("added_tokens")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if added.len() > MAX_VOCAB {
        return Err(refuse(format!("{} added tokens", added.len())));
    }
    added
        .iter()
        .map(|entry| {
            let (Some(id), Some(content)) = (
                entry.get("id").and_then(token_id),
                entry.get("content").and_then(Value::as_str),
            ) else {
                return Err(refuse(format!("added token {entry} has no id or content")));
            };
            Ok(AddedToken {
                id,
                content: content.to_owned(),
                special: entry.get("special").and_then(Value::as_bool) == Some(true),
            })
        })
        .collect()
}

/// A byte-level BPE `tokenizer.json` (Llama 3, Qwen2, SmolLM, GPT-2) as llama.cpp's
/// `gpt2` tokenizer with its merges and pre-tokenizer.
fn byte_level_vocab(files: &TokenizerFiles, vocab_size: usize) -> Result<VocabParts, ConvertError> {
    let refuse = |why: String| ConvertError::Refused(format!("tokenizer.json: {why}"));
    if files.tokenizer.is_null() {
        return Err(ConvertError::Refused(
            "tokenizer.json is missing (and there is no SentencePiece tokenizer.model)".into(),
        ));
    }
    let model = files
        .tokenizer
        .get("model")
        .ok_or_else(|| refuse("has no model".into()))?;
    let kind = model.get("type").and_then(Value::as_str).unwrap_or("");
    if kind != "BPE" {
        return Err(refuse(format!(
            "a {kind:?} tokenizer model; only byte-level BPE tokenizers (Llama 3, Qwen2, SmolLM, GPT-2 style) are converted"
        )));
    }
    if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(refuse(
            "a SentencePiece-style BPE tokenizer (byte_fallback, as Llama 2 and Mistral 7B use) is converted from its tokenizer.model, which the folder lacks".into(),
        ));
    }
    let pre_tokenizer = files.tokenizer.get("pre_tokenizer").unwrap_or(&Value::Null);
    let pre = pre_tokenizer_name(pre_tokenizer)?;

    // Token → ID from the model's vocabulary and the added tokens.
    let vocab = model
        .get("vocab")
        .and_then(Value::as_object)
        .ok_or_else(|| refuse("model.vocab is not an object".into()))?;
    if vocab.len() > MAX_VOCAB {
        return Err(refuse(format!(
            "{} tokens (at most {MAX_VOCAB})",
            vocab.len()
        )));
    }
    let mut by_id: BTreeMap<usize, (String, i32)> = BTreeMap::new();
    for (token, id) in vocab {
        let id = token_id(id).ok_or_else(|| refuse(format!("token {token:?} has ID {id}")))?;
        by_id.insert(id, (token.clone(), NORMAL));
    }
    let mut added_ids: BTreeMap<String, usize> = BTreeMap::new();
    for entry in added_tokens(files.tokenizer)? {
        let kind = if entry.special || looks_special(&entry.content) {
            CONTROL
        } else {
            USER_DEFINED
        };
        by_id.insert(entry.id, (entry.content.clone(), kind));
        added_ids.insert(entry.content, entry.id);
    }
    let highest = by_id.keys().next_back().copied().unwrap_or(0);
    if highest >= vocab_size {
        return Err(refuse(format!(
            "token ID {highest} is past the model's vocab_size {vocab_size}"
        )));
    }
    let mut tokens = Vec::with_capacity(vocab_size);
    let mut types = Vec::with_capacity(vocab_size);
    for id in 0..vocab_size {
        match by_id.remove(&id) {
            Some((token, kind)) => {
                tokens.push(token);
                types.push(kind);
            }
            None => {
                tokens.push(format!("[PAD{id}]"));
                types.push(UNUSED);
            }
        }
    }
    let merges = merges(model).map_err(refuse)?;

    let metadata = vec![
        entry("tokenizer.ggml.model", MetaValue::Text("gpt2".into())),
        entry("tokenizer.ggml.pre", MetaValue::Text(pre.into())),
        entry("tokenizer.ggml.tokens", MetaValue::TextArray(tokens)),
        entry("tokenizer.ggml.token_type", MetaValue::I32Array(types)),
        entry("tokenizer.ggml.merges", MetaValue::TextArray(merges)),
        entry(
            "tokenizer.ggml.add_space_prefix",
            MetaValue::Bool(adds_prefix_space(pre_tokenizer)),
        ),
    ];
    Ok((metadata, added_ids))
}

fn token_id(value: &Value) -> Option<usize> {
    value
        .as_u64()
        .and_then(|id| usize::try_from(id).ok())
        .filter(|id| *id < MAX_VOCAB)
}

/// Added tokens llama.cpp's converter treats as control tokens though not marked special.
fn looks_special(token: &str) -> bool {
    matches!(token, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
        || (token.starts_with("<|") && token.ends_with("|>"))
        || (token.starts_with("<\u{ff5c}") && token.ends_with("\u{ff5c}>"))
}

/// `model.merges`: `"a b"` strings, or `["a", "b"]` pairs (newer tokenizers).
fn merges(model: &Value) -> Result<Vec<String>, String> {
    let Some(list) = model.get("merges").and_then(Value::as_array) else {
        return Err("model.merges is missing".into());
    };
    list.iter()
        .map(|m| match m {
            Value::String(s) => Ok(s.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Ok(format!("{a} {b}")),
                _ => Err(format!("merge {m} is not a pair of strings")),
            },
            _ => Err(format!("merge {m} is not a string or a pair")),
        })
        .collect()
}

fn entry(key: &str, value: MetaValue) -> (String, MetaValue) {
    (key.to_owned(), value)
}

/// Whether the byte-level pre-tokenizer puts a space before the first word
/// (`add_prefix_space`, false when not said).
fn adds_prefix_space(pre: &Value) -> bool {
    let parts = match pre.get("pretokenizers").and_then(Value::as_array) {
        Some(parts) => parts.iter().collect(),
        None => vec![pre],
    };
    parts.iter().any(|p| {
        p.get("type").and_then(Value::as_str) == Some("ByteLevel")
            && p.get("add_prefix_space").and_then(Value::as_bool) == Some(true)
    })
}

/// llama.cpp's pre-tokenizer for what `tokenizer.json` declares.
fn pre_tokenizer_name(pre: &Value) -> Result<&'static str, ConvertError> {
    let kind = |v: &Value| {
        v.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let byte_level = |v: &Value, regex: bool| {
        kind(v) == "ByteLevel"
            && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true) == regex
    };
    let parts: Vec<&Value> = match kind(pre).as_str() {
        "Sequence" => pre
            .get("pretokenizers")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        _ => vec![pre],
    };
    fn split_regex(v: &Value) -> Option<&str> {
        if v.get("type").and_then(Value::as_str) != Some("Split") {
            return None;
        }
        v.get("pattern")
            .and_then(|p| p.get("Regex"))
            .and_then(Value::as_str)
    }
    let name = match parts.as_slice() {
        [one] if byte_level(one, true) => Some("gpt-2"),
        [digits, bytes]
            if kind(digits) == "Digits"
                && digits.get("individual_digits").and_then(Value::as_bool) == Some(true)
                && byte_level(bytes, true) =>
        {
            Some("smollm")
        }
        [split, bytes] if byte_level(bytes, false) => match split_regex(split) {
            Some(LLAMA3_SPLIT) => Some("llama-bpe"),
            Some(QWEN2_SPLIT) => Some("qwen2"),
            _ => None,
        },
        _ => None,
    };
    name.ok_or_else(|| {
        ConvertError::Refused(format!(
            "tokenizer.json: its pre_tokenizer {pre} is not one llama.cpp's rules are known for here (GPT-2, SmolLM, Llama 3, Qwen2); import a GGUF file of this model"
        ))
    })
}

/// Special token IDs (`tokenizer.ggml.<kind>_token_id`) and whether BOS/EOS are added,
/// read as llama.cpp's converter reads them: the token named in `tokenizer_config.json`
/// among the added tokens, else `<kind>_token_id` of `config.json`.
fn special_tokens(
    files: &TokenizerFiles,
    added_ids: &BTreeMap<String, usize>,
    vocab_size: usize,
) -> Vec<(String, MetaValue)> {
    const KINDS: [(&str, &str); 7] = [
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("unk", "unknown_token_id"),
        ("sep", "seperator_token_id"),
        ("pad", "padding_token_id"),
        ("cls", "cls_token_id"),
        ("mask", "mask_token_id"),
    ];
    let mut out = Vec::new();
    for (kind, key) in KINDS {
        let named = files
            .tokenizer_config
            .get(format!("{kind}_token"))
            .and_then(|v| {
                v.as_str()
                    .or_else(|| v.get("content").and_then(Value::as_str))
            });
        let id = named
            .and_then(|t| added_ids.get(t).copied())
            .or_else(|| {
                files
                    .model_config
                    .get(format!("{kind}_token_id"))
                    .and_then(Value::as_u64)
                    .and_then(|id| usize::try_from(id).ok())
            })
            .filter(|id| *id < vocab_size);
        if let Some(id) = id {
            out.push((format!("tokenizer.ggml.{key}"), MetaValue::U32(id as u32)));
        }
    }
    let (template_bos, template_eos) = template_adds(files.tokenizer);
    for (kind, from_template) in [("bos", template_bos), ("eos", template_eos)] {
        let add = files
            .tokenizer_config
            .get(format!("add_{kind}_token"))
            .and_then(Value::as_bool)
            .or(from_template);
        if let Some(add) = add {
            out.push((
                format!("tokenizer.ggml.add_{kind}_token"),
                MetaValue::Bool(add),
            ));
        }
    }
    out
}

/// Whether `tokenizer.json`'s post-processor (a `TemplateProcessing`) puts a special
/// token before the text (BOS: said either way) and after it (EOS: said when it does),
/// for tokenizers whose `tokenizer_config.json` does not say.
fn template_adds(tokenizer: &Value) -> (Option<bool>, Option<bool>) {
    let Some(processor) = tokenizer
        .get("post_processor")
        .filter(|p| p.get("type").and_then(Value::as_str) == Some("TemplateProcessing"))
    else {
        return (None, None);
    };
    let Some(single) = processor.get("single").and_then(Value::as_array) else {
        return (None, None);
    };
    let special = |item: Option<&Value>| item.is_some_and(|i| i.get("SpecialToken").is_some());
    let eos = special(single.last()) && single.len() > 1;
    (Some(special(single.first())), eos.then_some(true))
}

/// The chat template: `chat_template.jinja`, else `tokenizer_config.json`'s
/// `chat_template` (a string, or a list of named templates of which `default` is used).
fn chat_template(files: &TokenizerFiles) -> Option<String> {
    if let Some(text) = &files.chat_template_file {
        return Some(text.clone());
    }
    match files.tokenizer_config.get("chat_template")? {
        Value::String(s) => Some(s.clone()),
        Value::Array(named) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn smollm_like() -> Value {
        json!({
            "added_tokens": [
                {"id": 0, "content": "<|endoftext|>", "special": true},
                {"id": 1, "content": "<|im_start|>", "special": true},
                {"id": 2, "content": "<|im_end|>", "special": true},
                {"id": 5, "content": "<extra>", "special": false},
            ],
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            ]},
            "model": {"type": "BPE", "byte_fallback": false,
                      "vocab": {"<|endoftext|>": 0, "<|im_start|>": 1, "<|im_end|>": 2, "a": 3, "b": 4},
                      "merges": ["a b", ["b", "a"]]},
        })
    }

    fn text(meta: &[(String, MetaValue)], key: &str) -> Option<MetaValue> {
        meta.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    #[test]
    fn a_byte_level_tokenizer_becomes_gguf_metadata() -> Result<(), ConvertError> {
        let tokenizer = smollm_like();
        let config = json!({"bos_token": "<|im_start|>", "eos_token": {"content": "<|im_end|>"},
                            "chat_template": "{{ messages }}"});
        let files = TokenizerFiles {
            tokenizer: &tokenizer,
            tokenizer_config: &config,
            model_config: &json!({"pad_token_id": 0}),
            chat_template_file: None,
            sentencepiece: None,
            added_tokens_file: &Value::Null,
        };
        let vocab = gguf_vocab(&files, 8)?;
        let meta = &vocab.metadata;
        assert_eq!(
            text(meta, "tokenizer.ggml.pre"),
            Some(MetaValue::Text("smollm".into()))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.add_space_prefix"),
            Some(MetaValue::Bool(false))
        );
        let Some(MetaValue::TextArray(tokens)) = text(meta, "tokenizer.ggml.tokens") else {
            panic!("no tokens");
        };
        assert_eq!(tokens.len(), 8);
        assert_eq!(tokens[3], "a");
        assert_eq!(tokens[6], "[PAD6]");
        assert_eq!(
            text(meta, "tokenizer.ggml.token_type"),
            Some(MetaValue::I32Array(vec![3, 3, 3, 1, 1, 4, 5, 5]))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.merges"),
            Some(MetaValue::TextArray(vec!["a b".into(), "b a".into()]))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.bos_token_id"),
            Some(MetaValue::U32(1))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.eos_token_id"),
            Some(MetaValue::U32(2))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.padding_token_id"),
            Some(MetaValue::U32(0))
        );
        assert!(vocab.chat_template);
        Ok(())
    }

    #[test]
    fn a_sentencepiece_model_becomes_llamas_tokenizer() -> Result<(), ConvertError> {
        use super::sentencepiece::tests::model_proto;
        let pieces = [
            ("<unk>", 0.0, 2),
            ("<s>", 0.0, 3),
            ("</s>", 0.0, 3),
            ("<0x0A>", 0.0, 6),
            ("\u{2581}the", -1.5, 1),
        ];
        let proto = model_proto(&pieces, 2, true);
        let config = json!({"bos_token": "<s>", "eos_token": "</s>", "add_bos_token": true,
            "added_tokens_decoder": {"5": {"content": "<tool>", "special": true},
                                     "6": {"content": "\u{2581}x", "special": false}}});
        let files = TokenizerFiles {
            tokenizer: &Value::Null,
            tokenizer_config: &config,
            model_config: &Value::Null,
            chat_template_file: Some("{{ x }}".into()),
            sentencepiece: Some(proto),
            added_tokens_file: &Value::Null,
        };
        let vocab = gguf_vocab(&files, 8)?;
        let meta = &vocab.metadata;
        assert_eq!(
            text(meta, "tokenizer.ggml.model"),
            Some(MetaValue::Text("llama".into()))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.tokens"),
            Some(MetaValue::TextArray(
                [
                    "<unk>",
                    "<s>",
                    "</s>",
                    "<0x0A>",
                    "\u{2581}the",
                    "<tool>",
                    " x",
                    "[PAD7]"
                ]
                .map(String::from)
                .to_vec()
            ))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.scores"),
            Some(MetaValue::F32Array(vec![
                0.0, 0.0, 0.0, 0.0, -1.5, -1000.0, -1000.0, -10000.0
            ]))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.token_type"),
            Some(MetaValue::I32Array(vec![2, 3, 3, 6, 1, 3, 4, 5]))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.bos_token_id"),
            Some(MetaValue::U32(1))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.eos_token_id"),
            Some(MetaValue::U32(2))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.add_bos_token"),
            Some(MetaValue::Bool(true))
        );
        assert_eq!(
            text(meta, "tokenizer.ggml.add_space_prefix"),
            Some(MetaValue::Bool(true))
        );
        assert!(
            text(meta, "tokenizer.ggml.merges").is_none(),
            "a SentencePiece vocabulary has merges"
        );

        let unigram = TokenizerFiles {
            sentencepiece: Some(model_proto(&pieces, 1, true)),
            ..files
        };
        let err = gguf_vocab(&unigram, 8)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("Unigram"), "{err}");
        Ok(())
    }

    #[test]
    fn a_post_processor_template_says_whether_bos_is_added() {
        let with = |single: Value| json!({"post_processor": {"type": "TemplateProcessing", "single": single}});
        let text = json!({"Sequence": {"id": "A", "type_id": 0}});
        let bos = json!({"SpecialToken": {"id": "<s>", "type_id": 0}});
        assert_eq!(template_adds(&with(json!([text]))), (Some(false), None));
        assert_eq!(template_adds(&with(json!([bos, text]))), (Some(true), None));
        assert_eq!(
            template_adds(&with(json!([bos, text, bos]))),
            (Some(true), Some(true))
        );
        assert_eq!(
            template_adds(&json!({"post_processor": {"type": "ByteLevel"}})),
            (None, None)
        );
    }

    #[test]
    fn pre_tokenizers_are_named_or_refused() {
        let split = |regex: &str| {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
                {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
            ]})
        };
        assert_eq!(
            pre_tokenizer_name(&split(LLAMA3_SPLIT)).ok(),
            Some("llama-bpe")
        );
        assert_eq!(pre_tokenizer_name(&split(QWEN2_SPLIT)).ok(), Some("qwen2"));
        assert_eq!(
            pre_tokenizer_name(&json!({"type": "ByteLevel", "use_regex": true})).ok(),
            Some("gpt-2")
        );
        let other = pre_tokenizer_name(&split(r"\p{L}+")).expect_err("unknown regex");
        assert!(other.to_string().contains("not one llama.cpp"), "{other}");
        assert!(pre_tokenizer_name(&Value::Null).is_err());
    }

    #[test]
    fn tokenizers_that_cannot_be_converted_are_refused_with_the_reason() {
        let mut spm = smollm_like();
        spm["model"]["byte_fallback"] = json!(true);
        let mut unigram = smollm_like();
        unigram["model"]["type"] = json!("Unigram");
        let mut past = smollm_like();
        past["model"]["vocab"]["c"] = json!(40);
        for (tokenizer, expect) in [
            (spm, "lacks"),
            (unigram, "only byte-level BPE"),
            (past, "past the model's vocab_size"),
        ] {
            let files = TokenizerFiles {
                tokenizer: &tokenizer,
                tokenizer_config: &Value::Null,
                model_config: &Value::Null,
                chat_template_file: None,
                sentencepiece: None,
                added_tokens_file: &Value::Null,
            };
            let err = gguf_vocab(&files, 8)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(expect), "expected {expect:?}, got {err:?}");
        }
    }
}
