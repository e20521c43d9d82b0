-- One row per request (SPEC section 6). The serving attempt's provider, target and model are
-- columns for filtering; every attempt is kept in attempts_json.

CREATE TABLE traces (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    at BIGINT NOT NULL,
    client_request_id TEXT,
    key_id TEXT,
    endpoint TEXT NOT NULL,
    requested_model TEXT,
    layer TEXT,
    route TEXT,
    route_version BIGINT,
    assigned_variant TEXT,
    serving_variant TEXT,
    sticky_source TEXT,
    provider TEXT,
    target TEXT,
    model TEXT,
    attempt_count BIGINT NOT NULL,
    attempts_json TEXT NOT NULL,
    status BIGINT NOT NULL,
    error_code TEXT,
    latency_ms DOUBLE PRECISION NOT NULL,
    ttft_ms DOUBLE PRECISION,
    input_tokens BIGINT,
    output_tokens BIGINT,
    cached_tokens BIGINT,
    reasoning_tokens BIGINT,
    cost_usd DOUBLE PRECISION,
    stream BIGINT NOT NULL,
    user_id TEXT,
    session_id TEXT,
    trace_id TEXT
);
CREATE INDEX traces_project_at ON traces (project, at, id);
CREATE INDEX traces_project_route_at ON traces (project, route, at);
CREATE INDEX traces_at ON traces (at);
