//! `GET /admin/v1/openapi.json`. Object schemas are generated from the config-file types
//! (the same types both the file and the API are validated with), so the document cannot
//! drift from what the API accepts; the operations come from the table below, kept beside
//! the router in `mod.rs`.

use axum::Json;
use serde_json::{Map, Value, json};
use signalbox_core::config::raw::*;
use std::sync::OnceLock;

/// method, path, summary, request schema, success status, tag
type Operation = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
    u16,
    &'static str,
);

const OPERATIONS: &[Operation] = &[
    (
        "post",
        "/login",
        "Exchange a username and password for a token",
        Some("Login"),
        200,
        "auth",
    ),
    (
        "get",
        "/me",
        "The caller's user and roles",
        None,
        200,
        "auth",
    ),
    (
        "get",
        "/settings",
        "Read-only server settings: version, whether traces are stored and their retention",
        None,
        200,
        "auth",
    ),
    (
        "get",
        "/projects",
        "Projects the caller can see",
        None,
        200,
        "projects",
    ),
    (
        "post",
        "/projects",
        "Create a project (admin)",
        Some("Project"),
        201,
        "projects",
    ),
    (
        "get",
        "/projects/{project}",
        "One project",
        None,
        200,
        "projects",
    ),
    (
        "patch",
        "/projects/{project}",
        "Change a project's description or content capture (owner)",
        Some("ProjectPatch"),
        200,
        "projects",
    ),
    (
        "delete",
        "/projects/{project}",
        "Delete an empty project (admin)",
        None,
        204,
        "projects",
    ),
    (
        "get",
        "/projects/{project}/traces",
        "Traces, newest first: filters from, to, status, endpoint, route, variant, provider, model, key, user, session, min_tokens, max_tokens; order, limit, cursor, content",
        None,
        200,
        "traces",
    ),
    (
        "get",
        "/projects/{project}/traces/{id}",
        "One trace with its attempts (and captured content)",
        None,
        200,
        "traces",
    ),
    (
        "get",
        "/projects/{project}/traces/aggregate",
        "Figures by route, variant, provider, model, endpoint or status: requests, error rate, latency and TTFT percentiles, tokens, cost",
        None,
        200,
        "traces",
    ),
    (
        "get",
        "/projects/{project}/traces/export",
        "Every matching trace as JSON lines (content=false leaves captured content out)",
        None,
        200,
        "traces",
    ),
    (
        "get",
        "/projects/{project}/{collection}/{name}/experiment",
        "Per-variant figures of an experiment route or function, beside its weights",
        None,
        200,
        "traces",
    ),
    (
        "post",
        "/projects/{project}/explain",
        "How a model string resolves and the attempt plan; calls no provider",
        Some("Explain"),
        200,
        "routing",
    ),
    (
        "get",
        "/projects/{project}/export",
        "The project's store objects as config-file TOML",
        None,
        200,
        "projects",
    ),
    (
        "get",
        "/projects/{project}/audit",
        "The project's audit log (owner)",
        None,
        200,
        "audit",
    ),
    (
        "get",
        "/projects/{project}/credentials",
        "Credentials, masked",
        None,
        200,
        "credentials",
    ),
    (
        "post",
        "/projects/{project}/credentials",
        "Store a credential (encrypted; never returned)",
        Some("Credential"),
        201,
        "credentials",
    ),
    (
        "put",
        "/projects/{project}/credentials/{name}",
        "Create or replace a credential (If-Match: a stale ETag gets 412)",
        Some("Credential"),
        200,
        "credentials",
    ),
    (
        "delete",
        "/projects/{project}/credentials/{name}",
        "Delete an unused credential (If-Match: a stale ETag gets 412)",
        None,
        204,
        "credentials",
    ),
    (
        "get",
        "/projects/{project}/keys",
        "Gateway keys (prefixes only)",
        None,
        200,
        "keys",
    ),
    (
        "post",
        "/projects/{project}/keys",
        "Create a gateway key; the key is in this answer only",
        Some("NewKey"),
        201,
        "keys",
    ),
    (
        "delete",
        "/projects/{project}/keys/{id}",
        "Revoke a gateway key",
        None,
        204,
        "keys",
    ),
    (
        "post",
        "/projects/{project}/keys/{id}/rotate",
        "Replace a key; the old one works for a grace period",
        Some("Rotate"),
        201,
        "keys",
    ),
    (
        "post",
        "/projects/{project}/providers/{name}/test",
        "Test connection: a status and model ids",
        None,
        200,
        "providers",
    ),
    (
        "get",
        "/projects/{project}/{collection}",
        "List providers, models, targets, routes or functions (file and store)",
        None,
        200,
        "catalog",
    ),
    (
        "post",
        "/projects/{project}/{collection}",
        "Create an object (body: its config-file table plus `name`)",
        None,
        201,
        "catalog",
    ),
    (
        "get",
        "/projects/{project}/{collection}/{name}",
        "One object, with its ETag",
        None,
        200,
        "catalog",
    ),
    (
        "put",
        "/projects/{project}/{collection}/{name}",
        "Create or replace an object (If-Match: a stale ETag gets 412)",
        None,
        200,
        "catalog",
    ),
    (
        "patch",
        "/projects/{project}/{collection}/{name}",
        "JSON merge patch of an object",
        None,
        200,
        "catalog",
    ),
    (
        "delete",
        "/projects/{project}/{collection}/{name}",
        "Delete an object no other object uses",
        None,
        204,
        "catalog",
    ),
    (
        "get",
        "/projects/{project}/{collection}/{name}/history",
        "Numbered versions with author, time and diff",
        None,
        200,
        "catalog",
    ),
    (
        "post",
        "/projects/{project}/{collection}/{name}/rollback",
        "Make a past version current again",
        Some("Rollback"),
        200,
        "catalog",
    ),
    (
        "put",
        "/projects/{project}/{collection}/{name}/variants/{variant}",
        "Create or replace a variant of a route or function",
        Some("Variant"),
        200,
        "catalog",
    ),
    (
        "delete",
        "/projects/{project}/{collection}/{name}/variants/{variant}",
        "Remove a variant",
        None,
        200,
        "catalog",
    ),
    (
        "get",
        "/users",
        "Users and their roles (admin)",
        None,
        200,
        "accounts",
    ),
    (
        "post",
        "/users",
        "Create a user with roles per project (admin)",
        Some("User"),
        201,
        "accounts",
    ),
    (
        "delete",
        "/users/{name}",
        "Delete a user (admin)",
        None,
        204,
        "accounts",
    ),
    (
        "put",
        "/users/{name}/roles",
        "Replace a user's roles: {project: owner|editor|viewer} (admin)",
        None,
        204,
        "accounts",
    ),
    (
        "post",
        "/users/{name}/password",
        "Set a password; revokes the user's tokens",
        Some("Password"),
        204,
        "accounts",
    ),
    (
        "get",
        "/tokens",
        "Admin tokens (the caller's; all for the admin)",
        None,
        200,
        "accounts",
    ),
    (
        "post",
        "/tokens",
        "Create a token with the user's rights; shown once",
        Some("Token"),
        201,
        "accounts",
    ),
    (
        "delete",
        "/tokens/{id}",
        "Revoke a token",
        None,
        204,
        "accounts",
    ),
    (
        "get",
        "/audit",
        "The whole audit log (admin)",
        None,
        200,
        "audit",
    ),
];

