//! Errors of the admin API as RFC 9457 problem details: `application/problem+json` with
//! `type`, `title`, `status` and `detail`.
//!
//! `type` is a URN naming the kind of problem (`urn:portcullis:problem:<slug>`): stable for
//! programs to match on, unlike `detail`, which is for people.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};

/// The media type of a problem document (RFC 9457 §3).
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One problem: the HTTP status, its kind and a human-readable detail.
#[derive(Debug, Clone)]
pub struct Problem {
    /// The HTTP status.
    pub status: StatusCode,
    /// The kind, the last part of the `type` URN (e.g. `invalid-token`).
    pub slug: &'static str,
    /// A short summary of the kind, the same for every occurrence.
    pub title: &'static str,
    /// What happened this time.
    pub detail: String,
    /// Extra response headers (`WWW-Authenticate`, `Allow`, `Retry-After`).
    pub headers: Vec<(HeaderName, String)>,
}

impl Problem {
    /// A problem of kind `slug`.
    pub fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            slug,
            title,
            detail: detail.into(),
            headers: Vec::new(),
        }
    }

    /// Adds a response header.
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// 400: the request is not one this endpoint accepts (unknown field, bad value).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid-request",
            "Invalid request",
            detail,
        )
    }

    /// 400: the body is not well-formed JSON.
    pub fn malformed_json(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            "Malformed JSON",
            detail,
        )
    }

    /// 404: no such resource.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    /// 401 for a call without credentials or with credentials that do not hold, with the
    /// challenge of RFC 6750.
    pub fn unauthorized(
        slug: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        let challenge = match slug {
            "invalid-token" => "Bearer realm=\"portcullis-admin\", error=\"invalid_token\"",
            _ => "Bearer realm=\"portcullis-admin\"",
        };
        Self::new(StatusCode::UNAUTHORIZED, slug, title, detail)
            .header(hyper::header::WWW_AUTHENTICATE, challenge)
    }

    /// 403: authenticated, but the key lacks the `admin` scope.
    pub fn insufficient_scope(detail: impl Into<String>) -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "insufficient-scope",
            "Insufficient scope",
            detail,
        )
        .header(
            hyper::header::WWW_AUTHENTICATE,
            "Bearer realm=\"portcullis-admin\", error=\"insufficient_scope\", scope=\"admin\"",
        )
    }

    /// 500: the server could not do what it should have (the detail stays in the log).
    pub fn internal(what: &str) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal-error",
            "Internal error",
            format!("{what}; see the server log"),
        )
    }

    /// The problem document.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "type": format!("urn:portcullis:problem:{}", self.slug),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        })
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = self.to_json().to_string();
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = self.status;
        let h = r.headers_mut();
        h.insert(
            hyper::header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_JSON),
        );
        h.insert(
            hyper::header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        );
        for (name, value) in self.headers {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.append(name, v);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_documents_have_the_rfc_9457_members() {
        let p = Problem::unauthorized("totp-required", "TOTP code required", "send X-PC-TOTP");
        let v = p.to_json();
        assert_eq!(v["type"], "urn:portcullis:problem:totp-required");
        assert_eq!(v["title"], "TOTP code required");
        assert_eq!(v["status"], 401);
        assert_eq!(v["detail"], "send X-PC-TOTP");
        let r = p.into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()["content-type"], PROBLEM_JSON);
        assert!(r.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
    }
}
