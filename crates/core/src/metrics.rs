//! Prometheus metrics, named after the OpenTelemetry GenAI conventions. They are derived from
//! trace records by the background trace writer, never on the request path; the only figures
//! a request touches are the in-flight counter and, when the trace queue is full, the dropped
//! counter. Labels are bounded by the config: route label, provider id, resolved model,
//! operation and status class; never the caller's raw `model` string.

use crate::trace::TraceRecord;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    gen_ai_operation_name: &'static str,
    route: String,
    gen_ai_provider_name: String,
    gen_ai_response_model: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    gen_ai_operation_name: &'static str,
    route: String,
    gen_ai_provider_name: String,
    gen_ai_response_model: String,
    gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    gen_ai_operation_name: &'static str,
    route: String,
    gen_ai_provider_name: String,
    gen_ai_response_model: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    gen_ai_provider_name: String,
    gen_ai_response_model: String,
    status_class: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    gen_ai_operation_name: &'static str,
    route: String,
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type HistFamily<L> = Family<L, Histogram, fn() -> Histogram>;

// Buckets as the GenAI semantic conventions advise.
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
const TTFT_BUCKETS: [f64; 16] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

fn duration_hist() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}
fn token_hist() -> Histogram {
    Histogram::new(TOKEN_BUCKETS)
}
fn ttft_hist() -> Histogram {
    Histogram::new(TTFT_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    operation_duration: HistFamily<OpLabels>,
    token_usage: HistFamily<TokenLabels>,
    ttft: HistFamily<ModelLabels>,
    upstream_duration: HistFamily<UpstreamLabels>,
    errors: Family<ErrorLabels, Counter>,
    retries: Family<RouteLabels, Counter>,
    fallbacks: Family<RouteLabels, Counter>,
    degraded: Family<RouteLabels, Counter>,
    cost: Family<ModelLabels, Counter<f64>>,
    cost_unknown: Family<ModelLabels, Counter>,
    /// Incremented where a record is dropped (the trace queue was full).
    pub traces_dropped: Counter,
    pub traces_written: Counter,
    pub trace_write_errors: Counter,
    /// Captured content left off a record: the queue held its byte budget of content.
    pub trace_content_dropped: Counter,
    pub in_flight: Gauge,
    pub config_version: Gauge,
    cache: std::sync::Mutex<SeriesCache>,
}

/// Handles to the series a record of one (operation, route, provider, model) touches, each
/// created in its family on first use (so `/metrics` shows only series that happened).
#[derive(Default)]
struct Series {
    duration: [Option<Histogram>; 6],
    tokens: [Option<Histogram>; 3],
    ttft: Option<Histogram>,
    cost: Option<Counter<f64>>,
    cost_unknown: Option<Counter>,
}

/// Series handles by their labels joined into one string (labels come from the config, so
/// this stays small; it is emptied past [`SeriesCache::MAX`] entries all the same).
#[derive(Default)]
struct SeriesCache {
    key: String,
    series: std::collections::HashMap<Box<str>, Series, foldhash::fast::RandomState>,
    upstream: std::collections::HashMap<Box<str>, Histogram, foldhash::fast::RandomState>,
}

impl SeriesCache {
    const MAX: usize = 4096;

    fn join(key: &mut String, parts: &[&str]) {
        key.clear();
        for p in parts {
            key.push_str(p);
            key.push('\u{1}');
        }
    }

    fn series(&mut self, parts: &[&str]) -> &mut Series {
        Self::join(&mut self.key, parts);
        Self::entry(&mut self.series, &self.key, Series::default)
    }

    fn upstream(&mut self, parts: &[&str], make: impl FnOnce() -> Histogram) -> &Histogram {
        Self::join(&mut self.key, parts);
        Self::entry(&mut self.upstream, &self.key, make)
    }

    /// The value under `key`, made on first use (no allocation when it is there already).
    fn entry<'a, V>(
        map: &'a mut std::collections::HashMap<Box<str>, V, foldhash::fast::RandomState>,
        key: &str,
        make: impl FnOnce() -> V,
    ) -> &'a mut V {
        if !map.contains_key(key) {
            if map.len() >= Self::MAX {
                map.clear();
            }
            map.insert(key.into(), make());
        }
        map.get_mut(key)
            .unwrap_or_else(|| unreachable!("inserted above"))
    }
}

