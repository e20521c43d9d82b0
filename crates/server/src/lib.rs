//! The `signalbox` binary's library: HTTP surface, live config and serving.

pub mod admin;
pub mod app;
mod coalesce;
pub mod live;
pub mod serve;
pub mod setup;
pub mod transfer;
pub mod ui;
