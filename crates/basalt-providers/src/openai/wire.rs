//! The parts of an OpenAI `chat.completion` and `chat.completion.chunk` that the
//! translation reads, deserialised straight from the upstream's bytes.
//!
//! Text is borrowed from the body wherever no JSON escape stands in the way, and the
//! fields Basalt does not read are skipped without being built (a `serde_json::Value`
//! tree of the whole answer was ~6 % of a proxied request's CPU). The servers that speak
//! this format differ in what they put where, so each field is lenient: a field of an
//! unexpected type (content given as an array of parts, a count given as a float) reads
//! as absent, as it did when the answer was walked as a `Value`; only a body that is
//! not a JSON object with (if any) an array of choices fails.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// A `chat.completion.chunk`, or a whole `chat.completion` (its choices carry `message`
/// instead of `delta`).
#[derive(Debug, Deserialize)]
pub(super) struct Chunk<'a> {
    /// An error reported in place of an answer (some servers send one mid-stream).
    #[serde(default)]
    pub error: Option<serde_json::Value>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default, borrow)]
    pub choices: Option<Vec<Choice<'a>>>,
}

impl<'a> Chunk<'a> {
    /// Reads a chunk or completion from `body`. A derived struct would also accept a
    /// JSON array (its fields by position); an answer that is not an object fails here.
    pub fn parse(body: &'a [u8]) -> Result<Self, serde_json::Error> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Err(serde::de::Error::custom("expected a JSON object"));
        }
        serde_json::from_slice(body)
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct Choice<'a> {
    /// A streamed chunk's increment.
    #[serde(default, borrow)]
    pub delta: Option<Delta<'a>>,
    /// A whole completion's message.
    #[serde(default, borrow)]
    pub message: Option<Delta<'a>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub finish_reason: Option<Cow<'a, str>>,
}

/// A message, or the increment of one.
#[derive(Debug, Default, Deserialize)]
pub(super) struct Delta<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub tool_calls: Option<Vec<CallFragment<'a>>>,
}

/// A tool call, or a fragment of one (streamed calls arrive in pieces per `index`).
#[derive(Debug, Deserialize)]
pub(super) struct CallFragment<'a> {
    #[serde(default, deserialize_with = "count")]
    pub index: Option<u64>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub function: Option<FunctionFragment<'a>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct FunctionFragment<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub arguments: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Usage {
    #[serde(default, deserialize_with = "count")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    pub completion_tokens: Option<u64>,
    #[serde(default)]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PromptTokensDetails {
    #[serde(default, deserialize_with = "count")]
    pub cached_tokens: Option<u64>,
}

/// A string, borrowed where it can be; any other JSON value reads as absent.
fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    d.deserialize_any(Lenient(|found| match found {
        Found::Borrowed(s) => Some(Cow::Borrowed(s)),
        Found::Owned(s) => Some(Cow::Owned(s)),
        Found::Number(_) | Found::Other => None,
    }))
}

/// A non-negative integer (or a float with no fraction); any other value reads as absent.
fn count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    d.deserialize_any(Lenient(|found| match found {
        Found::Number(n) => Some(n),
        _ => None,
    }))
}

/// What a lenient field found.
enum Found<'de> {
    Borrowed(&'de str),
    Owned(String),
    Number(u64),
    Other,
}

/// Reads any JSON value, skipping the insides of arrays and objects, and hands what it
/// found to the closure.
struct Lenient<F>(F);

impl<'de, T, F: FnOnce(Found<'de>) -> Option<T>> Visitor<'de> for Lenient<F> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok((self.0)(Found::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok((self.0)(Found::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok((self.0)(Found::Owned(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok((self.0)(Found::Number(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok((self.0)(match u64::try_from(v) {
            Ok(n) => Found::Number(n),
            Err(_) => Found::Other,
        }))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        let whole = v >= 0.0 && v.fract() == 0.0 && v <= u64::MAX as f64;
        Ok((self.0)(if whole {
            Found::Number(v as u64)
        } else {
            Found::Other
        }))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok((self.0)(Found::Other))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok((self.0)(Found::Other))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok((self.0)(Found::Other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_borrowed_unless_escaped() {
        let body = r#"{"choices":[{"delta":{"content":"plain"}},{"delta":{"content":"a\nb"}}]}"#;
        let chunk: Chunk = serde_json::from_str(body).expect("a chunk");
        let choices = chunk.choices.expect("choices");
        let first = choices[0].delta.as_ref().and_then(|d| d.content.as_ref());
        assert!(matches!(first, Some(Cow::Borrowed("plain"))), "{first:?}");
        let second = choices[1].delta.as_ref().and_then(|d| d.content.as_deref());
        assert_eq!(second, Some("a\nb"));
    }

    #[test]
    fn fields_of_an_unexpected_type_read_as_absent() {
        let body = r#"{"usage":{"prompt_tokens":5.0,"completion_tokens":-1,"prompt_tokens_details":null},
            "choices":[{"message":{"content":[{"type":"text","text":"x"}],"tool_calls":null},
            "finish_reason":7,"logprobs":{"content":[1,2]}}],"error":null,"extra":[{}]}"#;
        let chunk: Chunk = serde_json::from_str(body).expect("a chunk");
        assert!(chunk.error.is_none());
        let usage = chunk.usage.expect("usage");
        assert_eq!(usage.prompt_tokens, Some(5));
        assert_eq!(usage.completion_tokens, None);
        let choice = &chunk.choices.expect("choices")[0];
        let message = choice.message.as_ref().expect("message");
        assert!(message.content.is_none());
        assert!(message.tool_calls.is_none());
        assert!(choice.finish_reason.is_none());
    }

    #[test]
    fn a_body_that_is_not_an_object_fails() {
        assert!(Chunk::parse(b"[1]").is_err());
        assert!(Chunk::parse(b" \"text\"").is_err());
        assert!(Chunk::parse(br#"{"choices":{"0":{}}}"#).is_err());
        assert!(Chunk::parse(b"{\"choices\":[").is_err());
        assert!(Chunk::parse(b" {}").is_ok());
    }
}
