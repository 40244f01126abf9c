//! The `GET /metrics` route: who may scrape ([`MetricsRoute`]) and the handler.

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::session::Shared;

/// Who may read `GET /metrics`, and where it is served. Set it with
/// [`crate::VolleyBuilder::metrics`]; without it there is no metrics route.
///
/// A request must pass every check that is set: its TCP peer address must be listed
/// in `allowed` (else `403`), and it must carry `Authorization: Bearer <token>` (else
/// `401`; compared in constant time). With neither set, only loopback peers are
/// served. The peer is the TCP peer: behind a reverse proxy, use the token.
///
/// ```
/// use volley::{MetricsRoute, Volley};
///
/// let builder = Volley::builder().metrics(MetricsRoute::token("s3cret-scrape-token"));
/// ```
#[derive(Clone)]
pub struct MetricsRoute {
    /// Path of the route. Default `/metrics`.
    pub path: String,
    /// The bearer token a scrape must carry. Default: none.
    pub token: Option<String>,
    /// Peer addresses allowed to scrape. Default: none (any peer, when a token is
    /// set; loopback only, when not).
    pub allowed: Vec<IpAddr>,
}

impl Default for MetricsRoute {
    /// `/metrics`, for loopback peers only.
    fn default() -> Self {
        MetricsRoute {
            path: "/metrics".to_owned(),
            token: None,
            allowed: Vec::new(),
        }
    }
}

impl MetricsRoute {
    /// `/metrics`, for scrapes that carry `Authorization: Bearer <token>`.
    pub fn token(token: &str) -> Self {
        MetricsRoute {
            token: Some(token.to_owned()),
            ..MetricsRoute::default()
        }
    }

    /// `/metrics`, for scrapes from these peer addresses only.
    pub fn from_addresses(allowed: &[IpAddr]) -> Self {
        MetricsRoute {
            allowed: allowed.to_vec(),
            ..MetricsRoute::default()
        }
    }

    /// Why `req` may not scrape, if it may not: the status and a text body.
    fn refusal(&self, req: &HttpRequest) -> Option<HttpResponse> {
        let peer = req.peer_addr().map(|a| a.ip().to_canonical());
        let listed = match (&self.token, self.allowed.is_empty()) {
            (_, false) => peer.is_some_and(|p| self.allowed.contains(&p)),
            (Some(_), true) => true,
            (None, true) => peer.is_some_and(|p| p.is_loopback()),
        };
        if !listed {
            return Some(HttpResponse::Forbidden().body("metrics: address not allowed\n"));
        }
        let Some(token) = &self.token else {
            return None;
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if same_secret(given.as_bytes(), token.as_bytes()) {
            None
        } else {
            Some(
                HttpResponse::Unauthorized()
                    .insert_header((header::WWW_AUTHENTICATE, "Bearer"))
                    .body("metrics: missing or wrong bearer token\n"),
            )
        }
    }
}

impl std::fmt::Debug for MetricsRoute {
    // The token is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsRoute")
            .field("path", &self.path)
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("allowed", &self.allowed)
            .finish()
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(given: &[u8], expected: &[u8]) -> bool {
    let differ = given
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    given.len() == expected.len() && differ == 0
}

/// `GET /metrics`: checks the caller, reads the figures kept elsewhere, encodes.
pub(crate) async fn scrape(req: HttpRequest, shared: web::Data<Arc<Shared>>) -> HttpResponse {
    let Some(route) = &shared.config.metrics else {
        return HttpResponse::NotFound().finish();
    };
    if let Some(refused) = route.refusal(&req) {
        return refused;
    }
    let over_client_limit = shared
        .over_client_limit
        .load(std::sync::atomic::Ordering::Relaxed);
    match shared.metrics.encode(over_client_limit).await {
        Ok(body) => HttpResponse::Ok()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(body),
        Err(_) => HttpResponse::InternalServerError().body("metrics: encoding failed\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abd", b"abc"));
        assert!(!same_secret(b"ab", b"abc"));
        assert!(!same_secret(b"", b"abc"));
    }
}
