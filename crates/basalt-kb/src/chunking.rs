//! Chunking strategies, as Bedrock names them. Token counts come from the embedding
//! model's own tokenizer, as byte spans of each token in the text ([`TokenSpans`]), so
//! a chunk of `maxTokens` tokens is exactly that many tokens to the model that embeds
//! it (its special tokens aside).
//!
//! - `FIXED_SIZE`: windows of `maxTokens` tokens, consecutive windows sharing
//!   `overlapPercentage` % of them.
//! - `HIERARCHICAL`: parent windows (first level) split into child windows (second
//!   level), both overlapping by `overlapTokens`; children are embedded and searched,
//!   the parent is what retrieval returns.
//! - `SEMANTIC`: sentences, grouped where the embedding distance between neighbouring
//!   sentences (each with `bufferSize` sentences either side) stays under the
//!   `breakpointPercentileThreshold` percentile of all such distances; a group longer
//!   than `maxTokens` is split into fixed windows. The embedding is the caller's (it
//!   is async and metered): [`semantic_windows`] gives the texts to embed,
//!   [`semantic_chunks`] takes their vectors.
//! - `NONE`: the whole document is one chunk.

use crate::KbError;

/// Byte spans (start, end) of each token of a text, in order, without special tokens.
pub type TokenSpans = Vec<(usize, usize)>;

/// How a data source cuts its documents (serde: the form a store keeps).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum Chunking {
    FixedSize {
        max_tokens: usize,
        overlap_percentage: usize,
    },
    Hierarchical {
        parent_max_tokens: usize,
        child_max_tokens: usize,
        overlap_tokens: usize,
    },
    Semantic {
        max_tokens: usize,
        buffer_size: usize,
        breakpoint_percentile: usize,
    },
    None,
}

impl Default for Chunking {
    /// Bedrock's default: 300-token windows overlapping by 20 %.
    fn default() -> Self {
        Self::FixedSize {
            max_tokens: 300,
            overlap_percentage: 20,
        }
    }
}

/// One piece of a document: `text` is embedded and searched; `context` (a
/// hierarchical chunk's parent) is what retrieval returns instead when present.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub text: String,
    pub context: Option<String>,
}

impl Chunking {
    /// Checks the bounds Bedrock's model sets.
    pub fn validate(&self) -> Result<(), KbError> {
        let bad = |m: String| Err(KbError::InvalidConfiguration(m));
        match *self {
            Self::FixedSize {
                max_tokens,
                overlap_percentage,
            } => {
                if !(1..=8192).contains(&max_tokens) {
                    return bad(format!("fixedSizeChunkingConfiguration.maxTokens must be 1..8192, got {max_tokens}"));
                }
                if !(1..=99).contains(&overlap_percentage) {
                    return bad(format!("fixedSizeChunkingConfiguration.overlapPercentage must be 1..99, got {overlap_percentage}"));
                }
            }
            Self::Hierarchical {
                parent_max_tokens,
                child_max_tokens,
                overlap_tokens,
            } => {
                if child_max_tokens == 0 || parent_max_tokens == 0 {
                    return bad("hierarchicalChunkingConfiguration.levelConfigurations maxTokens must be at least 1".into());
                }
                if child_max_tokens > parent_max_tokens {
                    return bad(format!("hierarchicalChunkingConfiguration: the child level ({child_max_tokens} tokens) must not be larger than the parent level ({parent_max_tokens})"));
                }
                if overlap_tokens >= child_max_tokens {
                    return bad(format!("hierarchicalChunkingConfiguration.overlapTokens ({overlap_tokens}) must be smaller than the child level's maxTokens ({child_max_tokens})"));
                }
            }
            Self::Semantic {
                max_tokens,
                buffer_size,
                breakpoint_percentile,
            } => {
                if max_tokens == 0 {
                    return bad("semanticChunkingConfiguration.maxTokens must be at least 1".into());
                }
                if buffer_size > 1 {
                    return bad(format!("semanticChunkingConfiguration.bufferSize must be 0 or 1, got {buffer_size}"));
                }
                if !(50..=99).contains(&breakpoint_percentile) {
                    return bad(format!("semanticChunkingConfiguration.breakpointPercentileThreshold must be 50..99, got {breakpoint_percentile}"));
                }
            }
            Self::None => {}
        }
        Ok(())
    }

