//! Behaviour tests against a real server on loopback.
#![allow(clippy::unwrap_used)]

/// Runs each named `async fn(Transport)` test once per transport, as
/// `websocket::<name>` and `polling::<name>`: one suite, both transports.
macro_rules! over_transports {
    ($($name:ident),* $(,)?) => {
        mod websocket {
            $(
                #[actix_rt::test]
                async fn $name() {
                    super::$name(volley::client::Transport::WebSocket).await
                }
            )*
        }
        mod polling {
            $(
                #[actix_rt::test]
                async fn $name() {
                    super::$name(volley::client::Transport::Polling).await
                }
            )*
        }
    };
}

mod backpressure;
mod broadcast;
mod browser_client;
mod client_limit;
#[cfg(feature = "cluster")]
mod cluster;
mod common;
mod edge;
mod game;
mod heartbeat;
mod js_package;
mod limits;
mod metrics;
mod namespaces;
mod proxy;
mod resume;
mod security;
mod servers;
mod socketio;
mod socketio_input;
mod spec;
mod transports;
mod wire;
