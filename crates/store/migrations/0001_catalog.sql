-- Signalbox store, version 1. Portable SQL: runs unchanged on SQLite and PostgreSQL.
-- Times are Unix milliseconds (BIGINT); JSON bodies are TEXT; secrets are never stored in clear.

CREATE TABLE meta (
    id BIGINT PRIMARY KEY,
    -- Bumped by every committed change; nodes compare it to know when to rebuild.
    config_version BIGINT NOT NULL,
    -- AES-256-GCM of a fixed text under the master key: proves the key is the right one.
    master_check TEXT NOT NULL,
    -- The gateway-key hashing key, encrypted under the master key.
    key_hash_secret TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE projects (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    content_capture BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

-- Providers, models, targets, routes and functions: each the JSON of its config-file table.
CREATE TABLE objects (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    project TEXT NOT NULL REFERENCES projects(name),
    body TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE INDEX objects_project ON objects (project);

-- Every saved version of every object (body NULL: deleted). Routes' and functions' history.
CREATE TABLE object_versions (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version BIGINT NOT NULL,
    project TEXT NOT NULL,
    body TEXT,
    author TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (kind, name, version)
);

CREATE TABLE credentials (
    name TEXT PRIMARY KEY,
    project TEXT NOT NULL REFERENCES projects(name),
    ciphertext TEXT NOT NULL,
    hint TEXT NOT NULL,
    version BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL REFERENCES projects(name),
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);
CREATE INDEX api_keys_project ON api_keys (project);

CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT,
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE user_roles (
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    project TEXT NOT NULL REFERENCES projects(name) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (user_name, project)
);

CREATE TABLE admin_tokens (
    id TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    project TEXT,
    action TEXT NOT NULL,
    object TEXT NOT NULL,
    before_json TEXT,
    after_json TEXT
);
CREATE INDEX audit_log_at ON audit_log (at);
