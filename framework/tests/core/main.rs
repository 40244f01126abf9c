//! Behaviour tests against a real server on loopback.

mod broadcast;
mod common;
mod heartbeat;
mod limits;
mod namespaces;
