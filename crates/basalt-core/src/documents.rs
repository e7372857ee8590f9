//! Converse `document` content as text: models here take no document input, so, as
//! Bedrock does for such models, a document is turned into its text with the
//! knowledge-base parsers (`basalt_kb::parse`) and put in the message as text.

use basalt_kb::parse::{extract_text, Format};

use crate::CoreError;

/// A document parser (re-exported for the edge, which checks a request before reading it).
pub use basalt_kb::parse::Format as DocumentFormat;

/// Documents one request may carry (Bedrock's limit).
pub const MAX_DOCUMENTS: usize = 5;
/// Bytes of one document (Bedrock's limit: 4.5 MB).
pub const MAX_DOCUMENT_BYTES: usize = 4_500_000;
/// Characters of a document's name.
pub const MAX_NAME_CHARS: usize = 200;

/// Bedrock's document formats, and whether this server can read each.
pub const FORMATS: &[(&str, Option<Format>)] = &[
    ("pdf", Some(Format::Pdf)),
    ("csv", Some(Format::Csv)),
    ("doc", None),
    ("docx", Some(Format::Docx)),
    ("xls", None),
    ("xlsx", None),
    ("html", Some(Format::Html)),
    ("txt", Some(Format::Text)),
    ("md", Some(Format::Markdown)),
];

/// Checks a document's format and name before any work; the parser to read it with.
pub fn check(format: &str, name: &str) -> Result<Format, CoreError> {
    let Some((_, known)) = FORMATS.iter().find(|(f, _)| *f == format) else {
        return Err(CoreError::Validation(format!(
            "document format {format:?} is not one of {}",
            FORMATS
                .iter()
                .map(|(f, _)| *f)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    let Some(parser) = known else {
        return Err(CoreError::Validation(format!(
            "document format {format} is not supported by this server (it reads pdf, csv, docx, html, txt and md); convert the document to one of them"
        )));
    };
    // Bedrock: alphanumerics, whitespace (never two in a row), hyphens,
    // parentheses and square brackets.
    let valid = !name.is_empty()
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.contains("  ")
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "-()[]".contains(c));
    if !valid {
        return Err(CoreError::Validation(format!(
            "document name {name:?} must be 1-{MAX_NAME_CHARS} characters of letters, digits, single spaces, hyphens, parentheses and square brackets"
        )));
    }
    Ok(*parser)
}

/// The text a model sees for a document: its name, then its text.
pub fn as_text(format: Format, name: &str, bytes: &[u8]) -> Result<String, CoreError> {
    let text = extract_text(format, bytes)
        .map_err(|e| CoreError::Validation(format!("document {name:?} cannot be read: {e}")))?;
    Ok(format!("<document name=\"{name}\">\n{text}\n</document>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_names_are_checked() {
        assert!(matches!(check("md", "Notes (v2)"), Ok(Format::Markdown)));
        let err = check("xlsx", "Sheet").expect_err("unsupported");
        assert!(err.to_string().contains("not supported"), "{err}");
        assert!(check("exe", "x").is_err());
        assert!(check("txt", "a/b").is_err());
        assert!(check("txt", "two  spaces").is_err());
    }

    #[test]
    fn a_text_document_is_named_in_its_text() {
        let text = as_text(Format::Text, "Memo", b"Basalt is volcanic.").expect("reads");
        assert_eq!(
            text,
            "<document name=\"Memo\">\nBasalt is volcanic.\n</document>"
        );
        assert!(as_text(Format::Pdf, "Broken", b"%PDF-1.4 no").is_err());
    }
}
