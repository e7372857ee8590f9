//! Person names: a given name from the US Census list followed by a surname from the
//! Census list (or an initial and a capitalised word), or capitalised words after a
//! context phrase ("my name is", "Dear", a title such as "Dr.").

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

static GIVEN: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../../data/first_names.txt").lines().collect());
static SURNAMES: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("../../data/last_names.txt").lines().collect());

/// Capitalised words (with inner apostrophes and hyphens) and initials.
static WORD: LazyLock<Regex> =
    LazyLock::new(|| super::rx(r"\b(?:[A-Z][a-z]+(?:['\-][A-Z]?[a-z]+)*|[A-Z]\.)"));

/// Phrases after which capitalised words are a name. `soft` phrases ("I am") also
/// need the first word to be a known given name or surname.
static CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    super::rx(
        r"(?:\b(?i:my name is|my name's|name\s*:|call me|signed|sincerely|regards|dear)|\b(?:Mr|Mrs|Ms|Miss|Dr|Prof|Sir|Madam|Mx)\b\.?)\s*,?\s*$|(?P<soft>\b(?i:i am|i'm|this is|from|with|by|to|and|patient|customer|client|user)\s+$)",
    )
});

struct Word {
    start: usize,
    end: usize,
}

fn is_initial(w: &str) -> bool {
    w.len() == 2 && w.ends_with('.')
}

/// Name spans as (start, end, strong): strong when a context phrase introduced them.
pub fn find(text: &str) -> Vec<(usize, usize, bool)> {
    let words: Vec<Word> = WORD
        .find_iter(text)
        .map(|m| Word {
            start: m.start(),
            end: m.end(),
        })
        .collect();
    let word = |w: &Word| &text[w.start..w.end];
    // Words are adjacent when only spaces separate them.
    let adjacent = |a: &Word, b: &Word| text[a.end..b.start].chars().all(|c| c == ' ');
    let mut found = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let first = &words[i];
        let before = &text[..first.start];
        let context = CONTEXT.captures(before);
        let mut j = i + 1;
        while j < words.len() && j - i < 4 && adjacent(&words[j - 1], &words[j]) {
            j += 1;
        }
        let run = &words[i..j];
        let first_word = word(first);
        if let Some(caps) = context {
            let soft = caps.name("soft").is_some();
            if !is_initial(first_word) && (!soft || (GIVEN.contains(first_word) && run.len() > 1)) {
                let last = &run[run.len() - 1];
                found.push((first.start, last.end, true));
                i = j;
                continue;
            }
        }
        if GIVEN.contains(first_word) && run.len() > 1 {
            // Given name, optional middle name or initial, then a surname.
            let mut end = None;
            for (k, w) in run.iter().enumerate().skip(1) {
                let t = word(w);
                if is_initial(t) || (k + 1 < run.len() && GIVEN.contains(t)) {
                    continue;
                }
                if SURNAMES.contains(t) {
                    end = Some(k);
                }
                break;
            }
            if let Some(k) = end {
                found.push((first.start, run[k].end, false));
                i += k + 1;
                continue;
            }
        }
        i += 1;
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(text: &str) -> Vec<&str> {
        find(text)
            .into_iter()
            .map(|(s, e, _)| &text[s..e])
            .collect()
    }

    #[test]
    fn given_name_and_surname() {
        assert_eq!(names("Ask Robert Johnson about it"), vec!["Robert Johnson"]);
        assert_eq!(names("Sent by Mary J. Williams."), vec!["Mary J. Williams"]);
    }

    #[test]
    fn context_introduces_unlisted_names() {
        assert_eq!(names("Dear Xiomara,"), vec!["Xiomara"]);
        assert_eq!(names("Dr. Okonkwo will see you"), vec!["Okonkwo"]);
        assert_eq!(
            names("my name is Zbigniew Brzezinski"),
            vec!["Zbigniew Brzezinski"]
        );
    }

    #[test]
    fn ordinary_capitalised_words_are_not_names() {
        assert!(names("The Grand Canyon and New York City").is_empty());
        assert!(names("I am Happy to help").is_empty());
    }
}
