//! Text out of a document, by its file type: plain text, Markdown, HTML (the main
//! text: navigation, headers, footers, scripts and styles dropped), CSV (one line per
//! row, `header: value` pairs), PDF (`pdf-extract`), DOCX (the paragraphs of
//! `word/document.xml`). A document that cannot be read is a [`KbError::Parse`] with
//! the reason; the ingestion job counts it as failed and goes on.

use std::io::Read;

use crate::KbError;

/// The file types ingestion reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Markdown,
    Html,
    Csv,
    Pdf,
    Docx,
}

impl Format {
    /// By file extension (case-insensitive); `None` for a type ingestion skips.
    pub fn of_name(name: &str) -> Option<Self> {
        let ext = name.rsplit_once('.')?.1.to_ascii_lowercase();
        Some(match ext.as_str() {
            "txt" | "text" => Self::Text,
            "md" | "markdown" => Self::Markdown,
            "html" | "htm" => Self::Html,
            "csv" => Self::Csv,
            "pdf" => Self::Pdf,
            "docx" => Self::Docx,
            _ => return None,
        })
    }

    /// By MIME type (direct ingestion's `byteContent.mimeType`).
    pub fn of_mime(mime: &str) -> Option<Self> {
        let base = mime.split(';').next().unwrap_or_default().trim();
        Some(match base.to_ascii_lowercase().as_str() {
            "text/plain" => Self::Text,
            "text/markdown" => Self::Markdown,
            "text/html" => Self::Html,
            "text/csv" => Self::Csv,
            "application/pdf" => Self::Pdf,
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => Self::Docx,
            _ => return None,
        })
    }
}

fn failed(reason: impl Into<String>) -> KbError {
    KbError::Parse(reason.into())
}

/// The document's text; an error when it cannot be read or holds no text.
pub fn extract_text(format: Format, bytes: &[u8]) -> Result<String, KbError> {
    let text = match format {
        Format::Text | Format::Markdown => utf8(bytes)?.to_owned(),
        Format::Html => html_text(utf8(bytes)?),
        Format::Csv => csv_text(bytes)?,
        Format::Pdf => pdf_text(bytes)?,
        Format::Docx => docx_text(bytes)?,
    };
    if text.trim().is_empty() {
        return Err(failed("the document has no text"));
    }
    Ok(text)
}

fn utf8(bytes: &[u8]) -> Result<&str, KbError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| failed(format!("not UTF-8 text: {e}")))
}

/// Elements whose text is not the page's content.
const SKIPPED_ELEMENTS: &[&str] = &[
    "nav", "header", "footer", "aside", "script", "style", "noscript", "template", "svg", "form",
    "head", "iframe", "button", "select",
];

/// Elements that end a line of text.
const BLOCK_ELEMENTS: &[&str] = &[
    "p",
    "div",
    "section",
    "article",
    "main",
    "li",
    "ul",
    "ol",
    "table",
    "tr",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "br",
    "pre",
    "blockquote",
    "dd",
    "dt",
    "td",
    "th",
];

fn html_text(source: &str) -> String {
    let document = scraper::Html::parse_document(source);
    let main = ["main", "article", "body"].iter().find_map(|name| {
        let selector = scraper::Selector::parse(name).ok()?;
        document.select(&selector).next()
    });
    let mut out = String::new();
    match main {
        Some(element) => walk_html(*element, &mut out),
        None => walk_html(document.tree.root(), &mut out),
    }
    collapse_blank_lines(&out)
}

/// The `href` of every `<a>` in a page, as written (resolve them against the page URL).
pub fn html_links(source: &str) -> Vec<String> {
    let document = scraper::Html::parse_document(source);
    let Ok(selector) = scraper::Selector::parse("a[href]") else {
        return Vec::new();
    };
    document
        .select(&selector)
        .filter_map(|a| a.value().attr("href"))
        .map(str::to_owned)
        .collect()
}

fn walk_html(node: ego_tree::NodeRef<'_, scraper::Node>, out: &mut String) {
    for child in node.children() {
        match child.value() {
            scraper::Node::Text(text) => {
                let t = text.text.trim();
                if !t.is_empty() {
                    if !out.is_empty() && !out.ends_with(['\n', ' ']) {
                        out.push(' ');
                    }
                    out.push_str(&t.split_whitespace().collect::<Vec<_>>().join(" "));
                }
            }
            scraper::Node::Element(element) => {
                let name = element.name();
                if SKIPPED_ELEMENTS.contains(&name) {
                    continue;
                }
                let block = BLOCK_ELEMENTS.contains(&name);
                if block && !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                walk_html(child, out);
                if block && !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ => {}
        }
    }
}

fn collapse_blank_lines(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

fn csv_text(bytes: &[u8]) -> Result<String, KbError> {
    let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| failed(format!("CSV header: {e}")))?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut out = String::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| failed(format!("CSV row {}: {e}", i + 2)))?;
        let line: Vec<String> = record
            .iter()
            .enumerate()
            .map(|(j, value)| match headers.get(j) {
                Some(h) if !h.is_empty() => format!("{h}: {value}"),
                _ => value.to_owned(),
            })
            .collect();
        out.push_str(&line.join("; "));
        out.push('\n');
    }
    Ok(out)
}