    /// Cuts a document that needs no embedding to be cut (every strategy but `SEMANTIC`,
    /// which goes through [`semantic_windows`] and [`semantic_chunks`]).
    pub fn chunk(&self, text: &str, spans: &[(usize, usize)]) -> Vec<Chunk> {
        match *self {
            Self::FixedSize {
                max_tokens,
                overlap_percentage,
            } => {
                let overlap = max_tokens * overlap_percentage / 100;
                windows(text, spans, max_tokens, overlap)
                    .into_iter()
                    .map(|text| Chunk {
                        text,
                        context: None,
                    })
                    .collect()
            }
            Self::Hierarchical {
                parent_max_tokens,
                child_max_tokens,
                overlap_tokens,
            } => {
                let mut chunks = Vec::new();
                for (start, end) in window_ranges(spans.len(), parent_max_tokens, overlap_tokens) {
                    let parent = slice(text, spans, start, end);
                    let child_spans = &spans[start..end];
                    for (cs, ce) in
                        window_ranges(child_spans.len(), child_max_tokens, overlap_tokens)
                    {
                        chunks.push(Chunk {
                            text: slice(text, child_spans, cs, ce),
                            context: Some(parent.clone()),
                        });
                    }
                }
                chunks
            }
            Self::Semantic { max_tokens, .. } => windows(text, spans, max_tokens, 0)
                .into_iter()
                .map(|text| Chunk {
                    text,
                    context: None,
                })
                .collect(),
            Self::None => {
                let trimmed = text.trim();
                if trimmed.is_empty() {
                    Vec::new()
                } else {
                    vec![Chunk {
                        text: trimmed.to_owned(),
                        context: None,
                    }]
                }
            }
        }
    }
}

/// Token windows of at most `size` tokens, each starting `size - overlap` after the last.
fn window_ranges(len: usize, size: usize, overlap: usize) -> Vec<(usize, usize)> {
    let size = size.max(1);
    let step = size.saturating_sub(overlap).max(1);
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < len {
        let end = (start + size).min(len);
        ranges.push((start, end));
        if end == len {
            break;
        }
        start += step;
    }
    ranges
}

fn slice(text: &str, spans: &[(usize, usize)], start: usize, end: usize) -> String {
    let from = spans[start].0;
    let to = spans[end - 1].1;
    text.get(from..to).unwrap_or_default().trim().to_owned()
}

fn windows(text: &str, spans: &[(usize, usize)], size: usize, overlap: usize) -> Vec<String> {
    window_ranges(spans.len(), size, overlap)
        .into_iter()
        .map(|(s, e)| slice(text, spans, s, e))
        .filter(|t| !t.is_empty())
        .collect()
}

/// Byte spans of whitespace-separated words (the token spans used when the
/// embedding model's tokenizer is not at hand, e.g. a remote model).
pub fn word_spans(text: &str) -> TokenSpans {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                spans.push((s, i));
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, text.len()));
    }
    spans
}

/// Sentence spans: ends at `.`, `!` or `?` followed by whitespace, and at blank lines.
pub fn sentences(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        let boundary = (matches!(b, b'.' | b'!' | b'?')
            && next.is_none_or(|n| n.is_ascii_whitespace()))
            || (b == b'\n' && next == Some(b'\n'));
        if boundary {
            push_trimmed(text, start, i + 1, &mut out);
            start = i + 1;
        }
        i += 1;
    }
    push_trimmed(text, start, text.len(), &mut out);
    out
}

fn push_trimmed(text: &str, start: usize, end: usize, out: &mut Vec<(usize, usize)>) {
    let Some(piece) = text.get(start..end) else {
        return;
    };
    let lead = piece.len() - piece.trim_start().len();
    let trimmed = piece.trim();
    if !trimmed.is_empty() {
        out.push((start + lead, start + lead + trimmed.len()));
    }
}

