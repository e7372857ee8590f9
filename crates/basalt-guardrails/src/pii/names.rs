//! Person names, from capitalisation, name lists and context:
//! - capitalised words after a context phrase ("my name is", "Dear", a title such as
//!   "Dr.");
//! - a known given name followed by capitalised words (an initial, a middle name, a
//!   surname);
//! - a known given name alone, capitalised, when it does not open a sentence.
//!
//! Given names and surnames come from the US Census lists and Faker's lists for
//! every Latin-script locale (see `data/SOURCES.md`). Capitalised words that are
//! more often something else (months, titles, "Will", "Grant") never start a name
//! on their own.

use std::collections::HashSet;
use std::sync::LazyLock;

use regex::Regex;

static GIVEN: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/first_names.txt")
        .lines()
        .chain(include_str!("../../data/faker_first_names.txt").lines())
        .filter(|n| !NOT_NAMES.contains(n))
        .collect()
});
static SURNAMES: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/last_names.txt")
        .lines()
        .chain(include_str!("../../data/faker_last_names.txt").lines())
        .collect()
});

/// Capitalised words that appear in the name lists but are usually not names.
const NOT_NAMES: &[&str] = &[
    "A",
    "I",
    "In",
    "On",
    "At",
    "An",
    "As",
    "Is",
    "It",
    "Or",
    "So",
    "To",
    "Up",
    "No",
    "Ok",
    "De",
    "La",
    "Le",
    "El",
    "Al",
    "Di",
    "Da",
    "Do",
    "Du",
    "Van",
    "Von",
    "Der",
    "Den",
    "Del",
    "Des",
    "The",
    "And",
    "But",
    "For",
    "Not",
    "All",
    "Any",
    "Can",
    "May",
    "Will",
    "Would",
    "Should",
    "Might",
    "Must",
    "Shall",
    "Could",
    "Did",
    "Does",
    "Has",
    "Had",
    "Have",
    "Was",
    "Were",
    "Are",
    "Be",
    "Been",
    "This",
    "That",
    "These",
    "Those",
    "Then",
    "Than",
    "There",
    "Here",
    "When",
    "Where",
    "Who",
    "Why",
    "How",
    "What",
    "Which",
    "While",
    "With",
    "From",
    "Into",
    "Over",
    "Under",
    "After",
    "Before",
    "About",
    "Above",
    "Below",
    "Just",
    "Only",
    "Also",
    "Even",
    "Still",
    "Very",
    "Much",
    "More",
    "Most",
    "Some",
    "Such",
    "Each",
    "Every",
    "Both",
    "Either",
    "Neither",
    "Other",
    "Another",
    "Same",
    "New",
    "Old",
    "Young",
    "Little",
    "Big",
    "Long",
    "Short",
    "Good",
    "Best",
    "Better",
    "Great",
    "Grand",
    "High",
    "Low",
    "First",
    "Last",
    "Next",
    "January",
    "February",
    "March",
    "April",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
    "Spring",
    "Summer",
    "Autumn",
    "Winter",
    "Christmas",
    "Easter",
    "Princess",
    "Prince",
    "King",
    "Queen",
    "Royal",
    "Lord",
    "Lady",
    "Sir",
    "Dame",
    "Duke",
    "Earl",
    "Baron",
    "Major",
    "General",
    "Captain",
    "Colonel",
    "Judge",
    "Bishop",
    "Pope",
    "Saint",
    "Doctor",
    "Professor",
    "President",
    "Senator",
    "Mayor",
    "Chief",
    "Mr",
    "Mrs",
    "Ms",
    "Miss",
    "Dr",
    "Mister",
    "Madam",
    "Please",
    "Thanks",
    "Thank",
    "Hello",
    "Hi",
    "Hey",
    "Dear",
    "Yes",
    "Yeah",
    "Grant",
    "Mark",
    "Bill",
    "Rose",
    "Hope",
    "Joy",
    "Faith",
    "Grace",
    "Art",
    "Guy",
    "Page",
    "Sky",
    "Dawn",
    "Eve",
    "Holly",
    "Ivy",
    "Lily",
    "Iris",
    "Pearl",
    "Ruby",
    "Amber",
    "Crystal",
    "Brook",
    "Chase",
    "Chance",
    "Hunter",
    "Miles",
    "Rich",
    "Sunny",
    "Price",
    "Rice",
    "White",
    "Black",
    "Brown",
    "Green",
    "Gray",
    "Grey",
    "Frank",
    "Ray",
    "Don",
    "Max",
    "Sterling",
    "Golden",
    "Angel",
    "Star",
    "Destiny",
    "Harmony",
    "Melody",
    "Precious",
    "Rain",
    "Sandy",
    "Cliff",
    "Dale",
    "Glen",
    "Forest",
    "River",
    "Cash",
    "Penny",
    "Candy",
    "Ginger",
    "Honey",
    "Cherry",
    "Olive",
    "Basil",
    "Sage",
    "Jade",
    "Robin",
    "Jay",
    "Wren",
    "Drew",
    "Lane",
    "Park",
    "Street",
    "Road",
    "Avenue",
    "North",
    "South",
    "East",
    "West",
    "Central",
    "City",
    "County",
    "State",
    "Street",
    "Bank",
    "Church",
    "Hall",
    "House",
    "Home",
    "Office",
    "Service",
    "Services",
    "Company",
    "Group",
    "Inc",
    "Ltd",
    "Corp",
    "University",
    "College",
    "School",
    "Hospital",
    "Mobile",
    "Desk",
    "Fax",
    "Phone",
    "Email",
    "Mail",
    "Tel",
    "Address",
    "Name",
    "Account",
    "Card",
    "Number",
    "Date",
    "Time",
    "Day",
    "Week",
    "Month",
    "Year",
    "Today",
    "Tomorrow",
    "Yesterday",
    "God",
    "Lord",
    "Jesus",
    "Christ",
    "America",
    "American",
    "English",
    "French",
    "German",
    "Spanish",
    "Italian",
    "Chinese",
    "Japanese",
    "Indian",
    "European",
    "African",
    "Asian",
    "Canadian",
    "British",
    "Irish",
    "Scottish",
    "Welsh",
    "Australian",
    "Mexican",
    "Brazilian",
    "Russian",
    "Many",
    "Few",
    "One",
    "Two",
    "Three",
    "Four",
    "Five",
    "Six",
    "Seven",
    "Eight",
    "Nine",
    "Ten",
    "Love",
    "Happy",
    "Merry",
    "Sorry",
    "Welcome",
    "Congrats",
    "Me",
    "My",
    "Mine",
    "You",
    "Your",
    "We",
    "Our",
    "Us",
    "He",
    "She",
    "His",
    "Her",
    "Him",
    "They",
    "Their",
    "Them",
    "Its",
    "Baby",
    "Back",
    "Killed",
    "Big",
    "Song",
    "Album",
    "Film",
    "Carry",
    "Keep",
    "Take",
    "Make",
    "Let",
    "Get",
    "Go",
    "Come",
    "See",
    "Look",
    "Call",
    "Help",
    "Stay",
    "Stop",
    "Start",
    "Run",
    "Walk",
    "Read",
    "Tell",
    "Ask",
    "Give",
    "Bring",
    "Send",
];

