-- SQLite only (PostgreSQL keeps its table): the trace table is rebuilt without the index on `id`
-- that its TEXT PRIMARY KEY kept. That b-tree cost every stored trace ~4.5k instructions (a
-- sixth of its row) and served one lookup, which now goes through traces_project_at with
-- the time the UUIDv7 id carries. Rows keep their order (rowid follows the old rowid).
CREATE TABLE traces_v6 (
    id TEXT NOT NULL,
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
    trace_id TEXT,
    content_json TEXT,
    params_json TEXT
);
INSERT INTO traces_v6 SELECT id, project, at, client_request_id, key_id, endpoint, requested_model, layer, route, route_version, assigned_variant, serving_variant, sticky_source, provider, target, model, attempt_count, attempts_json, status, error_code, latency_ms, ttft_ms, input_tokens, output_tokens, cached_tokens, reasoning_tokens, cost_usd, stream, user_id, session_id, trace_id, content_json, params_json FROM traces ORDER BY rowid;
DROP TABLE traces;
ALTER TABLE traces_v6 RENAME TO traces;
CREATE INDEX traces_project_at ON traces (project, at, id);
CREATE INDEX traces_project_route_at ON traces (project, route, at);
