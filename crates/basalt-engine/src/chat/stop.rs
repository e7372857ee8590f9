//! Stop sequences over streamed text.
//!
//! Text is released only once it can no longer be the start of a stop sequence,
//! so a caller never sees characters that turn out to belong to one.

/// Watches generated text for any of a set of stop sequences.
#[derive(Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet released (it may be the start of a stop sequence).
    held: String,
}

/// The outcome of feeding text to a [`StopMatcher`].
#[derive(Debug, PartialEq, Eq)]
pub enum StopScan {
    /// Text that is safe to release; generation goes on.
    Continue(String),
    /// A stop sequence matched: the text before it, which ends the output.
    Stopped(String),
}

impl StopMatcher {
    pub fn new(stops: Vec<String>) -> Self {
        let stops = stops.into_iter().filter(|s| !s.is_empty()).collect();
        Self {
            stops,
            held: String::new(),
        }
    }

    /// Adds newly generated text and says what can be released.
    pub fn push(&mut self, text: &str) -> StopScan {
        self.held.push_str(text);
        if self.stops.is_empty() {
            return StopScan::Continue(std::mem::take(&mut self.held));
        }
        // The earliest complete match wins.
        let earliest = self
            .stops
            .iter()
            .filter_map(|stop| self.held.find(stop.as_str()))
            .min();
        if let Some(at) = earliest {
            let before = self.held[..at].to_string();
            self.held.clear();
            return StopScan::Stopped(before);
        }
        // Hold back the longest suffix that is a proper prefix of some stop sequence.
        let mut keep_from = self.held.len();
        for (idx, _) in self.held.char_indices().rev() {
            let suffix = &self.held[idx..];
            if self.stops.iter().any(|stop| stop.starts_with(suffix)) {
                keep_from = idx;
            }
            if self.held.len() - idx >= self.longest_stop() {
                break;
            }
        }
        let released = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        StopScan::Continue(released)
    }

    /// Releases whatever is held (generation ended for another reason).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    fn longest_stop(&self) -> usize {
        self.stops.iter().map(String::len).max().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_everything_without_stops() {
        let mut m = StopMatcher::new(vec![]);
        assert_eq!(m.push("abc"), StopScan::Continue("abc".into()));
    }

    #[test]
    fn holds_a_possible_prefix_then_releases_it() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("hello E"), StopScan::Continue("hello ".into()));
        assert_eq!(m.push("x"), StopScan::Continue("Ex".into()));
    }

    #[test]
    fn stops_across_pieces_and_drops_the_stop_text() {
        let mut m = StopMatcher::new(vec!["END".into()]);
        assert_eq!(m.push("one E"), StopScan::Continue("one ".into()));
        assert_eq!(m.push("ND two"), StopScan::Stopped("".into()));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        let mut m = StopMatcher::new(vec!["b".into(), "a".into()]);
        assert_eq!(m.push("xxab"), StopScan::Stopped("xx".into()));
    }

    #[test]
    fn finish_flushes_held_text() {
        let mut m = StopMatcher::new(vec!["STOP".into()]);
        assert_eq!(m.push("go ST"), StopScan::Continue("go ".into()));
        assert_eq!(m.finish(), "ST");
    }

    #[test]
    fn multibyte_text_is_split_on_char_boundaries() {
        let mut m = StopMatcher::new(vec!["é!".into()]);
        assert_eq!(m.push("caféé"), StopScan::Continue("café".into()));
        assert_eq!(m.push("!"), StopScan::Stopped("".into()));
    }
}