/// Capitalised words (with inner apostrophes and hyphens, any Latin letters) and
/// initials.
static WORD: LazyLock<Regex> = LazyLock::new(|| {
    super::rx(r"\b(?:\p{Lu}[\p{Ll}\p{M}]+(?:['\-]\p{Lu}?[\p{Ll}\p{M}]+)*|\p{Lu}\.|\p{Lu}\b)")
});

/// Phrases after which capitalised words are a name.
static CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    super::rx(
        r"(?:\b(?i:my name is|my name's|name\s*:|call me|signed|sincerely|regards|dear|attn\.?|attention|contact person\s*:?|hi|hello|hey|thanks|thank you|said|asked|told)|\b(?:Mr|Mrs|Ms|Miss|Dr|Prof|Sir|Madam|Mx)\b\.?)\s*,?\s*$",
    )
});

struct Word {
    start: usize,
    end: usize,
}

fn is_initial(w: &str) -> bool {
    (w.ends_with('.') && w.chars().count() == 2) || w.chars().count() == 1
}

/// Words that, after a sentence-opening given name, show it is a person.
const PERSON_VERBS: &[&str] = &[
    "is", "was", "has", "had", "said", "says", "will", "would", "can", "could", "and", "wrote",
    "told", "asked", "lives", "lived", "works", "worked", "went", "called", "thinks", "loves",
];

