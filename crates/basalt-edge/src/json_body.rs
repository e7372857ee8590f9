//! Reading a request's JSON body into its typed form.

use serde::Deserialize;

/// Why a body did not parse: where (`.` for the top level or a syntax error) and what.
pub struct BodyError {
    pub path: String,
    pub error: serde_json::Error,
}

/// Parses `body` as one JSON value of type `T`. A body that parses goes through
/// plain `serde_json` once; only a failure is parsed again with path tracking, to say
/// where the body went wrong (tracking the path on every request was a measurable
/// share of the proxy path's CPU).
pub fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, BodyError> {
    let error = match serde_json::from_slice(body) {
        Ok(value) => return Ok(value),
        Err(e) => e,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(e) => {
            let path = e.path().to_string();
            Err(BodyError {
                path,
                error: e.into_inner(),
            })
        }
        // The value parsed but something follows it: the first error says what.
        Ok(_) => Err(BodyError {
            path: ".".to_string(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[allow(dead_code)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    struct Item {
        #[allow(dead_code)]
        n: u32,
    }

    #[test]
    fn a_type_error_names_its_path() {
        let err = parse::<Body>(br#"{"items": [{"n": 1}, {"n": "two"}]}"#).err();
        let err = err.expect("a string where a number belongs is an error");
        assert_eq!(err.path, "items[1].n");
        assert!(
            err.error.to_string().contains("invalid type"),
            "{}",
            err.error
        );
    }

    #[test]
    fn trailing_characters_are_refused() {
        let err = parse::<Body>(br#"{"items": []} {"items": []}"#).err();
        let err = err.expect("a second value after the body is an error");
        assert_eq!(err.path, ".");
        assert!(err.error.to_string().contains("trailing"), "{}", err.error);
    }

    #[test]
    fn a_good_body_parses() {
        let body = parse::<Body>(br#"{"items": [{"n": 1}]} "#);
        assert!(body.is_ok(), "trailing whitespace is fine");
    }
}
