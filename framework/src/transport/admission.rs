//! Who may open a connection, asked by both transports before they create one: the
//! `Origin` check (a browser page of another site must be allowed by name) and the
//! connection limits, in total and per client address.
//!
//! The checks answer plain HTTP: 403 for a foreign origin, 503 when the server or the
//! client's address has no room left, each with a `text/plain` body that says which.
//! A connection that is let in holds a [`ConnectionSlot`] for its whole life; dropping
//! the slot (the transport actor going away) gives the place back.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix_web::dev::RequestHead;
use actix_web::http::{header, StatusCode};
use actix_web::HttpResponse;

use crate::metrics::OpenConnection;
#[cfg(test)]
use crate::session::network_of;
use crate::session::{Connections, Over, Shared};

/// Why a request was not let in. The text is the response body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("origin '{0}' is not allowed to connect to this server")]
    ForeignOrigin(String),
    #[error("server full: too many connections (limit {0})")]
    ServerFull(usize),
    #[error("too many connections from your address (limit {0})")]
    AddressFull(usize),
    #[error("too many new connections from your address (limit {0}/s, burst {1})")]
    AddressRate(u32, u32),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::ForeignOrigin(_) => StatusCode::FORBIDDEN,
            Refusal::ServerFull(_) | Refusal::AddressFull(_) => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::AddressRate(..) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// The whole answer, for a transport that has no response format of its own.
    pub fn response(&self) -> HttpResponse {
        tracing::debug!(refusal = %self, "connection refused");
        HttpResponse::build(self.status())
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}

/// Lets a request through unless it comes from a browser page of another origin that
/// `cors_origins` does not list. Requests without `Origin` (native clients) pass.
/// A refusal is counted as `foreign_origin` in `volley_refused_total`.
pub(crate) fn check_origin(req: &RequestHead, shared: &Shared) -> Result<(), Refusal> {
    let config = &shared.config;
    let Some(origin) = req.headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let origin = origin.to_str().unwrap_or("<not ASCII>");
    let host = req
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri.authority().map(|a| a.as_str()));
    let listed = config
        .cors_origins
        .iter()
        .any(|allowed| allowed == "*" || allowed == origin);
    if listed || host.is_some_and(|host| same_origin(origin, host)) {
        Ok(())
    } else {
        shared.metrics.refused("foreign_origin");
        Err(Refusal::ForeignOrigin(origin.to_owned()))
    }
}

/// Whether `origin` (`scheme://host[:port]`) names the server reached through `host`
/// (the `Host` header, `host[:port]`). The scheme is not compared, only host and
/// port, a missing port being the default of the origin's scheme on both sides: the
/// server cannot always tell whether a proxy in front of it terminated TLS.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false; // `null` (sandboxed pages, file://) and other opaque origins
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "http" | "ws" => "80",
        "https" | "wss" => "443",
        _ => return false,
    };
    let with_port = |a: &str| {
        let a = a.to_ascii_lowercase();
        if has_port(&a) {
            a
        } else {
            format!("{a}:{default_port}")
        }
    };
    !authority.contains('/') && with_port(authority) == with_port(host)
}

fn has_port(authority: &str) -> bool {
    match authority.rfind(']') {
        Some(end) => authority[end..].contains(':'), // [v6]:port
        None => authority.contains(':'),
    }
}

/// A place taken by one open connection; dropping it gives the place back.
pub(crate) struct ConnectionSlot {
    connections: Arc<Connections>,
    address: Option<IpAddr>,
    /// Counts the connection in the metrics once it is admitted.
    _open: Option<OpenConnection>,
}

impl ConnectionSlot {
    /// The client's address (see `client_address`), if known.
    pub fn address(&self) -> Option<IpAddr> {
        self.address
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.connections.total.fetch_sub(1, Ordering::Relaxed);
        if let Some(address) = self.address {
            self.connections.release_from(address);
        }
    }
}

/// Takes a place for a new connection of `transport` (`"websocket"`, `"polling"`)
/// from the client that sent `req`, or says why there is none.
pub(crate) fn reserve(
    req: &RequestHead,
    shared: &Shared,
    transport: &'static str,
) -> Result<ConnectionSlot, Refusal> {
    let config = &shared.config;
    let connections = &shared.connections;
    let taken = connections.total.fetch_add(1, Ordering::Relaxed);
    // From here on the slot gives the place back on every refusal below.
    let mut slot = ConnectionSlot {
        connections: connections.clone(),
        address: None,
        _open: None,
    };
    if taken >= config.max_connections {
        shared.metrics.refused("connection_limit");
        return Err(Refusal::ServerFull(config.max_connections));
    }
    if let Some(address) = client_address(req, &config.trusted_proxies) {
        match connections.admit_from(address) {
            Ok(()) => slot.address = Some(address),
            Err(Over::Open(limit)) => {
                shared.metrics.refused("connection_limit");
                return Err(Refusal::AddressFull(limit));
            }
            Err(Over::Rate(rate)) => {
                shared.metrics.refused("connection_rate");
                return Err(Refusal::AddressRate(rate.per_sec, rate.burst));
            }
        }
    }
    slot._open = Some(shared.metrics.connection_opened(transport));
    Ok(slot)
}

