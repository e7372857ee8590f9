//! Console sessions: a random session ID in an `HttpOnly`, `SameSite=Strict` cookie
//! (`Secure` over TLS), the key it was opened with, a CSRF token, and idle expiry.
//!
//! Sessions live in this process's memory: a restart signs everyone out. The key is
//! looked up again on every request, so a revoked key or a changed role takes effect
//! at the next click, as it does for API calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use rand::RngCore;
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "basalt_console";
/// The sign-in form's double-submit cookie (CSRF before a session exists).
pub const SIGN_IN_COOKIE: &str = "basalt_console_signin";

/// 32 random bytes as hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[derive(Debug, Clone)]
pub struct Session {
    pub key_id: String,
    pub csrf: String,
    last_seen: Instant,
}

/// The open sessions, bounded: past `max` the least recently used one ends.
#[derive(Debug)]
pub struct Sessions {
    open: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Self {
        Self {
            open: Mutex::new(HashMap::new()),
            idle,
            max: max.max(1),
        }
    }

    /// Opens a session for a key; returns its ID (the cookie's value).
    pub fn open(&self, key_id: &str) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, s| now.duration_since(s.last_seen) < self.idle);
        while open.len() >= self.max {
            let Some(oldest) = open
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            open.remove(&oldest);
        }
        open.insert(
            id.clone(),
            Session {
                key_id: key_id.to_string(),
                csrf: random_token(),
                last_seen: now,
            },
        );
        id
    }

    /// The live session with this ID (its idle clock restarted), or None.
    pub fn touch(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let session = open.get_mut(id)?;
        if now.duration_since(session.last_seen) >= self.idle {
            open.remove(id);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    pub fn close(&self, id: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.remove(id);
    }

    /// Ends every session of a key (it was revoked).
    pub fn close_key(&self, key_id: &str) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|_, s| s.key_id != key_id);
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for a console cookie (`max_age` None: a session cookie;
/// Some(0): delete it).
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<u64>) -> String {
    let mut c = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(age) = max_age {
        c.push_str(&format!("; Max-Age={age}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_are_bounded() {
        let sessions = Sessions::new(Duration::from_millis(50), 2);
        let a = sessions.open("key-a");
        assert_eq!(sessions.touch(&a).map(|s| s.key_id), Some("key-a".into()));
        std::thread::sleep(Duration::from_millis(80));
        assert!(sessions.touch(&a).is_none(), "an idle session must end");
        let b = sessions.open("key-b");
        let c = sessions.open("key-c");
        let d = sessions.open("key-d");
        assert!(
            sessions.touch(&b).is_none(),
            "the oldest session ends past the bound"
        );
        assert!(sessions.touch(&c).is_some() && sessions.touch(&d).is_some());
        sessions.close_key("key-c");
        assert!(sessions.touch(&c).is_none());
    }

    #[test]
    fn cookies_are_parsed_and_secrets_compared() {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            axum::http::HeaderValue::from_static("a=1; basalt_console=xyz; b=2"),
        );
        assert_eq!(cookie(&headers, COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, "missing"), None);
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        let set = set_cookie(COOKIE, "v", true, None);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
        assert!(!set_cookie(COOKIE, "v", false, None).contains("Secure"));
    }
}
