//! The `signalbox` binary's library: HTTP surface, live config and serving.

pub mod app;
pub mod live;
pub mod serve;