/// Whether the word at `start` opens a sentence (start of text, or after a sentence
/// end or a line break).
fn opens_sentence(text: &str, start: usize) -> bool {
    let before = text[..start].trim_end_matches([' ', '\t', '"', '\'', '(']);
    before.is_empty() || before.ends_with(['.', '!', '?', '\n', ':', ';'])
}

/// Whether a lone capitalised word reads as part of a place: right after another
/// capitalised word ("Grand Canyon") or after a preposition of place ("in Georgia").
fn place_like(text: &str, words: &[Word], i: usize) -> bool {
    let start = words[i].start;
    if i > 0 && text[words[i - 1].end..start].chars().all(|c| c == ' ') {
        return true;
    }
    let previous = text[..start]
        .trim_end()
        .rsplit(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_lowercase();
    matches!(
        previous.as_str(),
        "in" | "at"
            | "near"
            | "across"
            | "through"
            | "into"
            | "around"
            | "outside"
            | "inside"
            | "visit"
            | "visited"
            | "visiting"
            | "toward"
            | "towards"
    )
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
    let adjacent =
        |a: &Word, b: &Word| a.end <= b.start && text[a.end..b.start].chars().all(|c| c == ' ');
    let usable = |t: &str| !NOT_NAMES.contains(&t.trim_end_matches('.'));
    let mut found = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let first = &words[i];
        let first_word = word(first);
        // The run of adjacent capitalised words starting here (at most four).
        let mut j = i + 1;
        while j < words.len()
            && j - i < 4
            && adjacent(&words[j - 1], &words[j])
            && usable(word(&words[j]))
        {
            j += 1;
        }
        let run = &words[i..j];
        if CONTEXT.is_match(&text[..first.start]) && usable(first_word) && !is_initial(first_word) {
            found.push((first.start, run[run.len() - 1].end, true));
            i = j;
            continue;
        }
        if GIVEN.contains(first_word) {
            // At a sentence start a capitalised second word proves less: it must be
            // a known surname or an initial.
            let second_ok = run.len() > 1 && {
                let second = word(&run[1]);
                !opens_sentence(text, first.start)
                    || is_initial(second)
                    || SURNAMES.contains(second)
            };
            if second_ok {
                let last = &run[run.len() - 1];
                let ends_well = !is_initial(word(last));
                let k = if ends_well {
                    run.len() - 1
                } else {
                    run.len() - 2
                };
                if k >= 1 {
                    found.push((first.start, run[k].end, false));
                    i += k + 1;
                    continue;
                }
            }
            let next_word = text[first.end..]
                .trim_start_matches([' ', '\''])
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("");
            let lone_ok = if opens_sentence(text, first.start) {
                run.len() == 1 && PERSON_VERBS.contains(&next_word)
            } else {
                !place_like(text, &words, i)
            };
            if lone_ok && !is_initial(first_word) {
                found.push((first.start, first.end, false));
                i += 1;
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
        assert_eq!(
            names("a huge Cecilie Josefsen fan"),
            vec!["Cecilie Josefsen"]
        );
        assert_eq!(names("You can tell Søren was happy"), vec!["Søren"]);
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
        assert!(names("The Princess Royal arrived in May.").is_empty());
        assert!(names("Will you come? Grant access to the repository.").is_empty());
    }
}
