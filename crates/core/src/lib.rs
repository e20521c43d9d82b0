//! Signalbox's data plane: configuration, resolution, strategies, provider adapters and
//! the request pipeline. No HTTP server lives here; `signalbox` (the binary) owns axum.

pub mod body;
pub mod config;
pub mod error;
pub mod execute;
pub mod explain;
pub mod headers;
pub mod metrics;
pub mod model;
pub mod multipart;
pub mod otlp;
pub mod plan;
pub mod pricing;
pub mod providers;
pub mod resolve;
pub mod sse;
pub mod trace;

pub use config::{ConfigError, ConfigErrors, Loaded, load_file, load_str};
pub use error::{ApiError, ErrorCode};
