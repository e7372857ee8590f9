//! Web data sources: a breadth-first crawl from the seed URLs, within the scope
//! Bedrock defines (default: the seed's host and path prefix; host only: the seed's
//! host; subdomains: the seed's registrable domain and its subdomains), through the
//! inclusion/exclusion regular expressions, to `[knowledge_bases.web] max_depth`
//! links from a seed and at most the source's page limit, at most its rate limit of
//! pages a minute per host, honouring each host's
//! robots.txt for our user agent. Only hosts in `[knowledge_bases.web] allowed_hosts`
//! are fetched (a crawler inside a server must not become a way into its network).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use basalt_kb::parse::{html_links, Format};
use basalt_providers::reqwest::{self, Url};
use serde::{Deserialize, Serialize};

use crate::CoreError;

/// The crawler's product token (robots.txt groups match it).
pub const USER_AGENT: &str = "BasaltCrawler";

/// The most pages one crawl fetches, and its default.
pub const MAX_PAGES: u64 = 25_000;
/// The most pages a minute a crawl fetches from one host, and its default.
pub const MAX_PAGES_PER_MINUTE: u64 = 300;

/// A web data source as configured (its values are checked by [`crawl_spec`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WebSource {
    pub seeds: Vec<String>,
    #[serde(default)]
    pub scope: Scope,
    /// Regular expressions a followed URL must match (any of them), if there are any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Regular expressions a followed URL must not match.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// At most this many pages (default and most: [`MAX_PAGES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pages: Option<u64>,
    /// At most this many pages a minute per host (default and most:
    /// [`MAX_PAGES_PER_MINUTE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_per_minute: Option<u64>,
    /// Appended to the crawler's user agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent_suffix: Option<String>,
}

/// A crawl's parameters, from a [`WebSource`] and the server configuration.
#[derive(Debug, Clone)]
pub struct CrawlSpec {
    pub seeds: Vec<Url>,
    pub scope: Scope,
    pub include: Vec<regex::Regex>,
    pub exclude: Vec<regex::Regex>,
    pub max_pages: usize,
    pub pages_per_minute: u32,
    pub max_depth: usize,
    pub user_agent: String,
}

/// Which URLs a crawl may follow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Same host, under the seed's path.
    #[default]
    Default,
    HostOnly,
    Subdomains,
}

/// A fetched page.
#[derive(Debug, Clone)]
pub struct Page {
    pub url: String,
    pub body: Vec<u8>,
    pub format: Format,
}

fn invalid(m: impl Into<String>) -> CoreError {
    CoreError::Validation(m.into())
}

/// Checks a web source and makes its crawl (at CreateDataSource and at each crawl).
pub fn crawl_spec(web: &WebSource, max_depth: usize) -> Result<CrawlSpec, CoreError> {
    if web.seeds.is_empty() {
        return Err(invalid("a web data source needs at least one seed URL"));
    }
    let seeds = web
        .seeds
        .iter()
        .map(|text| {
            let url = Url::parse(text).map_err(|e| invalid(format!("seed URL {text:?}: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(invalid(format!(
                    "seed URL {text:?} must be http:// or https:// with a host"
                )));
            }
            Ok(url)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let patterns = |list: &[String], what: &str| -> Result<Vec<regex::Regex>, CoreError> {
        list.iter()
            .map(|p| {
                regex::Regex::new(p).map_err(|e| {
                    invalid(format!(
                        "{what} filter {p:?} is not a regular expression: {e}"
                    ))
                })
            })
            .collect()
    };
    let limit = |value: Option<u64>, max: u64, what: &str| -> Result<u64, CoreError> {
        match value {
            None => Ok(max),
            Some(n) if (1..=max).contains(&n) => Ok(n),
            Some(n) => Err(invalid(format!("the {what} must be 1..{max}, not {n}"))),
        }
    };
    let agent_suffix = web.user_agent_suffix.as_deref().unwrap_or_default();
    Ok(CrawlSpec {
        seeds,
        scope: web.scope,
        include: patterns(&web.include, "inclusion")?,
        exclude: patterns(&web.exclude, "exclusion")?,
        max_pages: limit(web.max_pages, MAX_PAGES, "page limit")? as usize,
        pages_per_minute: limit(
            web.pages_per_minute,
            MAX_PAGES_PER_MINUTE,
            "rate limit (pages a minute)",
        )? as u32,
        max_depth,
        user_agent: format!("{USER_AGENT}/0.1 {agent_suffix}").trim().to_owned(),
    })
}

/// The last two labels of a host (a simple registrable domain: `docs.example.com` →
/// `example.com`).
fn domain_of(host: &str) -> &str {
    let mut dots = host.rmatch_indices('.');
    match (dots.next(), dots.next()) {
        (Some(_), Some((i, _))) => &host[i + 1..],
        _ => host,
    }
}

impl CrawlSpec {
    /// Whether `url` is inside the crawl (scope and filters).
    pub fn in_scope(&self, url: &Url) -> bool {
        let Some(host) = url.host_str() else {
            return false;
        };
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let scoped = self.seeds.iter().any(|seed| {
            let seed_host = seed.host_str().unwrap_or_default();
            match self.scope {
                Scope::Default => {
                    host == seed_host
                        && url.port_or_known_default() == seed.port_or_known_default()
                        && url.path().starts_with(seed_path_prefix(seed))
                }
                Scope::HostOnly => {
                    host == seed_host && url.port_or_known_default() == seed.port_or_known_default()
                }
                Scope::Subdomains => {
                    let domain = domain_of(seed_host);
                    host == domain || host.ends_with(&format!(".{domain}"))
                }
            }
        });
        let text = url.as_str();
        scoped
            && (self.include.is_empty() || self.include.iter().any(|r| r.is_match(text)))
            && !self.exclude.iter().any(|r| r.is_match(text))
    }
}

/// The directory part of a seed's path (`/docs/intro.html` → `/docs/`).
fn seed_path_prefix(seed: &Url) -> &str {
    let path = seed.path();
    match path.rfind('/') {
        Some(i) => &path[..=i],
        None => "/",
    }
}

/// Whether the server lets the crawler fetch from `host`.
pub fn host_allowed(allowed: &[String], host: &str) -> bool {
    allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(host))
}

