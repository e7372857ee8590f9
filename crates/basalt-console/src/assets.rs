//! The console's static files, embedded in the binary. Pages name them with a
//! content hash (`/console/assets/app.js?v=…`), so browsers keep them for a year and
//! fetch a new one only when the binary's copy changes.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/console.css"),
    },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/console.js"),
    },
    Asset {
        name: "pico.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/vendor/pico.min.css"),
    },
    Asset {
        name: "htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/vendor/htmx.min.js"),
    },
    Asset {
        name: "uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/vendor/uPlot.iife.min.js"),
    },
    Asset {
        name: "uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/vendor/uPlot.min.css"),
    },
];

/// Each asset gzipped once (best compression), the first time any is served.
fn gzipped() -> &'static Vec<Vec<u8>> {
    static GZIPPED: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    GZIPPED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                use std::io::Write;
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
                match encoder.write_all(a.bytes).and_then(|()| encoder.finish()) {
                    Ok(out) => out,
                    // Cannot happen writing to memory; an empty entry means "send as is".
                    Err(_) => Vec::new(),
                }
            })
            .collect()
    })
}

/// Whether the request's `Accept-Encoding` takes gzip.
fn takes_gzip(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.trim().split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn hashes() -> &'static Vec<String> {
    static HASHES: OnceLock<Vec<String>> = OnceLock::new();
    HASHES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| hex::encode(&Sha256::digest(a.bytes)[..6]))
            .collect()
    })
}

/// The URL of an asset, with its content hash; unknown names give an empty string.
pub fn url(name: &str) -> String {
    ASSETS
        .iter()
        .zip(hashes())
        .find(|(a, _)| a.name == name)
        .map(|(a, h)| format!("/console/assets/{}?v={h}", a.name))
        .unwrap_or_default()
}

/// `GET /console/assets/{name}`: gzipped when the browser takes it.
pub async fn serve(Path(name): Path<String>, headers: axum::http::HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.name == name) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (asset, hash) = (&ASSETS[index], &hashes()[index]);
    let compressed = takes_gzip(&headers)
        .then(|| gzipped().get(index))
        .flatten()
        .filter(|g| !g.is_empty());
    let mut response = match compressed {
        Some(g) => {
            let mut r = g.clone().into_response();
            r.headers_mut()
                .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            r
        }
        None => asset.bytes.into_response(),
    };
    let h = response.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("\"{hash}\"")) {
        h.insert(header::ETAG, v);
    }
    response
}

#[cfg(test)]
mod tests {
    #[test]
    fn gzip_is_offered_only_when_accepted() {
        use axum::http::HeaderMap;
        let mut h = HeaderMap::new();
        assert!(!super::takes_gzip(&h));
        h.insert(
            axum::http::header::ACCEPT_ENCODING,
            "br, gzip;q=0.8".parse().expect("header"),
        );
        assert!(super::takes_gzip(&h));
        h.insert(
            axum::http::header::ACCEPT_ENCODING,
            "gzip;q=0, br".parse().expect("header"),
        );
        assert!(!super::takes_gzip(&h));
        let sizes: Vec<(usize, usize)> = super::ASSETS
            .iter()
            .zip(super::gzipped())
            .map(|(a, g)| (a.bytes.len(), g.len()))
            .collect();
        assert!(
            sizes.iter().all(|(raw, gz)| *gz > 0 && gz < raw),
            "{sizes:?}"
        );
    }

    #[test]
    fn asset_urls_carry_a_hash() {
        let u = super::url("console.js");
        assert!(u.starts_with("/console/assets/console.js?v="), "{u}");
        assert_eq!(super::url("nope.js"), "");
    }
}