/// The catalog collections and the schema of their objects.
const COLLECTIONS: &[(&str, &str)] = &[
    ("providers", "Provider"),
    ("models", "Model"),
    ("targets", "Target"),
    ("routes", "Route"),
    ("functions", "Function"),
];

fn object_schemas() -> Map<String, Value> {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    generator.subschema_for::<RawProvider>();
    generator.subschema_for::<RawModel>();
    generator.subschema_for::<RawTarget>();
    generator.subschema_for::<RawRoute>();
    generator.subschema_for::<RawFunction>();
    generator.subschema_for::<RawVariant>();
    generator.take_definitions(true).into_iter().collect()
}

fn build() -> Value {
    let mut schemas = object_schemas();
    let extra = json!({
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {"message": {"type": "string"}, "type": {"type": "string"},
                "param": {"type": ["string", "null"], "description": "Field path of the problem, e.g. routes.x.targets[1]"},
                "code": {"type": "string", "enum": ["bad_request", "invalid_config", "auth", "forbidden", "not_found", "conflict", "precondition_failed", "rate_limit", "store_unavailable", "internal", "wrong_endpoint", "model_not_found"]},
                "details": {"type": "array", "items": {"type": "object", "properties": {"param": {"type": "string"}, "message": {"type": "string"}}}}}}}},
        "Login": {"type": "object", "required": ["username", "password"], "additionalProperties": false,
            "properties": {"username": {"type": "string"}, "password": {"type": "string"}}},
        "ProjectPatch": {"type": "object", "additionalProperties": false,
            "properties": {"description": {"type": "string"}, "content_capture": {"type": "boolean"}}},
        "Project": {"type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {"name": {"type": "string"}, "description": {"type": "string"}}},
        "Explain": {"type": "object", "required": ["model"], "additionalProperties": false,
            "properties": {"model": {"type": "string"}, "endpoint": {"type": "string", "enum": ["chat", "embeddings", "audio_speech", "audio_transcription", "image_generation"]}}},
        "Credential": {"type": "object", "required": ["value"], "additionalProperties": false,
            "properties": {"name": {"type": "string"}, "value": {"type": "string", "writeOnly": true}}},
        "NewKey": {"type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {"name": {"type": "string"}, "expires_at": {"type": "string", "format": "date-time"}, "expires_in_seconds": {"type": "integer", "minimum": 1}}},
        "Rotate": {"type": "object", "additionalProperties": false,
            "properties": {"grace_seconds": {"type": "integer", "minimum": 0, "maximum": 2592000, "default": 3600}}},
        "Rollback": {"type": "object", "required": ["version"], "additionalProperties": false,
            "properties": {"version": {"type": "integer"}}},
        "User": {"type": "object", "required": ["name", "password"], "additionalProperties": false,
            "properties": {"name": {"type": "string"}, "password": {"type": "string", "minLength": 8, "writeOnly": true},
                "roles": {"type": "object", "additionalProperties": {"type": "string", "enum": ["owner", "editor", "viewer"]}}}},
        "Password": {"type": "object", "required": ["password"], "additionalProperties": false,
            "properties": {"password": {"type": "string", "minLength": 8, "writeOnly": true},
                "current_password": {"type": "string", "writeOnly": true,
                    "description": "required when a user other than the admin changes their own"}}},
        "Token": {"type": "object", "required": ["name"], "additionalProperties": false,
            "properties": {"name": {"type": "string"}, "user": {"type": "string"}, "expires_in_seconds": {"type": "integer", "minimum": 1}}},
    });
    if let Some(m) = extra.as_object() {
        for (k, v) in m {
            schemas.insert(k.clone(), v.clone());
        }
    }
    let mut paths = Map::new();
    for (method, path, summary, body, status, tag) in OPERATIONS {
        // Collections are spelled out, each with its own object schema.
        let expanded: Vec<(String, Option<String>)> = if path.contains("{collection}") {
            COLLECTIONS
                .iter()
                .filter(|(c, _)| {
                    !(path.contains("/variants/") || path.ends_with("/experiment"))
                        || matches!(*c, "routes" | "functions")
                })
                .map(|(c, schema)| {
                    let body = match body {
                        Some(b) => Some(b.to_string()),
                        None if matches!(*method, "post" | "put" | "patch") => {
                            Some(schema.to_string())
                        }
                        None => None,
                    };
                    (path.replace("{collection}", c), body)
                })
                .collect()
        } else {
            vec![(path.to_string(), body.map(str::to_string))]
        };
        for (path, body) in expanded {
            let params: Vec<Value> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
                .collect();
            let mut op = json!({
                "summary": summary,
                "tags": [tag],
                "parameters": params,
                "responses": {
                    status.to_string(): {"description": "success"},
                    "default": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            });
            if path == "/login" {
                op["security"] = json!([]);
            }
            if let Some(name) = body {
                op["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{name}")}}}});
            }
            let entry = paths
                .entry(format!("/admin/v1{path}"))
                .or_insert_with(|| json!({}));
            entry[*method] = op;
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Signalbox admin API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Manage projects, providers, credentials, targets, routes, functions, gateway keys and accounts. Every write is validated as a whole config and audited; errors use the OpenAI error envelope.",
        },
        "security": [{"bearer": []}, {"dashboardSession": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "dashboardSession": {
                    "type": "apiKey",
                    "in": "cookie",
                    "name": "signalbox_session",
                    "description": "The dashboard's session (POST /ui/login). Every request with it that is not GET, HEAD or OPTIONS must also send the session's CSRF token (the signalbox_csrf cookie) in the x-signalbox-csrf header.",
                },
            },
            "schemas": schemas,
        },
        "paths": paths,
    })
}

pub async fn document() -> Json<Value> {
    static DOC: OnceLock<Value> = OnceLock::new();
    Json(DOC.get_or_init(build).clone())
}