/// The texts whose embeddings [`semantic_chunks`] compares: each sentence with
/// `buffer_size` sentences either side.
pub fn semantic_windows(
    text: &str,
    sentences: &[(usize, usize)],
    buffer_size: usize,
) -> Vec<String> {
    (0..sentences.len())
        .map(|i| {
            let first = i.saturating_sub(buffer_size);
            let last = (i + buffer_size).min(sentences.len() - 1);
            text.get(sentences[first].0..sentences[last].1)
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

/// Groups sentences at the breakpoints (distance above the percentile) and splits a
/// group longer than `max_tokens` into fixed windows. `vectors` are the normalised
/// embeddings of [`semantic_windows`]; `spans` the token spans of the whole text.
pub fn semantic_chunks(
    text: &str,
    sentences: &[(usize, usize)],
    vectors: &[Vec<f32>],
    spans: &[(usize, usize)],
    max_tokens: usize,
    breakpoint_percentile: usize,
) -> Vec<Chunk> {
    if sentences.is_empty() {
        return Vec::new();
    }
    let distances: Vec<f32> = vectors
        .windows(2)
        .map(|pair| {
            1.0 - pair[0]
                .iter()
                .zip(&pair[1])
                .map(|(a, b)| a * b)
                .sum::<f32>()
        })
        .collect();
    let threshold = percentile(&distances, breakpoint_percentile);
    let mut groups = Vec::new();
    let mut group_start = sentences[0].0;
    for (i, d) in distances.iter().enumerate() {
        if *d > threshold {
            groups.push((group_start, sentences[i].1));
            group_start = sentences[i + 1].0;
        }
    }
    groups.push((group_start, sentences[sentences.len() - 1].1));
    let mut chunks = Vec::new();
    for (from, to) in groups {
        let inside: Vec<(usize, usize)> = spans
            .iter()
            .copied()
            .filter(|(s, e)| *s >= from && *e <= to)
            .collect();
        if inside.len() <= max_tokens {
            if let Some(t) = text.get(from..to).map(str::trim).filter(|t| !t.is_empty()) {
                chunks.push(Chunk {
                    text: t.to_owned(),
                    context: None,
                });
            }
        } else {
            for t in windows(text, &inside, max_tokens, 0) {
                chunks.push(Chunk {
                    text: t,
                    context: None,
                });
            }
        }
    }
    chunks
}

/// The `p`-th percentile, interpolated linearly between ranks (as numpy does);
/// +inf for no values, so no breakpoint.
fn percentile(values: &[f32], p: usize) -> f32 {
    if values.is_empty() {
        return f32::INFINITY;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f32::total_cmp);
    let position = p as f32 / 100.0 * (sorted.len() - 1) as f32;
    let low = position.floor() as usize;
    let high = position.ceil() as usize;
    sorted[low] + (sorted[high] - sorted[low]) * (position - low as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_size_windows_overlap_by_the_percentage() {
        let text = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9";
        let chunks = Chunking::FixedSize {
            max_tokens: 4,
            overlap_percentage: 50,
        }
        .chunk(text, &word_spans(text));
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            ["w0 w1 w2 w3", "w2 w3 w4 w5", "w4 w5 w6 w7", "w6 w7 w8 w9"]
        );
    }

    #[test]
    fn hierarchical_children_carry_their_parent() {
        let text = "a b c d e f g h";
        let chunks = Chunking::Hierarchical {
            parent_max_tokens: 4,
            child_max_tokens: 2,
            overlap_tokens: 0,
        }
        .chunk(text, &word_spans(text));
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].text, "a b");
        assert_eq!(chunks[1].text, "c d");
        assert_eq!(chunks[1].context.as_deref(), Some("a b c d"));
        assert_eq!(chunks[3].context.as_deref(), Some("e f g h"));
    }

    #[test]
    fn none_keeps_the_document_whole_and_empty_text_has_no_chunks() {
        let chunks = Chunking::None.chunk("  all of it  ", &[]);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "all of it");
        assert!(Chunking::default().chunk("   ", &[]).is_empty());
    }

    #[test]
    fn sentences_split_at_terminators_and_blank_lines() {
        let text = "One here. Two there!\n\nThree? 3.5 stays";
        let got: Vec<&str> = sentences(text).iter().map(|(s, e)| &text[*s..*e]).collect();
        assert_eq!(got, ["One here.", "Two there!", "Three?", "3.5 stays"]);
    }

    #[test]
    fn semantic_breaks_where_the_topic_changes() {
        let text = "Cats purr. Cats nap. Rockets launch. Rockets orbit.";
        let s = sentences(text);
        assert_eq!(semantic_windows(text, &s, 0).len(), 4);
        // Two topics: the distance between sentence 1 and 2 is the large one.
        let cat = vec![1.0, 0.0];
        let rocket = vec![0.0, 1.0];
        let vectors = vec![cat.clone(), cat, rocket.clone(), rocket];
        let chunks = semantic_chunks(text, &s, &vectors, &word_spans(text), 100, 90);
        let texts: Vec<&str> = chunks.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(
            texts,
            ["Cats purr. Cats nap.", "Rockets launch. Rockets orbit."]
        );
        // A group longer than maxTokens is cut into windows.
        let chunks = semantic_chunks(text, &s, &vectors, &word_spans(text), 3, 90);
        assert_eq!(chunks[0].text, "Cats purr. Cats");
    }

    #[test]
    fn bounds_are_checked() {
        assert!(Chunking::FixedSize {
            max_tokens: 0,
            overlap_percentage: 10
        }
        .validate()
        .is_err());
        assert!(Chunking::FixedSize {
            max_tokens: 10,
            overlap_percentage: 100
        }
        .validate()
        .is_err());
        assert!(Chunking::Hierarchical {
            parent_max_tokens: 10,
            child_max_tokens: 20,
            overlap_tokens: 1
        }
        .validate()
        .is_err());
        assert!(Chunking::Semantic {
            max_tokens: 10,
            buffer_size: 2,
            breakpoint_percentile: 90
        }
        .validate()
        .is_err());
        assert!(Chunking::Semantic {
            max_tokens: 10,
            buffer_size: 1,
            breakpoint_percentile: 95
        }
        .validate()
        .is_ok());
    }
}