/// The client's address: the TCP peer, or behind trusted proxies the last
/// `X-Forwarded-For` hop that is not one of them. (The per-address limits count it
/// by its network, see `session::network_of`.)
fn client_address(req: &RequestHead, trusted: &[IpAddr]) -> Option<IpAddr> {
    let peer = req.peer_addr?.ip().to_canonical();
    Some(forwarded_client(req, peer, trusted))
}

fn forwarded_client(req: &RequestHead, peer: IpAddr, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    // Each proxy appends the address it got the request from: read right to left,
    // the first address that is not one of our proxies is the client. What lies
    // further left was written by the client and proves nothing.
    let hops: Vec<&str> = req
        .headers
        .get_all("x-forwarded-for")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(address) = hop.parse::<IpAddr>() else {
            break;
        };
        client = address.to_canonical();
        if !trusted.contains(&client) {
            break;
        }
    }
    client
}

/// The reason a refused WebSocket handshake is counted under in
/// `volley_refused_total`: a method other than GET (405), or anything else (400).
pub(crate) fn handshake_refusal(e: &actix_http::ws::HandshakeError) -> &'static str {
    match e {
        actix_http::ws::HandshakeError::GetMethodRequired => "method_not_allowed",
        _ => "bad_handshake",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;
    use actix_web::HttpRequest;

    #[test]
    fn same_origin_compares_host_and_port_not_scheme() {
        assert!(same_origin("http://game.example", "game.example"));
        assert!(same_origin("https://game.example", "game.example"));
        assert!(same_origin("https://Game.Example:443", "game.example"));
        assert!(same_origin("http://127.0.0.1:8080", "127.0.0.1:8080"));
        assert!(same_origin("http://[::1]:8080", "[::1]:8080"));
        assert!(!same_origin("http://127.0.0.1:8081", "127.0.0.1:8080"));
        assert!(!same_origin("https://game.example", "game.example:8443"));
        assert!(!same_origin("http://evil.example", "game.example"));
        assert!(!same_origin("http://game.example.evil", "game.example"));
        assert!(!same_origin("null", "game.example"));
        assert!(!same_origin("file://game.example", "game.example"));
    }

    fn request(peer: &str, forwarded: &[&str]) -> HttpRequest {
        let mut req = TestRequest::default().peer_addr(peer.parse().unwrap());
        for f in forwarded {
            req = req.append_header(("X-Forwarded-For", *f));
        }
        req.to_http_request()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // Not from a proxy: the header is whatever the client wrote.
        let direct = request("203.0.113.9:5000", &["198.51.100.1"]);
        assert_eq!(
            client_address(direct.head(), &[proxy]),
            Some(ip("203.0.113.9"))
        );
        // From our proxy: the last hop it appended.
        let proxied = request("10.0.0.1:5000", &["6.6.6.6, 198.51.100.1"]);
        assert_eq!(
            client_address(proxied.head(), &[proxy]),
            Some(ip("198.51.100.1"))
        );
        // Two of our proxies in a row; headers repeated.
        let chained = request("10.0.0.1:5000", &["198.51.100.1", "10.0.0.1"]);
        assert_eq!(
            client_address(chained.head(), &[proxy]),
            Some(ip("198.51.100.1"))
        );
        // A trusted proxy that sent no header, or garbage: the proxy itself.
        assert_eq!(
            client_address(request("10.0.0.1:5000", &[]).head(), &[proxy]),
            Some(proxy)
        );
        assert_eq!(
            client_address(request("10.0.0.1:5000", &["junk"]).head(), &[proxy]),
            Some(proxy)
        );
    }

    #[test]
    fn ipv6_clients_count_per_64() {
        let a = request("[2001:db8:1:2:aaaa::1]:5000", &[]);
        let b = request("[2001:db8:1:2:bbbb::2]:5000", &[]);
        let (a, b) = (client_address(a.head(), &[]), client_address(b.head(), &[]));
        assert_ne!(a, b, "each keeps its own address");
        assert_eq!(a.map(network_of), b.map(network_of));
        let mapped = request("[::ffff:192.0.2.7]:5000", &[]);
        assert_eq!(
            client_address(mapped.head(), &[]),
            Some("192.0.2.7".parse().unwrap())
        );
    }
}
