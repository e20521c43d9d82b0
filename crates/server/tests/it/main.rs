//! One integration test binary (fast links on small machines); modules by topic.

mod common;
mod failures;
mod input_and_auth;
mod lifecycle;
mod secrets;
mod streaming;
mod sdk;