fn class_index(class: &str) -> usize {
    match class {
        "1xx" => 0,
        "2xx" => 1,
        "3xx" => 2,
        "4xx" => 3,
        "5xx" => 4,
        _ => 5,
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn status_class(status: u16) -> &'static str {
    match status {
        0..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "chat" => "chat",
        "embeddings" => "embeddings",
        "audio_speech" => "audio_speech",
        "audio_transcription" => "audio_transcription",
        "image_generation" => "image_generation",
        _ => "other",
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let operation_duration =
            HistFamily::<OpLabels>::new_with_constructor(duration_hist as fn() -> Histogram);
        let token_usage =
            HistFamily::<TokenLabels>::new_with_constructor(token_hist as fn() -> Histogram);
        let ttft = HistFamily::<ModelLabels>::new_with_constructor(ttft_hist as fn() -> Histogram);
        let upstream_duration =
            HistFamily::<UpstreamLabels>::new_with_constructor(duration_hist as fn() -> Histogram);
        let m = Metrics {
            operation_duration,
            token_usage,
            ttft,
            upstream_duration,
            errors: Family::default(),
            retries: Family::default(),
            fallbacks: Family::default(),
            degraded: Family::default(),
            cost: Family::default(),
            cost_unknown: Family::default(),
            traces_dropped: Counter::default(),
            traces_written: Counter::default(),
            trace_write_errors: Counter::default(),
            trace_content_dropped: Counter::default(),
            in_flight: Gauge::default(),
            config_version: Gauge::default(),
            cache: Default::default(),
            registry: Registry::default(),
        };
        registry.register_with_unit(
            "gen_ai_client_operation_duration",
            "Duration of a gateway operation, request received to answer complete",
            Unit::Seconds,
            m.operation_duration.clone(),
        );
        registry.register(
            "gen_ai_client_token_usage",
            "Tokens used per operation, by type (input, output, cached_input)",
            m.token_usage.clone(),
        );
        registry.register_with_unit(
            "gen_ai_server_time_to_first_token",
            "Time to the first streamed token",
            Unit::Seconds,
            m.ttft.clone(),
        );
        registry.register_with_unit(
            "signalbox_upstream_request_duration",
            "Duration of each upstream attempt until its outcome was known",
            Unit::Seconds,
            m.upstream_duration.clone(),
        );
        registry.register(
            "signalbox_errors",
            "Requests answered with an error, by error code",
            m.errors.clone(),
        );
        registry.register(
            "signalbox_retries",
            "Same-target retries",
            m.retries.clone(),
        );
        registry.register(
            "signalbox_fallbacks",
            "Attempts moved to another target after a failure",
            m.fallbacks.clone(),
        );
        registry.register(
            "signalbox_degraded_attempts",
            "Extra attempts made in degraded mode",
            m.degraded.clone(),
        );
        registry.register(
            "signalbox_cost_usd",
            "Cost of served requests in USD, where the price is known",
            m.cost.clone(),
        );
        registry.register(
            "signalbox_cost_unknown",
            "Requests with usage but no known price (their cost is left empty)",
            m.cost_unknown.clone(),
        );
        registry.register(
            "signalbox_traces_dropped",
            "Trace records lost: the queue was full, or the store refused their batch",
            m.traces_dropped.clone(),
        );
        registry.register(
            "signalbox_trace_content_dropped",
            "Traces whose captured request and answer text was left off: the records waiting to be written already held the queue's content budget",
            m.trace_content_dropped.clone(),
        );
        registry.register(
            "signalbox_traces_written",
            "Trace records handed to the writer and stored",
            m.traces_written.clone(),
        );
        registry.register(
            "signalbox_trace_write_errors",
            "Trace batches the store refused (their records are lost)",
            m.trace_write_errors.clone(),
        );
        registry.register(
            "signalbox_requests_in_flight",
            "Requests being served now",
            m.in_flight.clone(),
        );
        registry.register(
            "signalbox_config_version",
            "Version of the live config snapshot",
            m.config_version.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Fold one trace record into the metrics (called by the trace writer). The series of a
    /// (operation, route, provider, model) are looked up in the families once and kept in a
    /// small cache keyed without allocating, so a record costs a few atomic adds, not a
    /// dozen label-set clones and SipHash lookups.
    pub fn observe(&self, r: &TraceRecord) {
        let op = operation(r.endpoint);
        let route = r.route.as_deref().unwrap_or_default();
        let last = r.attempts.last();
        let provider = last
            .map(|a| a.target.provider.id.as_str())
            .unwrap_or_default();
        let model = last.map(|a| a.target.model.as_str()).unwrap_or_default();
        let mut guard = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let cache = &mut *guard;
        let labels = || ModelLabels {
            gen_ai_operation_name: op,
            route: route.to_string(),
            gen_ai_provider_name: provider.to_string(),
            gen_ai_response_model: model.to_string(),
        };
        let series = cache.series(&[op, route, provider, model]);
        let class = status_class(r.status);
        series.duration[class_index(class)]
            .get_or_insert_with(|| {
                let l = labels();
                self.operation_duration
                    .get_or_create(&OpLabels {
                        gen_ai_operation_name: l.gen_ai_operation_name,
                        route: l.route,
                        gen_ai_provider_name: l.gen_ai_provider_name,
                        gen_ai_response_model: l.gen_ai_response_model,
                        status_class: class,
                    })
                    .clone()
            })
            .observe(r.latency_ms / 1000.0);
        if let Some(u) = &r.usage {
            for (i, (kind, n)) in [
                ("input", u.prompt_tokens),
                ("output", u.completion_tokens),
                ("cached_input", u.cached_tokens()),
            ]
            .into_iter()
            .enumerate()
            {
                if kind == "cached_input" && n == 0 {
                    continue;
                }
                series.tokens[i]
                    .get_or_insert_with(|| {
                        let l = labels();
                        self.token_usage
                            .get_or_create(&TokenLabels {
                                gen_ai_operation_name: l.gen_ai_operation_name,
                                route: l.route,
                                gen_ai_provider_name: l.gen_ai_provider_name,
                                gen_ai_response_model: l.gen_ai_response_model,
                                gen_ai_token_type: kind,
                            })
                            .clone()
                    })
                    .observe(n as f64);
            }
            match r.cost_usd {
                Some(c) => {
                    series
                        .cost
                        .get_or_insert_with(|| self.cost.get_or_create(&labels()).clone())
                        .inc_by(c);
                }
                None => {
                    series
                        .cost_unknown
                        .get_or_insert_with(|| self.cost_unknown.get_or_create(&labels()).clone())
                        .inc();
                }
            }
        }
        if let Some(t) = r.ttft_ms {
            series
                .ttft
                .get_or_insert_with(|| self.ttft.get_or_create(&labels()).clone())
                .observe(t / 1000.0);
        }
        // Rarer outcomes go to their families directly.
        if let Some(code) = r.error_code {
            self.errors
                .get_or_create(&ErrorLabels {
                    gen_ai_operation_name: op,
                    route: route.to_string(),
                    error_type: code,
                })
                .inc();
        }
        let rl = || RouteLabels {
            route: route.to_string(),
        };
        let mut previous: Option<&str> = None;
        for a in &r.attempts {
            let class = a.status.map(status_class).unwrap_or("none");
            cache
                .upstream(&[&a.target.provider.id, &a.target.model, class], || {
                    self.upstream_duration
                        .get_or_create(&UpstreamLabels {
                            gen_ai_provider_name: a.target.provider.id.clone(),
                            gen_ai_response_model: a.target.model.clone(),
                            status_class: class,
                        })
                        .clone()
                })
                .observe(a.latency_ms / 1000.0);
            if a.retry > 0 {
                self.retries.get_or_create(&rl()).inc();
            }
            if a.degraded {
                self.degraded.get_or_create(&rl()).inc();
            }
            if previous.is_some_and(|p| p != a.target.name) && a.retry == 0 {
                self.fallbacks.get_or_create(&rl()).inc();
            }
            previous = Some(&a.target.name);
        }
    }

    /// The Prometheus text exposition (OpenMetrics).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::Usage;

    fn record(route: &str, status: u16, prompt_tokens: u64) -> TraceRecord {
        TraceRecord {
            endpoint: "chat",
            route: Some(route.to_string()),
            status,
            latency_ms: 12.0,
            usage: Some(Usage {
                prompt_tokens,
                completion_tokens: 1,
                total_tokens: prompt_tokens + 1,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// The value of the sample named `name` whose labels include every one of `labels`.
    fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}{{")) && labels.iter().all(|x| l.contains(x)))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }

    #[test]
    fn records_count_in_their_own_series_even_after_the_series_cache_is_emptied() {
        let m = Metrics::new();
        for _ in 0..3 {
            m.observe(&record("a", 200, 5));
        }
        m.observe(&record("b", 200, 7));
        m.observe(&record("a", 502, 0));
        // More distinct label sets than the cache keeps: it is emptied on the way.
        for i in 0..SeriesCache::MAX + 10 {
            m.observe(&record(&format!("r{i}"), 200, 1));
        }
        m.observe(&record("a", 200, 5));
        let text = m.encode();
        let count = "gen_ai_client_operation_duration_seconds_count";
        assert_eq!(
            sample(&text, count, &["route=\"a\"", "status_class=\"2xx\""]),
            Some(4.0)
        );
        assert_eq!(
            sample(&text, count, &["route=\"a\"", "status_class=\"5xx\""]),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, count, &["route=\"b\"", "status_class=\"2xx\""]),
            Some(1.0)
        );
        let tokens = "gen_ai_client_token_usage_sum";
        assert_eq!(
            sample(
                &text,
                tokens,
                &["route=\"a\"", "gen_ai_token_type=\"input\""]
            ),
            Some(20.0)
        );
        assert_eq!(
            sample(
                &text,
                tokens,
                &["route=\"b\"", "gen_ai_token_type=\"input\""]
            ),
            Some(7.0)
        );
        // No price known: counted as unknown cost, once per record with usage.
        assert_eq!(
            sample(&text, "signalbox_cost_unknown_total", &["route=\"a\""]),
            Some(5.0)
        );
    }
}
