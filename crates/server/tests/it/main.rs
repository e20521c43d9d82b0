//! One integration test binary (fast links on small machines); modules by topic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod azure;
mod cli;
mod common;
mod endpoints;
mod failures;
mod input_and_auth;
mod lifecycle;
mod otlp;
mod providers;
mod sdk;
mod secrets;
mod streaming;
mod tls;
mod traces;
mod ui;
mod uploads;
