//! Behaviour tests against a real server on loopback.
#![allow(clippy::unwrap_used)]

mod broadcast;
mod common;
mod game;
mod heartbeat;
mod limits;
mod namespaces;
mod proxy;
mod resume;
