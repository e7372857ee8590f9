//! Word filters: custom words and phrases plus the managed profanity list, matched
//! case-insensitively on whole words with one Aho–Corasick automaton per list, so
//! thousands of entries cost one pass over the text.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// The managed `PROFANITY` list (see `data/SOURCES.md`).
pub fn profanity_list() -> impl Iterator<Item = &'static str> {
    include_str!("../data/profanity.txt")
        .lines()
        .map(str::trim)
        .filter(|w| !w.is_empty())
}

/// A compiled word list. Entries are matched on ASCII case-insensitively; each entry
/// keeps its index so the caller can find the rule it came from.
#[derive(Debug, Clone)]
pub struct WordMatcher {
    automaton: Option<AhoCorasick>,
}

/// A whole-word hit: the entry's index and the byte range in the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordHit {
    pub entry: usize,
    pub start: usize,
    pub end: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

impl WordMatcher {
    /// Builds the automaton. Whitespace inside phrases is normalised to one space on
    /// both sides, so "credit  card" matches "credit card".
    pub fn new<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let patterns: Vec<String> = entries.into_iter().map(normalise).collect();
        if patterns.is_empty() {
            return Ok(Self { automaton: None });
        }
        let automaton = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&patterns)
            .map_err(|e| e.to_string())?;
        Ok(Self {
            automaton: Some(automaton),
        })
    }

    /// Whole-word hits, the longest at each position, without overlaps, in order.
    pub fn find(&self, text: &str) -> Vec<WordHit> {
        let Some(automaton) = &self.automaton else {
            return Vec::new();
        };
        let (normalised, offsets) = normalise_with_offsets(text);
        let mut hits: Vec<WordHit> = automaton
            .find_overlapping_iter(&normalised)
            .filter(|m| {
                let before = normalised[..m.start()].chars().next_back();
                let after = normalised[m.end()..].chars().next();
                !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char)
            })
            .map(|m| WordHit {
                entry: m.pattern().as_usize(),
                start: offsets[m.start()],
                end: offsets[m.end()],
            })
            .collect();
        hits.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
        let mut kept: Vec<WordHit> = Vec::new();
        for hit in hits {
            if kept.last().is_none_or(|k| hit.start >= k.end) {
                kept.push(hit);
            }
        }
        kept
    }
}

fn normalise(entry: &str) -> String {
    entry.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text with whitespace runs collapsed to one space, and for each byte of the
/// result (plus one past the end) the byte offset in the original.
fn normalise_with_offsets(text: &str) -> (String, Vec<usize>) {
    let mut out = String::with_capacity(text.len());
    let mut offsets = Vec::with_capacity(text.len() + 1);
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if in_space {
                continue;
            }
            in_space = true;
            out.push(' ');
            offsets.push(i);
        } else {
            in_space = false;
            out.push(c);
            offsets.extend(std::iter::repeat_n(i, c.len_utf8()));
        }
    }
    offsets.push(text.len());
    (out, offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_words_case_insensitively() {
        let m = WordMatcher::new(["darn", "credit card"]).expect("builds");
        let text = "Darn it, my CREDIT   card and darnation";
        let hits = m.find(text);
        let words: Vec<&str> = hits.iter().map(|h| &text[h.start..h.end]).collect();
        assert_eq!(words, vec!["Darn", "CREDIT   card"]);
        assert_eq!(hits[1].entry, 1);
    }

    #[test]
    fn a_longer_entry_wins_over_its_prefix() {
        let m = WordMatcher::new(["bad", "bad word"]).expect("builds");
        let hits = m.find("a bad word here");
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].entry, 1);
    }

    #[test]
    fn works_beside_non_ascii_text() {
        let m = WordMatcher::new(["darn"]).expect("builds");
        let text = "héllo darn ünïcode";
        let hits = m.find(text);
        assert_eq!(&text[hits[0].start..hits[0].end], "darn");
    }

    #[test]
    fn the_managed_list_has_its_entries() {
        assert!(profanity_list().count() > 800);
    }
}