struct Robots {
    rules: HashMap<String, Option<texting_robots::Robot>>,
}

impl Robots {
    async fn allows(&mut self, client: &reqwest::Client, url: &Url) -> bool {
        let origin = url.origin().ascii_serialization();
        if !self.rules.contains_key(&origin) {
            let robots = match client.get(format!("{origin}/robots.txt")).send().await {
                Ok(r) if r.status().is_success() => match r.bytes().await {
                    Ok(body) => texting_robots::Robot::new(USER_AGENT, &body).ok(),
                    Err(_) => None,
                },
                // No robots.txt (4xx): everything is allowed. 5xx or unreachable:
                // nothing is (the conservative reading of the robots exclusion RFC).
                Ok(r) if r.status().is_client_error() => None,
                _ => texting_robots::Robot::new(USER_AGENT, b"User-agent: *\nDisallow: /").ok(),
            };
            self.rules.insert(origin.clone(), robots);
        }
        match self.rules.get(&origin) {
            Some(Some(robot)) => robot.allowed(url.as_str()),
            _ => true,
        }
    }
}

/// What a crawl found: the pages, and pages it could not fetch, with the reason.
#[derive(Debug, Default)]
pub struct Crawl {
    pub pages: Vec<Page>,
    pub failed: Vec<(String, String)>,
    /// Whether `maxPages` stopped the crawl.
    pub truncated: bool,
}