fn pdf_text(bytes: &[u8]) -> Result<String, KbError> {
    if !bytes.starts_with(b"%PDF-") {
        return Err(failed("not a PDF file (no %PDF- header)"));
    }
    // pdf-extract panics on some malformed files; a panic is that file's failure, not
    // the job's.
    let owned = bytes.to_vec();
    let result = std::panic::catch_unwind(move || pdf_extract::extract_text_from_mem(&owned));
    match result {
        Ok(Ok(text)) => Ok(text),
        Ok(Err(e)) => Err(failed(format!("unreadable PDF: {e}"))),
        Err(_) => Err(failed(
            "unreadable PDF: the parser gave up on its structure",
        )),
    }
}

/// Largest `word/document.xml` read (a zip bomb stops here).
const MAX_DOCX_XML: u64 = 64 * 1024 * 1024;

fn docx_text(bytes: &[u8]) -> Result<String, KbError> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| failed(format!("not a DOCX file (zip): {e}")))?;
    let mut xml = String::new();
    archive
        .by_name("word/document.xml")
        .map_err(|e| failed(format!("not a DOCX file (word/document.xml): {e}")))?
        .take(MAX_DOCX_XML)
        .read_to_string(&mut xml)
        .map_err(|e| failed(format!("DOCX document.xml: {e}")))?;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut out = String::new();
    let mut in_text = false;
    loop {
        use quick_xml::events::Event;
        match reader.read_event() {
            Ok(Event::Start(e)) if e.name().as_ref() == b"w:t" => in_text = true,
            Ok(Event::End(e)) => match e.name().as_ref() {
                b"w:t" => in_text = false,
                b"w:p" => out.push('\n'),
                _ => {}
            },
            Ok(Event::Empty(e)) => match e.name().as_ref() {
                b"w:tab" => out.push('\t'),
                b"w:br" => out.push('\n'),
                _ => {}
            },
            Ok(Event::Text(t)) if in_text => {
                let text = t
                    .unescape()
                    .map_err(|e| failed(format!("DOCX text: {e}")))?;
                out.push_str(&text);
            }
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(failed(format!("DOCX document.xml: {e}"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn formats_by_extension_and_mime() {
        assert_eq!(Format::of_name("a/B.HTML"), Some(Format::Html));
        assert_eq!(Format::of_name("x.docx"), Some(Format::Docx));
        assert_eq!(Format::of_name("x.png"), None);
        assert_eq!(Format::of_name("noext"), None);
        assert_eq!(
            Format::of_mime("text/plain; charset=utf-8"),
            Some(Format::Text)
        );
    }

    #[test]
    fn html_keeps_the_main_text_only() {
        let page = "<html><head><title>T</title><style>p{}</style></head><body>\
            <nav><a href='/'>Home</a> <a href='/x'>Menu</a></nav>\
            <main><h1>Basalt</h1><p>Columnar   jointing forms\nwhen lava cools.</p>\
            <script>var x = 1;</script></main><footer>Copyright</footer></body></html>";
        let text = extract_text(Format::Html, page.as_bytes()).unwrap_or_default();
        assert_eq!(text, "Basalt\nColumnar jointing forms when lava cools.");
    }

    #[test]
    fn csv_rows_become_labelled_lines() {
        let text =
            extract_text(Format::Csv, b"name,rock\nA,basalt\nB,granite\n").unwrap_or_default();
        assert_eq!(text, "name: A; rock: basalt\nname: B; rock: granite\n");
    }

    #[test]
    fn docx_paragraphs_are_read() {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default();
        assert!(zip.start_file("word/document.xml", options).is_ok());
        let xml = r#"<?xml version="1.0"?><w:document xmlns:w="x"><w:body><w:p><w:r><w:t>Hello &amp; welcome</w:t></w:r></w:p><w:p><w:r><w:t>Second</w:t><w:tab/><w:t>para</w:t></w:r></w:p></w:body></w:document>"#;
        assert!(zip.write_all(xml.as_bytes()).is_ok());
        let bytes = zip.finish().map(|c| c.into_inner()).unwrap_or_default();
        let text = extract_text(Format::Docx, &bytes).unwrap_or_default();
        assert_eq!(text, "Hello & welcome\nSecond\tpara\n");
    }

    #[test]
    fn unreadable_documents_say_why() {
        let cases: [(Format, &[u8], &str); 5] = [
            (
                Format::Pdf,
                b"%PDF-1.4\ngarbage that is no pdf",
                "unreadable PDF",
            ),
            (Format::Pdf, b"hello", "no %PDF- header"),
            (Format::Docx, b"not a zip", "not a DOCX"),
            (Format::Text, b"\xff\xfe\x00bad", "not UTF-8"),
            (Format::Text, b"   \n ", "no text"),
        ];
        for (format, bytes, reason) in cases {
            match extract_text(format, bytes) {
                Ok(t) => panic!("{format:?} parsed as {t:?}"),
                Err(e) => assert!(e.to_string().contains(reason), "{format:?}: {e}"),
            }
        }
    }
}
