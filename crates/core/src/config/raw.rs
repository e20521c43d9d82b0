//! The config file as written: serde types with unknown keys rejected.
//! Nothing here is validated beyond its TOML type; see `validate.rs`.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub store: RawStore,
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub providers: BTreeMap<String, RawProvider>,
    #[serde(default)]
    pub models: BTreeMap<String, RawModel>,
    #[serde(default)]
    pub targets: BTreeMap<String, RawTarget>,
    #[serde(default)]
    pub routes: BTreeMap<String, RawRoute>,
    #[serde(default)]
    pub functions: BTreeMap<String, RawFunction>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub api_keys: BTreeMap<String, RawApiKey>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub auth: Option<String>,
    pub request_timeout_ms: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub max_upload_bytes: Option<u64>,
    pub max_in_flight: Option<u64>,
    pub drain_delay_ms: Option<u64>,
    pub shutdown_timeout_ms: Option<u64>,
    pub admin_listen: Option<String>,
    pub metrics_token: Option<String>,
    pub ca_bundle: Option<String>,
    pub allow_link_local_upstreams: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    pub url: Option<String>,
    pub data_dir: Option<String>,
    pub master_key_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub provider: Option<RawTimeouts>,
}

/// Timeouts; every level (defaults, provider, model, target) may set any of them.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeouts {
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProvider {
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub models: Option<Vec<String>>,
    pub credential: Option<String>,
    pub passthrough: Option<String>,
    pub auth_type: Option<String>,
    pub auth_header_name: Option<String>,
    pub api_version: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub project: Option<String>,
    /// `mock` kind only: delay before answering.
    pub latency_ms: Option<u64>,
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub endpoint: Option<String>,
    pub input_price: Option<f64>,
    pub output_price: Option<f64>,
    pub cached_input_price: Option<f64>,
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub model: Option<String>,
    pub provider: Option<String>,
    pub credential: Option<String>,
    pub weight: Option<u32>,
    pub deployment: Option<String>,
    pub project: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub timeout_ms: Option<u64>,
    pub first_byte_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawTargetRef {
    Name(String),
    Weighted(RawWeightedRef),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWeightedRef {
    pub target: String,
    pub weight: Option<u32>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_retries: Option<u32>,
    pub backoff_base_ms: Option<u64>,
    pub backoff_max_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    pub retry: Option<RawRetry>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub strategy: Option<String>,
    #[serde(default)]
    pub targets: Vec<RawTargetRef>,
    pub retry: Option<RawRetry>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawVariant {
    pub target: Option<String>,
    pub model: Option<String>,
    pub weight: Option<u32>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub seed: Option<i64>,
    pub stop: Option<toml::Value>,
    pub presence_penalty: Option<f64>,
    pub frequency_penalty: Option<f64>,
    pub reasoning_effort: Option<String>,
    pub response_format: Option<toml::Value>,
    pub params: Option<toml::Table>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub endpoint: Option<String>,
    #[serde(default)]
    pub models: Vec<String>,
    pub strategy: Option<String>,
    pub targets: Option<Vec<RawTargetRef>>,
    pub steps: Option<Vec<RawStep>>,
    pub retry: Option<RawRetry>,
    pub variants: Option<BTreeMap<String, RawVariant>>,
    pub sticky: Option<String>,
    pub project: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFunction {
    pub endpoint: Option<String>,
    pub strategy: Option<String>,
    pub route: Option<String>,
    pub models: Option<Vec<String>>,
    pub targets: Option<Vec<RawTargetRef>>,
    pub steps: Option<Vec<RawStep>>,
    pub variants: Option<BTreeMap<String, RawVariant>>,
    pub retry: Option<RawRetry>,
    pub sticky: Option<String>,
    pub project: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApiKey {
    pub key: Option<String>,
    pub project: Option<String>,
}