/// Crawls; `allowed_hosts` and `max_bytes` come from the server configuration.
pub async fn crawl(
    spec: &CrawlSpec,
    allowed_hosts: &[String],
    max_bytes: u64,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<Crawl, CoreError> {
    for seed in &spec.seeds {
        let host = seed.host_str().unwrap_or_default();
        if !host_allowed(allowed_hosts, host) {
            return Err(CoreError::AccessDenied(format!(
                "{seed}: host {host} is not one this server may crawl ([knowledge_bases.web] allowed_hosts)"
            )));
        }
    }
    let client = reqwest::Client::builder()
        .user_agent(spec.user_agent.clone())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .map_err(|e| CoreError::Internal(format!("cannot build the crawler's HTTP client: {e}")))?;
    let mut robots = Robots {
        rules: HashMap::new(),
    };
    let mut queue: VecDeque<(Url, usize)> = spec.seeds.iter().map(|s| (s.clone(), 0)).collect();
    let mut seen: HashSet<String> = spec.seeds.iter().map(|s| s.as_str().to_owned()).collect();
    let mut last_fetch: HashMap<String, Instant> = HashMap::new();
    let gap = Duration::from_millis(60_000 / u64::from(spec.pages_per_minute.max(1)));
    let mut out = Crawl::default();
    while let Some((url, depth)) = queue.pop_front() {
        if stop.load(std::sync::atomic::Ordering::SeqCst) {
            break;
        }
        if out.pages.len() >= spec.max_pages {
            out.truncated = true;
            break;
        }
        let host = url.host_str().unwrap_or_default().to_owned();
        if !host_allowed(allowed_hosts, &host) || !robots.allows(&client, &url).await {
            continue;
        }
        if let Some(at) = last_fetch.get(&host) {
            let wait = gap.saturating_sub(at.elapsed());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        last_fetch.insert(host, Instant::now());
        let response = match client.get(url.clone()).send().await {
            Ok(r) => r,
            Err(e) => {
                out.failed
                    .push((url.to_string(), format!("fetch failed: {e}")));
                continue;
            }
        };
        if !response.status().is_success() {
            out.failed
                .push((url.to_string(), format!("HTTP {}", response.status())));
            continue;
        }
        let final_url = response.url().clone();
        if final_url != url && !spec.in_scope(&final_url) {
            continue;
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("text/html")
            .to_ascii_lowercase();
        let format = if content_type.starts_with("text/html") || content_type.contains("xhtml") {
            Format::Html
        } else if let Some(f) = Format::of_mime(&content_type) {
            f
        } else {
            continue;
        };
        if response.content_length().is_some_and(|n| n > max_bytes) {
            out.failed.push((
                url.to_string(),
                format!("the page is larger than {max_bytes} bytes"),
            ));
            continue;
        }
        let body = match response.bytes().await {
            Ok(b) if b.len() as u64 <= max_bytes => b.to_vec(),
            Ok(_) => {
                out.failed.push((
                    url.to_string(),
                    format!("the page is larger than {max_bytes} bytes"),
                ));
                continue;
            }
            Err(e) => {
                out.failed
                    .push((url.to_string(), format!("reading the page failed: {e}")));
                continue;
            }
        };
        if format == Format::Html && depth < spec.max_depth {
            let html = String::from_utf8_lossy(&body);
            for href in html_links(&html) {
                let Ok(mut next) = final_url.join(&href) else {
                    continue;
                };
                next.set_fragment(None);
                if spec.in_scope(&next) && seen.insert(next.as_str().to_owned()) {
                    queue.push_back((next, depth + 1));
                }
            }
        }
        out.pages.push(Page {
            url: final_url.to_string(),
            body,
            format,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(seeds: &[&str]) -> WebSource {
        WebSource {
            seeds: seeds.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn spec(scope: Scope, include: &[&str], exclude: &[&str]) -> CrawlSpec {
        let web = WebSource {
            scope,
            include: include.iter().map(|s| s.to_string()).collect(),
            exclude: exclude.iter().map(|s| s.to_string()).collect(),
            ..source(&["https://docs.example.com/guide/index.html"])
        };
        crawl_spec(&web, 3).unwrap_or_else(|e| panic!("{e}"))
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn scopes_follow_bedrock() {
        let default = spec(Scope::Default, &[], &[]);
        assert!(default.in_scope(&url("https://docs.example.com/guide/a.html")));
        assert!(!default.in_scope(&url("https://docs.example.com/blog/a.html")));
        assert!(!default.in_scope(&url("https://example.com/guide/a.html")));
        let host = spec(Scope::HostOnly, &[], &[]);
        assert!(host.in_scope(&url("https://docs.example.com/blog/a.html")));
        assert!(!host.in_scope(&url("https://api.example.com/")));
        let sub = spec(Scope::Subdomains, &[], &[]);
        assert!(sub.in_scope(&url("https://api.example.com/x")));
        assert!(sub.in_scope(&url("https://example.com/x")));
        assert!(!sub.in_scope(&url("https://example.org/x")));
        assert!(!sub.in_scope(&url("ftp://example.com/x")));
    }

    #[test]
    fn filters_include_and_exclude() {
        let s = spec(Scope::HostOnly, &[".*\\.html$"], &[".*/private/.*"]);
        assert!(s.in_scope(&url("https://docs.example.com/a.html")));
        assert!(!s.in_scope(&url("https://docs.example.com/a.pdf")));
        assert!(!s.in_scope(&url("https://docs.example.com/private/a.html")));
    }

    #[test]
    fn bad_configurations_are_named() {
        for (web, needle) in [
            (source(&[]), "seed URL"),
            (source(&["file:///etc"]), "http://"),
            (
                WebSource {
                    include: vec!["(".into()],
                    ..source(&["https://a.com"])
                },
                "regular expression",
            ),
            (
                WebSource {
                    pages_per_minute: Some(1000),
                    ..source(&["https://a.com"])
                },
                "rate limit",
            ),
            (
                WebSource {
                    max_pages: Some(0),
                    ..source(&["https://a.com"])
                },
                "page limit",
            ),
        ] {
            match crawl_spec(&web, 3) {
                Ok(s) => panic!("{web:?} parsed: {s:?}"),
                Err(e) => assert!(e.to_string().contains(needle), "{web:?}: {e}"),
            }
        }
        assert!(host_allowed(&["*".into()], "x"));
        assert!(!host_allowed(&["a.com".into()], "b.com"));
    }
}
