//! The admin REST API under `/admin/v1`: the catalog, credentials, gateway keys, accounts,
//! history, explain and audit. Every write goes through the store's checked transaction, whose
//! check builds and validates the complete next snapshot; the snapshot is swapped in right
//! after the commit, so the change serves here at once and on other nodes within a second.

mod error;
mod limiter;
pub mod openapi;
pub mod session;
pub mod sync;
mod traces;

pub use error::AdminError;

use crate::live::Live;
use axum::extract::{ConnectInfo, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use signalbox_core::config::raw::RawConfig;
use signalbox_core::config::{Catalog, ConfigErrors, ObjectKind};
use signalbox_core::model::{EndpointKind, Snapshot};
use signalbox_store::{Actor, Change, Committed, Principal, Store, StoreError};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// How long a login token lives.
const LOGIN_TTL: Duration = Duration::from_secs(12 * 3600);

#[derive(Clone)]
pub struct AdminState {
    pub store: Arc<Store>,
    pub live: Arc<Live>,
    limiter: Arc<limiter::LoginLimiter>,
    /// `[store] traces` and `trace_retention_days`, shown by `GET /settings`.
    traces: (bool, u64),
}

impl AdminState {
    pub fn new(store: Arc<Store>, live: Arc<Live>) -> Self {
        AdminState {
            store,
            live,
            limiter: Arc::new(limiter::LoginLimiter::new(10, Duration::from_secs(60))),
            traces: (true, 30),
        }
    }

    /// Whether traces are stored, and for how many days (0: forever), as `GET /settings` says.
    pub fn with_traces(mut self, stored: bool, retention_days: u64) -> Self {
        self.traces = (stored, retention_days);
        self
    }

    /// Commit `changes` only if the whole next config validates; then serve it at once.
    pub async fn commit(
        &self,
        actor: &Actor,
        changes: Vec<Change>,
    ) -> Result<Committed, AdminError> {
        self.commit_guarded(actor, changes, None).await
    }

    /// [`AdminState::commit`], refused (403) when `below_owner_in` names the project of a
    /// writer without the owner role and the write would send a credential the project
    /// already sends somewhere to an upstream origin it does not go to yet (see
    /// [`new_credential_destination`]).
    pub async fn commit_guarded(
        &self,
        actor: &Actor,
        changes: Vec<Change>,
        below_owner_in: Option<&str>,
    ) -> Result<Committed, AdminError> {
        // Checked, committed and installed as one change: a file reload waits, then is
        // checked against this write (and refused if the two do not fit together).
        let _changing = self.live.changing().await;
        let live = self.live.clone();
        let now = self.live.snapshot();
        let guard = below_owner_in.map(str::to_string);
        // Credentials the project has sent somewhere before: one detached since still needs
        // the owner to go to a new address (else: detach, then attach elsewhere).
        let used_before = match &guard {
            Some(p) => self.store.credentials_ever_referenced(p).await?,
            None => Default::default(),
        };
        let ((snapshot, catalog), committed) = self
            .store
            .write_all(actor, changes, move |catalog: &Catalog, _v| {
                let candidate = live.check_catalog(catalog)?;
                if let Some(p) = &guard {
                    let sent_before: Vec<&str> = used_before
                        .iter()
                        .filter_map(|n| catalog.credentials.get(n))
                        .map(|c| c.secret.expose())
                        .collect();
                    if let Some(why) =
                        new_credential_destination(&now, &candidate.snapshot, p, &sent_before)
                    {
                        return Err(StoreError::Refused(why));
                    }
                }
                Ok((candidate, catalog.clone()))
            })
            .await?;
        self.live
            .install(snapshot, catalog, committed.config_version);
        Ok(committed)
    }
}

pub fn router(state: AdminState) -> Router {
    let v1 = Router::new()
        .route("/login", post(login))
        .route("/me", get(me))
        .route("/settings", get(settings))
        .route("/openapi.json", get(openapi::document))
        .route("/projects", get(list_projects).post(create_project))
        .route(
            "/projects/{p}",
            get(get_project).patch(patch_project).delete(delete_project),
        )
        .route("/projects/{p}/explain", post(explain))
        .route("/projects/{p}/export", get(export))
        .route("/projects/{p}/audit", get(project_audit))
        .route(
            "/projects/{p}/credentials",
            get(list_credentials).post(create_credential),
        )
        .route(
            "/projects/{p}/credentials/{name}",
            put(put_credential).delete(delete_credential),
        )
        .route("/projects/{p}/keys", get(list_keys).post(create_key))
        .route("/projects/{p}/keys/{id}", axum::routing::delete(revoke_key))
        .route("/projects/{p}/keys/{id}/rotate", post(rotate_key))
        .route("/projects/{p}/providers/{name}/test", post(test_provider))
        .route("/projects/{p}/traces", get(traces::list))
        .route("/projects/{p}/traces/aggregate", get(traces::aggregate))
        .route("/projects/{p}/traces/export", get(traces::export))
        .route("/projects/{p}/traces/{id}", get(traces::one))
        .route(
            "/projects/{p}/{kind}/{name}/experiment",
            get(traces::experiment),
        )
        .route(
            "/projects/{p}/{kind}",
            get(list_objects).post(create_object),
        )
        .route(
            "/projects/{p}/{kind}/{name}",
            get(get_object)
                .put(put_object)
                .patch(patch_object)
                .delete(delete_object),
        )
        .route("/projects/{p}/{kind}/{name}/history", get(history))
        .route("/projects/{p}/{kind}/{name}/rollback", post(rollback))
        .route(
            "/projects/{p}/{kind}/{name}/variants/{v}",
            put(put_variant).delete(delete_variant),
        )
        .route("/users", get(list_users).post(create_user))
        .route("/users/{name}", axum::routing::delete(delete_user))
        .route("/users/{name}/roles", put(set_roles))
        .route("/users/{name}/password", post(set_password))
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", axum::routing::delete(revoke_token))
        .route("/audit", get(audit))
        .fallback(|| async { AdminError::not_found("no such admin API path") })
        .layer(axum::middleware::map_response(
            crate::app::openai_shaped_rejections,
        ))
        .layer(axum::middleware::map_response(no_sniffing))
        .with_state(state);
    Router::new().nest("/admin/v1", v1)
}

/// The admin API answers JSON (and the OpenAPI document) that a browser must never render or
/// guess the type of: it accepts the dashboard's session cookie, so its answers carry the same
/// protections as `/ui` answers.
async fn no_sniffing(mut r: Response) -> Response {
    crate::ui::csp_and_nosniff(
        r.headers_mut(),
        "default-src 'none'; frame-ancestors 'none'",
    );
    r
}

// ---- authentication ----

/// The caller of an admin endpoint, from `Authorization: Bearer <token>`.
pub struct Auth(pub Principal);

impl Auth {
    fn actor(&self) -> Actor {
        Actor(self.0.user.clone())
    }
    fn need(&self, project: &str, rank: u8) -> Result<(), AdminError> {
        let have = self.0.rank(project);
        if have >= rank {
            return Ok(());
        }
        if have == 0 {
            // Not even a viewer: the project is not shown to exist.
            return Err(AdminError::not_found(format!(
                "no project named '{project}'"
            )));
        }
        let what = match rank {
            3 => "owner",
            2 => "editor",
            _ => "viewer",
        };
        Err(AdminError::forbidden(format!(
            "this needs the {what} role in project '{project}'"
        )))
    }
    fn need_admin(&self) -> Result<(), AdminError> {
        if self.0.is_admin {
            Ok(())
        } else {
            Err(AdminError::forbidden("only the admin may do this"))
        }
    }
}

impl FromRequestParts<AdminState> for Auth {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        st: &AdminState,
    ) -> Result<Self, Self::Rejection> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let token = match bearer {
            Some(t) => t,
            // A dashboard session: the token rides in a cookie, so every write must repeat
            // the session's CSRF token in a header (a cross-site page cannot).
            None => match session::cookie(&parts.headers, session::SESSION_COOKIE) {
                Some(t) => {
                    if !session::is_safe(&parts.method) && !session::csrf_ok(&parts.headers, t) {
                        return Err(AdminError::forbidden(format!(
                            "a dashboard session must send its CSRF token in `{}` on every write",
                            session::CSRF_HEADER
                        ))
                        .with_param(session::CSRF_HEADER));
                    }
                    t
                }
                None => {
                    return Err(AdminError::unauthorized(
                        "missing admin token: send `Authorization: Bearer <token>` (POST /admin/v1/login gives one)",
                    ));
                }
            },
        };
        match st.store.authenticate(token).await? {
            Some(p) => Ok(Auth(p)),
            None => Err(AdminError::unauthorized(
                "invalid, expired or revoked admin token",
            )),
        }
    }
}

// ---- helpers ----

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, AdminError> {
    if body.is_empty() {
        return Err(AdminError::bad_request("the request body must be JSON"));
    }
    serde_json::from_slice(body).map_err(|e| {
        let msg = e.to_string();
        let mut err = AdminError::bad_request(format!("invalid JSON body: {msg}"));
        err.param = field_named(&msg);
        err
    })
}

/// The field a serde error is about (`unknown field `x``, `missing field `x``), for `param`.
pub(crate) fn field_named(msg: &str) -> Option<String> {
    ["unknown field `", "missing field `"]
        .iter()
        .find_map(|start| {
            msg.split(start)
                .nth(1)
                .and_then(|r| r.split('`').next())
                .map(str::to_string)
        })
}

fn object_kind(s: &str) -> Result<ObjectKind, AdminError> {
    match s {
        "providers" | "models" | "targets" | "routes" | "functions" => {
            ObjectKind::parse(s).ok_or_else(|| AdminError::not_found("unknown collection"))
        }
        _ => Err(AdminError::not_found(format!(
            "unknown collection '{s}' (providers, models, targets, routes, functions, credentials, keys)"
        ))),
    }
}

fn if_match(headers: &HeaderMap) -> Result<Option<i64>, AdminError> {
    let Some(v) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"').parse::<i64>().map(Some).map_err(|_| {
        AdminError::bad_request("If-Match must be an ETag this API returned, like \"3\"")
            .with_param("If-Match")
    })
}

fn etag(version: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Metadata a GET adds to an object; a PUT of what a GET returned ignores it.
const META_KEYS: &[&str] = &[
    "name",
    "object",
    "version",
    "managed_by",
    "updated_at",
    "updated_by",
    "serves",
];

/// What an object serves, as the live config sees it (read-only, for the dashboard's choices):
/// a target's endpoint kind, or a provider's models' kinds by model.
fn serves(live: &Live, project: &str, kind: ObjectKind, body: &Value) -> Option<Value> {
    let snap = live.snapshot();
    let ps = snap.project(project)?;
    match kind {
        ObjectKind::Target => {
            let model = body.get("model")?.as_str()?;
            Some(json!(ps.model_kind(model).as_str()))
        }
        ObjectKind::Provider => {
            let models = body.get("models")?.as_array()?;
            let kinds: Map<String, Value> = models
                .iter()
                .filter_map(Value::as_str)
                .map(|m| (m.to_string(), json!(ps.model_kind(m).as_str())))
                .collect();
            Some(Value::Object(kinds))
        }
        _ => None,
    }
}

/// `meta` with what the object serves added (see [`serves`]).
fn with_serves(
    mut meta: Value,
    live: &Live,
    project: &str,
    kind: ObjectKind,
    body: &Value,
) -> Value {
    if let (Some(m), Some(v)) = (meta.as_object_mut(), serves(live, project, kind, body)) {
        m.insert("serves".into(), v);
    }
    meta
}

/// The object body the store keeps: no metadata, no `project` (the path names it).
fn body_of(mut obj: Map<String, Value>, project: &str) -> Result<Value, AdminError> {
    for k in META_KEYS {
        obj.remove(*k);
    }
    match obj.remove("project") {
        Some(Value::String(p)) if p == project => {}
        None => {}
        Some(_) => {
            return Err(AdminError::bad_request(format!(
                "`project` must be '{project}' (the project in the path) or left out"
            ))
            .with_param("project"));
        }
    }
    Ok(Value::Object(obj))
}

/// Check a body's shape against its config-file table, for a precise `param`.
fn check_shape(kind: ObjectKind, body: &Value) -> Result<(), AdminError> {
    use signalbox_core::config::raw::*;
    fn read<T: serde::de::DeserializeOwned>(body: &Value) -> Result<(), AdminError> {
        serde_path_to_error::deserialize::<_, T>(body)
            .map(|_| ())
            .map_err(|e| {
                // `param` names the field at fault by its path (`weight`,
                // `targets[0].colour` for an unknown key).
                let at = e.path().to_string();
                let msg = e.inner().to_string();
                let param = match at.as_str() {
                    "." => field_named(&msg).filter(|_| msg.starts_with("unknown field")),
                    p => Some(p.to_string()),
                };
                let mut err = AdminError::bad_request(match param.as_deref() {
                    Some(p) if !msg.starts_with("unknown field") => format!("{p}: {msg}"),
                    _ => msg,
                });
                err.param = param;
                err
            })
    }
    let r = match kind {
        ObjectKind::Provider => read::<RawProvider>(body),
        ObjectKind::Model => read::<RawModel>(body),
        ObjectKind::Target => read::<RawTarget>(body),
        ObjectKind::Route => read::<RawRoute>(body),
        ObjectKind::Function => read::<RawFunction>(body),
    };
    r.map_err(|mut e| {
        e.message = format!("invalid {}: {}", kind.as_str(), e.message);
        e
    })
}

/// The file's objects: read-only through the API.
fn file_config(live: &Live) -> RawConfig {
    signalbox_core::config::parse(&live.file_text(), None).unwrap_or_default()
}

fn file_object(live: &Live, kind: ObjectKind, name: &str) -> Option<(String, Value)> {
    file_object_in(&file_config(live), kind, name)
}

/// One object of a parsed file: its project and its body without `project`.
fn file_object_in(raw: &RawConfig, kind: ObjectKind, name: &str) -> Option<(String, Value)> {
    fn get<T: serde::Serialize + signalbox_core::config::raw::HasProject>(
        m: &std::collections::BTreeMap<String, T>,
        name: &str,
    ) -> Option<(String, Value)> {
        m.get(name).map(|v| {
            let mut body = serde_json::to_value(v).unwrap_or(Value::Null);
            if let Some(o) = body.as_object_mut() {
                o.remove("project");
            }
            (v.project().unwrap_or("default").to_string(), body)
        })
    }
    match kind {
        ObjectKind::Provider => get(&raw.providers, name),
        ObjectKind::Model => get(&raw.models, name),
        ObjectKind::Target => get(&raw.targets, name),
        ObjectKind::Route => get(&raw.routes, name),
        ObjectKind::Function => get(&raw.functions, name),
    }
}

fn file_objects(live: &Live, kind: ObjectKind, project: &str) -> Vec<(String, Value)> {
    let raw = file_config(live);
    let names: Vec<String> = match kind {
        ObjectKind::Provider => raw.providers.keys().cloned().collect(),
        ObjectKind::Model => raw.models.keys().cloned().collect(),
        ObjectKind::Target => raw.targets.keys().cloned().collect(),
        ObjectKind::Route => raw.routes.keys().cloned().collect(),
        ObjectKind::Function => raw.functions.keys().cloned().collect(),
    };
    names
        .into_iter()
        .filter_map(|n| {
            let (p, body) = file_object_in(&raw, kind, &n)?;
            // Models describe provider models and belong to every project.
            (p == project || kind == ObjectKind::Model).then_some((n, body))
        })
        .collect()
}

fn refuse_file_managed(live: &Live, kind: ObjectKind, name: &str) -> Result<(), AdminError> {
    if file_object(live, kind, name).is_some() {
        return Err(AdminError::conflict(format!(
            "{} '{name}' is defined in the config file and is read-only here; edit the file instead",
            kind.as_str()
        )));
    }
    Ok(())
}

/// [`refuse_file_managed`] for a write to an existing object of project `p`: a file object of
/// another project is not there (404, as a read answers), so its existence is not told.
fn refuse_file_managed_in(
    live: &Live,
    kind: ObjectKind,
    p: &str,
    name: &str,
) -> Result<(), AdminError> {
    match file_object(live, kind, name) {
        Some((fp, _)) if fp != p => Err(AdminError::not_found(format!(
            "no {} named '{name}' in project '{p}'",
            kind.as_str()
        ))),
        _ => refuse_file_managed(live, kind, name),
    }
}

fn object_json(kind: ObjectKind, project: &str, name: &str, body: &Value, meta: Value) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    out.insert("object".into(), json!(kind.as_str()));
    out.insert("project".into(), json!(project));
    if let Some(o) = body.as_object() {
        for (k, v) in o {
            out.insert(k.clone(), v.clone());
        }
    }
    if let Some(m) = meta.as_object() {
        for (k, v) in m {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}

/// `429 rate_limit` with `Retry-After`: the failed-password limit was reached.
fn too_many(wait: Duration, message: &str) -> Response {
    let mut r =
        AdminError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit", message).into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Model settings apply to every project's providers that list the model (`[models.NAME]` is
/// global): changing them is the admin's, not one project's editor's.
fn global_object_needs_admin(auth: &Auth, kind: ObjectKind) -> Result<(), AdminError> {
    if kind == ObjectKind::Model && !auth.0.is_admin {
        return Err(AdminError::forbidden(
            "model settings apply to every project's providers that list the model; only the admin may change them",
        ));
    }
    Ok(())
}

async fn need_project(st: &AdminState, auth: &Auth, p: &str, rank: u8) -> Result<(), AdminError> {
    auth.need(p, rank)?;
    if st.store.project(p).await?.is_none() {
        return Err(AdminError::not_found(format!("no project named '{p}'")));
    }
    Ok(())
}

/// A refused delete names what still uses the object.
/// `what` is what was to be deleted, e.g. `target 'x'`.
fn explain_delete(what: &str, e: AdminError) -> AdminError {
    if e.code != "invalid_config" {
        return e;
    }
    let mut users: Vec<String> = e
        .details
        .iter()
        .map(|(k, _)| k.split(['.', '[']).take(2).collect::<Vec<_>>().join("."))
        .collect();
    users.sort();
    users.dedup();
    let mut out = AdminError::conflict(format!(
        "{what} is still used by {}; change those first",
        users.join(", ")
    ));
    out.details = e.details;
    out
}

// ---- login and identity ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(
    State(st): State<AdminState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let b: LoginBody = parse_json(&body)?;
    match password_login(&st, peer, &b.username, &b.password).await? {
        Ok((token, expires)) => {
            Ok(Json(json!({"token": token, "expires_at": rfc3339(expires)})).into_response())
        }
        Err(refused) => Ok(refused),
    }
}

/// Check a username and password under the failed-login limit; on success, a new login token
/// and its expiry (Unix ms). The 429 and 401 answers are the same for the API and the dashboard
/// (`Ok(Err(response))` is a refusal to send as is).
pub(crate) async fn password_login(
    st: &AdminState,
    peer: SocketAddr,
    username: &str,
    password: &str,
) -> Result<Result<(String, i64), Response>, AdminError> {
    let client = peer.ip().to_string();
    if let Err(wait) = st.limiter.attempt(&client, username) {
        return Ok(Err(too_many(
            wait,
            "too many failed logins; wait before trying again",
        )));
    }
    // The attempt counts as a failure unless it succeeds (see `LoginLimiter::attempt`).
    match st.store.login(username, password, LOGIN_TTL).await? {
        Some((token, expires)) => {
            st.limiter.succeeded(&client, username);
            Ok(Ok((token, expires)))
        }
        None => Ok(Err(
            AdminError::unauthorized("wrong username or password").into_response()
        )),
    }
}

/// Serialise for an answer, with the store's millisecond times as RFC 3339.
fn timed(v: impl serde::Serialize) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    let is_time = matches!(
                        k.as_str(),
                        "created_at" | "updated_at" | "at" | "expires_at" | "revoked_at"
                    );
                    match x {
                        Value::Number(n) if is_time => {
                            if let Some(ms) = n.as_i64() {
                                *x = Value::String(rfc3339(ms));
                            }
                        }
                        other => walk(other),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(v).unwrap_or(Value::Null);
    walk(&mut v);
    v
}

/// Unix milliseconds as RFC 3339 in UTC, with milliseconds.
pub(crate) fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    let whole = httpdate_rfc3339(t);
    format!(
        "{}.{:03}Z",
        whole.trim_end_matches('Z'),
        ms.rem_euclid(1000)
    )
}

fn httpdate_rfc3339(t: std::time::SystemTime) -> String {
    // Civil-from-days (Howard Hinnant), UTC.
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Read-only server settings (any token): version and trace storage.
async fn settings(State(st): State<AdminState>, _auth: Auth) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "traces": {"stored": st.traces.0, "retention_days": st.traces.1},
    }))
}

async fn me(auth: Auth) -> Json<Value> {
    Json(json!({
        "user": auth.0.user,
        "is_admin": auth.0.is_admin,
        "roles": auth.0.roles,
    }))
}

// ---- projects ----

async fn list_projects(
    State(st): State<AdminState>,
    auth: Auth,
) -> Result<Json<Value>, AdminError> {
    let all = st.store.projects().await?;
    let data: Vec<_> = all
        .into_iter()
        .filter(|p| auth.0.rank(&p.name) > 0)
        .collect();
    Ok(Json(json!({ "data": timed(data) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectBody {
    name: String,
    #[serde(default)]
    description: String,
}

async fn create_project(
    State(st): State<AdminState>,
    auth: Auth,
    body: Bytes,
) -> Result<Response, AdminError> {
    auth.need_admin()?;
    let b: ProjectBody = parse_json(&body)?;
    if !signalbox_core::config::valid_plain_name(&b.name) {
        return Err(AdminError::bad_request(
            "a project name is 1 to 128 letters, digits, '-', '_' or '.'",
        )
        .with_param("name"));
    }
    st.commit(
        &auth.actor(),
        vec![Change::CreateProject {
            name: b.name.clone(),
            description: b.description.clone(),
        }],
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": b.name, "description": b.description})),
    )
        .into_response())
}

async fn get_project(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
) -> Result<Json<Value>, AdminError> {
    auth.need(&p, 1)?;
    let info = st
        .store
        .project(&p)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no project named '{p}'")))?;
    Ok(Json(timed(info)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectPatch {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    content_capture: Option<bool>,
}

/// Change a project's description or content capture (owner).
async fn patch_project(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    need_project(&st, &auth, &p, 3).await?;
    let b: ProjectPatch = parse_json(&body)?;
    st.commit(
        &auth.actor(),
        vec![Change::UpdateProject {
            name: p.clone(),
            description: b.description,
            content_capture: b.content_capture,
        }],
    )
    .await?;
    let info = st
        .store
        .project(&p)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no project named '{p}'")))?;
    Ok(Json(timed(info)))
}

async fn delete_project(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
) -> Result<StatusCode, AdminError> {
    auth.need_admin()?;
    if p == "default" {
        return Err(AdminError::conflict("project 'default' cannot be deleted"));
    }
    st.commit(&auth.actor(), vec![Change::DeleteProject { name: p }])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- catalog objects ----

async fn list_objects(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind)): Path<(String, String)>,
) -> Result<Json<Value>, AdminError> {
    let kind = object_kind(&kind)?;
    need_project(&st, &auth, &p, 1).await?;
    let mut data: Vec<Value> = file_objects(&st.live, kind, &p)
        .into_iter()
        .map(|(n, body)| {
            let meta = with_serves(json!({"managed_by": "file"}), &st.live, &p, kind, &body);
            object_json(kind, &p, &n, &body, meta)
        })
        .collect();
    // Models describe provider models and apply to every project.
    let stored = if kind == ObjectKind::Model {
        st.store.objects_all(kind).await?
    } else {
        st.store.objects(kind, &p).await?
    };
    for o in stored {
        let meta = with_serves(
            json!({"managed_by": "store", "version": o.version, "updated_at": rfc3339(o.updated_at), "updated_by": o.updated_by}),
            &st.live,
            &p,
            kind,
            &o.body,
        );
        data.push(object_json(kind, &p, &o.name, &o.body, meta));
    }
    Ok(Json(json!({ "data": data })))
}

async fn get_object(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind, name)): Path<(String, String, String)>,
) -> Result<Response, AdminError> {
    let kind = object_kind(&kind)?;
    need_project(&st, &auth, &p, 1).await?;
    if let Some((fp, body)) = file_object(&st.live, kind, &name)
        && (fp == p || kind == ObjectKind::Model)
    {
        let meta = with_serves(json!({"managed_by": "file"}), &st.live, &p, kind, &body);
        return Ok(Json(object_json(kind, &p, &name, &body, meta)).into_response());
    }
    let o = st.store.object(kind, &p, &name).await?;
    let meta = with_serves(
        json!({"managed_by": "store", "version": o.version, "updated_at": rfc3339(o.updated_at), "updated_by": o.updated_by}),
        &st.live,
        &p,
        kind,
        &o.body,
    );
    let mut r = Json(object_json(kind, &p, &name, &o.body, meta)).into_response();
    r.headers_mut().insert(header::ETAG, etag(o.version));
    Ok(r)
}

/// One object write as an endpoint asks for it.
struct ObjectWrite {
    kind: ObjectKind,
    name: String,
    body: Value,
    if_match: Option<i64>,
    create_only: bool,
}

async fn write_object(
    st: &AdminState,
    auth: &Auth,
    p: &str,
    w: ObjectWrite,
) -> Result<Response, AdminError> {
    let ObjectWrite {
        kind,
        name,
        body,
        if_match,
        create_only,
    } = w;
    let name = name.as_str();
    // Object names follow the config file's rule (model ids like `BAAI/bge-small` included).
    if !(signalbox_core::config::valid_name(name) && name.chars().count() <= 128) {
        return Err(AdminError::bad_request(
            "a name is 1 to 128 letters, digits, '-', '_', '.', '/', ':' or '@', without \"::\"",
        )
        .with_param("name"));
    }
    refuse_file_managed(&st.live, kind, name)?;
    check_shape(kind, &body)?;
    let mut also = Vec::new();
    if kind == ObjectKind::Provider {
        sync::check_provider_address(&body, st.live.snapshot().server.allow_link_local_upstreams)
            .await?;
        also = moved_provider_targets(st, p, name, &body).await?;
    }
    let mut changes = vec![Change::PutObject {
        kind,
        project: p.to_string(),
        name: name.to_string(),
        body: body.clone(),
        if_match,
        create_only,
    }];
    changes.extend(also);
    // A credential the project already sends somewhere goes to a new address only by an
    // owner's write (or the admin's). Checked for every kind: the rule is about where the
    // project's credentials go after the write, whatever the write changed.
    let guard = (auth.0.rank(p) < 3).then_some(p);
    let committed = st.commit_guarded(&auth.actor(), changes, guard).await?;
    let version = committed.object_version.unwrap_or(0);
    let status = if committed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut r = (
        status,
        Json(object_json(
            kind,
            p,
            name,
            &body,
            json!({"managed_by": "store", "version": version, "updated_by": auth.0.user}),
        )),
    )
        .into_response();
    r.headers_mut().insert(header::ETAG, etag(version));
    Ok(r)
}

/// Why `next` may not be installed by a writer without the owner role in `project`: it
/// sends a credential secret that `now` already sends to some upstream origin to an origin it
/// does not go to yet. Without this an editor could attach the project's stored credential
/// to a provider at an address of their own and have it sent there (test connection, or any
/// request). A credential never sent anywhere (`sent_before` holds the secrets of those any
/// object of the project referenced at some version) may go wherever an editor puts it; one
/// detached from everything since is not new: it needs the owner too.
fn new_credential_destination(
    now: &Snapshot,
    next: &Snapshot,
    project: &str,
    sent_before: &[&str],
) -> Option<String> {
    let before = now
        .project(project)
        .map(|p| p.credential_destinations())
        .unwrap_or_default();
    let after = next.project(project)?.credential_destinations();
    for (secret, origin, what) in &after {
        let mut known: Vec<&str> = before
            .iter()
            .filter(|(s, ..)| s == secret)
            .map(|(_, o, _)| o.as_str())
            .collect();
        known.sort_unstable();
        known.dedup();
        if !known.is_empty() && !known.contains(&origin.as_str()) {
            return Some(format!(
                "{what} would send a stored credential to {origin}, where it does not go yet \
                 (it goes to {}); sending a credential to a new address needs the owner role \
                 in project '{project}'",
                known.join(", ")
            ));
        }
        if known.is_empty() && sent_before.contains(secret) {
            return Some(format!(
                "{what} would send a stored credential to {origin}; it went elsewhere before \
                 (it is used nowhere now): sending it to an address again needs the owner role \
                 in project '{project}'"
            ));
        }
    }
    None
}

/// When a provider's `base_url` or `kind` changes, its targets' own credentials are dropped
/// in the same commit: a secret never follows a URL it was not given for.
async fn moved_provider_targets(
    st: &AdminState,
    p: &str,
    name: &str,
    next: &Value,
) -> Result<Vec<Change>, AdminError> {
    let current = match st.store.object(ObjectKind::Provider, p, name).await {
        Ok(o) => o.body,
        Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let moved = ["base_url", "kind"]
        .iter()
        .any(|k| current.get(*k) != next.get(*k));
    if !moved {
        return Ok(Vec::new());
    }
    let listed: Vec<&str> = current
        .get("models")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    for t in st.store.objects(ObjectKind::Target, p).await? {
        let Some(obj) = t.body.as_object() else {
            continue;
        };
        let of_this = match obj.get("provider").and_then(Value::as_str) {
            Some(pv) => pv == name,
            None => obj
                .get("model")
                .and_then(Value::as_str)
                .is_some_and(|m| listed.contains(&m)),
        };
        if of_this && obj.contains_key("credential") {
            let mut body = obj.clone();
            body.remove("credential");
            tracing::info!(provider = %name, target = %t.name, "provider moved: the target's credential was dropped");
            out.push(Change::PutObject {
                kind: ObjectKind::Target,
                project: p.to_string(),
                name: t.name.clone(),
                body: Value::Object(body),
                if_match: Some(t.version),
                create_only: false,
            });
        }
    }
    Ok(out)
}

async fn create_object(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, AdminError> {
    let kind = object_kind(&kind)?;
    need_project(&st, &auth, &p, 2).await?;
    global_object_needs_admin(&auth, kind)?;
    let obj: Map<String, Value> = parse_json(&body)?;
    let name = match obj.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => {
            return Err(AdminError::bad_request("`name` is required (a string)").with_param("name"));
        }
    };
    let body = body_of(obj, &p)?;
    write_object(
        &st,
        &auth,
        &p,
        ObjectWrite {
            kind,
            name: name.to_string(),
            body,
            if_match: None,
            create_only: true,
        },
    )
    .await
}

async fn put_object(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let kind = object_kind(&kind)?;
    need_project(&st, &auth, &p, 2).await?;
    global_object_needs_admin(&auth, kind)?;
    let obj: Map<String, Value> = parse_json(&body)?;
    if let Some(Value::String(n)) = obj.get("name")
        && *n != name
    {
        return Err(AdminError::bad_request(
            "`name` differs from the name in the path; renaming is not supported",
        )
        .with_param("name"));
    }
    let body = body_of(obj, &p)?;
    let w = ObjectWrite {
        kind,
        name,
        body,
        if_match: if_match(&headers)?,
        create_only: false,
    };
    write_object(&st, &auth, &p, w).await
}

/// JSON merge patch (RFC 7396). For a provider, a changed `base_url` or `kind` drops its
/// credential unless the same patch sets one: a secret never follows a URL it was not given for.
/// For a target, so does a changed `provider` (or `model`, when it names no provider).
async fn patch_object(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind_s, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let kind = object_kind(&kind_s)?;
    need_project(&st, &auth, &p, 2).await?;
    global_object_needs_admin(&auth, kind)?;
    refuse_file_managed_in(&st.live, kind, &p, &name)?;
    let patch: Map<String, Value> = parse_json(&body)?;
    let wanted = if_match(&headers)?;
    let current = match st.store.object(kind, &p, &name).await {
        // With If-Match, an object that is gone is a stale precondition (412), not 404.
        Err(StoreError::NotFound(_)) if let Some(want) = wanted => {
            return Err(StoreError::Stale(format!(
                "{} '{name}' does not exist (If-Match named version {want})",
                kind.as_str()
            ))
            .into());
        }
        r => r?,
    };
    let mut next = current.body.clone();
    merge_patch(&mut next, &Value::Object(patch.clone()));
    if kind == ObjectKind::Provider {
        let moved = ["base_url", "kind"]
            .iter()
            .any(|k| current.body.get(*k) != next.get(*k));
        if moved
            && !patch.contains_key("credential")
            && let Some(o) = next.as_object_mut()
            && o.remove("credential").is_some()
        {
            tracing::info!(provider = %name, "base_url or kind changed: its credential was dropped");
        }
    }
    if kind == ObjectKind::Target {
        // The same for a target moved to another provider: its `provider` changed, or (with
        // none named) its `model`, through which the provider is found.
        let moved = match (current.body.get("provider"), next.get("provider")) {
            (None, None) => current.body.get("model") != next.get("model"),
            (a, b) => a != b,
        };
        if moved
            && !patch.contains_key("credential")
            && let Some(o) = next.as_object_mut()
            && o.remove("credential").is_some()
        {
            tracing::info!(target = %name, "provider changed: the target's credential was dropped");
        }
    }
    let obj = next.as_object().cloned().unwrap_or_default();
    let body = body_of(obj, &p)?;
    let w = ObjectWrite {
        kind,
        name,
        body,
        if_match: Some(wanted.unwrap_or(current.version)),
        create_only: false,
    };
    write_object(&st, &auth, &p, w).await
}

fn merge_patch(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

async fn delete_object(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind, name)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, AdminError> {
    let kind = object_kind(&kind)?;
    need_project(&st, &auth, &p, 2).await?;
    global_object_needs_admin(&auth, kind)?;
    refuse_file_managed_in(&st.live, kind, &p, &name)?;
    // Held to the same rule as a write: where the project's credentials go afterwards.
    let guard = (auth.0.rank(&p) < 3).then_some(p.as_str());
    st.commit_guarded(
        &auth.actor(),
        vec![Change::DeleteObject {
            kind,
            project: p.clone(),
            name: name.clone(),
            if_match: if_match(&headers)?,
        }],
        guard,
    )
    .await
    .map_err(|e| explain_delete(&format!("{} '{name}'", kind.as_str()), e))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn history(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind, name)): Path<(String, String, String)>,
) -> Result<Json<Value>, AdminError> {
    let kind = object_kind(&kind)?;
    need_project(&st, &auth, &p, 1).await?;
    let versions = st.store.history(kind, &p, &name).await?;
    let mut data = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        let previous = versions.get(i + 1).and_then(|o| o.body.clone());
        data.push(json!({
            "version": v.version,
            "author": v.author,
            "created_at": rfc3339(v.created_at),
            "deleted": v.body.is_none(),
            "body": v.body,
            "diff": diff(previous.as_ref(), v.body.as_ref()),
        }));
    }
    Ok(Json(json!({ "data": data })))
}

/// A field-level diff: each changed top-level key with its old and new value.
fn diff(before: Option<&Value>, after: Option<&Value>) -> Value {
    let empty = Map::new();
    let b = before.and_then(Value::as_object).unwrap_or(&empty);
    let a = after.and_then(Value::as_object).unwrap_or(&empty);
    let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
    keys.sort();
    keys.dedup();
    let changes: Vec<Value> = keys
        .into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| json!({"field": k, "before": b.get(k), "after": a.get(k)}))
        .collect();
    Value::Array(changes)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    version: i64,
}

async fn rollback(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind_s, name)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let kind = object_kind(&kind_s)?;
    need_project(&st, &auth, &p, 2).await?;
    global_object_needs_admin(&auth, kind)?;
    let b: RollbackBody = parse_json(&body)?;
    let versions = st.store.history(kind, &p, &name).await?;
    let target = versions
        .iter()
        .find(|v| v.version == b.version)
        .ok_or_else(|| {
            AdminError::not_found(format!(
                "{} '{name}' has no version {}",
                kind.as_str(),
                b.version
            ))
            .with_param("version")
        })?;
    let Some(old) = target.body.clone() else {
        return Err(AdminError::bad_request(format!(
            "version {} is a deletion; roll back to a version that has a body",
            b.version
        ))
        .with_param("version"));
    };
    let current = versions.first().map(|v| v.version);
    let exists = versions.first().is_some_and(|v| v.body.is_some());
    let wanted = if_match(&headers)?.or(if exists { current } else { None });
    write_object(
        &st,
        &auth,
        &p,
        ObjectWrite {
            kind,
            name: name.to_string(),
            body: old,
            if_match: wanted,
            create_only: false,
        },
    )
    .await
}

async fn put_variant(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind_s, name, v)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    let kind = object_kind(&kind_s)?;
    if !matches!(kind, ObjectKind::Route | ObjectKind::Function) {
        return Err(AdminError::not_found(
            "variants belong to routes and functions",
        ));
    }
    need_project(&st, &auth, &p, 2).await?;
    global_object_needs_admin(&auth, kind)?;
    refuse_file_managed_in(&st.live, kind, &p, &name)?;
    let variant: Value = parse_json(&body)?;
    serde_json::from_value::<signalbox_core::config::raw::RawVariant>(variant.clone())
        .map_err(|e| AdminError::bad_request(format!("invalid variant: {e}")))?;
    let current = st.store.object(kind, &p, &name).await?;
    let mut next = current.body.clone();
    if let Some(o) = next.as_object_mut() {
        let vs = o.entry("variants").or_insert_with(|| json!({}));
        if let Some(vm) = vs.as_object_mut() {
            vm.insert(v, variant);
        }
    }
    write_variants(&st, &auth, &p, kind, &name, next, current.version, &headers).await
}

/// Save a route's or function's body with its variants changed, against the version read.
#[allow(clippy::too_many_arguments)]
async fn write_variants(
    st: &AdminState,
    auth: &Auth,
    p: &str,
    kind: ObjectKind,
    name: &str,
    body: Value,
    read_version: i64,
    headers: &HeaderMap,
) -> Result<Response, AdminError> {
    let wanted = if_match(headers)?.unwrap_or(read_version);
    let w = ObjectWrite {
        kind,
        name: name.to_string(),
        body,
        if_match: Some(wanted),
        create_only: false,
    };
    write_object(st, auth, p, w).await
}

async fn delete_variant(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind_s, name, v)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Result<Response, AdminError> {
    let kind = object_kind(&kind_s)?;
    need_project(&st, &auth, &p, 2).await?;
    global_object_needs_admin(&auth, kind)?;
    refuse_file_managed_in(&st.live, kind, &p, &name)?;
    let current = st.store.object(kind, &p, &name).await?;
    let mut next = current.body.clone();
    let removed = next
        .get_mut("variants")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.remove(&v))
        .is_some();
    if !removed {
        return Err(AdminError::not_found(format!(
            "{} '{name}' has no variant '{v}'",
            kind.as_str()
        )));
    }
    write_variants(&st, &auth, &p, kind, &name, next, current.version, &headers).await
}

// ---- explain, export, audit ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExplainBody {
    model: String,
    #[serde(default)]
    endpoint: Option<String>,
}

async fn explain(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, AdminError> {
    need_project(&st, &auth, &p, 1).await?;
    let b: ExplainBody = parse_json(&body)?;
    let endpoint = b.endpoint.as_deref().unwrap_or("chat");
    let kind = EndpointKind::parse(endpoint).ok_or_else(|| {
        AdminError::bad_request(format!(
            "unknown endpoint kind '{endpoint}' (chat, embeddings, audio_speech, audio_transcription, image_generation)"
        ))
        .with_param("endpoint")
    })?;
    let snap = st.live.snapshot();
    let ps = snap
        .project(&p)
        .ok_or_else(|| AdminError::not_found(format!("no project named '{p}'")))?;
    match signalbox_core::explain::explain(ps, kind, &b.model) {
        Ok(v) => Ok(Json(v)),
        Err(e) => {
            let mut err = AdminError::new(e.status, e.code.as_str(), e.message).with_param("model");
            if e.code == signalbox_core::ErrorCode::WrongEndpoint {
                err.param = Some("endpoint".into());
            }
            Err(err)
        }
    }
}

async fn export(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
) -> Result<Response, AdminError> {
    need_project(&st, &auth, &p, 1).await?;
    let (catalog, _) = st.store.load_catalog().await?;
    let text = crate::transfer::export_toml(&catalog, &p);
    Ok((
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        text,
    )
        .into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<i64>,
}

async fn project_audit(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, AdminError> {
    need_project(&st, &auth, &p, 3).await?;
    let data = st
        .store
        .audit_log(Some(&p), q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(json!({ "data": timed(data) })))
}

async fn audit(
    State(st): State<AdminState>,
    auth: Auth,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Value>, AdminError> {
    auth.need_admin()?;
    let data = st
        .store
        .audit_log(None, q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(json!({ "data": timed(data) })))
}

// ---- credentials ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialBody {
    #[serde(default)]
    name: Option<String>,
    value: String,
}

async fn list_credentials(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
) -> Result<Json<Value>, AdminError> {
    need_project(&st, &auth, &p, 1).await?;
    Ok(Json(
        json!({ "data": timed(st.store.credentials(&p).await?) }),
    ))
}

async fn create_credential(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    need_project(&st, &auth, &p, 2).await?;
    let b: CredentialBody = parse_json(&body)?;
    let name = b
        .name
        .ok_or_else(|| AdminError::bad_request("`name` is required").with_param("name"))?;
    // Create only, checked by the store inside the write's transaction (409).
    save_credential(&st, &auth, &p, &name, b.value, None, true).await
}

/// Create or replace; with `If-Match`, only the version it names is replaced.
async fn put_credential(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, AdminError> {
    need_project(&st, &auth, &p, 2).await?;
    let wanted = if_match(&headers)?;
    let b: CredentialBody = parse_json(&body)?;
    if b.name.as_ref().is_some_and(|n| *n != name) {
        return Err(
            AdminError::bad_request("`name` differs from the name in the path").with_param("name"),
        );
    }
    save_credential(&st, &auth, &p, &name, b.value, wanted, false).await
}

async fn save_credential(
    st: &AdminState,
    auth: &Auth,
    p: &str,
    name: &str,
    value: String,
    if_match: Option<i64>,
    create_only: bool,
) -> Result<Response, AdminError> {
    if !signalbox_core::config::valid_plain_name(name) {
        return Err(
            AdminError::bad_request("a name is 1 to 128 letters, digits, '-', '_' or '.'")
                .with_param("name"),
        );
    }
    // A credential travels in a request header; no provider key is anywhere near this long.
    const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;
    if value.len() > MAX_CREDENTIAL_BYTES {
        return Err(AdminError::bad_request(format!(
            "a credential value is at most {MAX_CREDENTIAL_BYTES} bytes"
        ))
        .with_param("value"));
    }
    let committed = st
        .commit(
            &auth.actor(),
            vec![Change::PutCredential {
                project: p.to_string(),
                name: name.to_string(),
                value,
                if_match,
                create_only,
            }],
        )
        .await
        .map_err(|mut e| {
            if e.code == "bad_request" {
                e.param = Some("value".into());
            }
            e
        })?;
    let info = st
        .store
        .credentials(p)
        .await?
        .into_iter()
        .find(|c| c.name == name);
    let status = if committed.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut r = (
        status,
        Json(json!({"credential": timed(info), "reference": format!("credential::{name}")})),
    )
        .into_response();
    if let Some(v) = committed.object_version {
        r.headers_mut().insert(header::ETAG, etag(v));
    }
    Ok(r)
}

async fn delete_credential(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<StatusCode, AdminError> {
    need_project(&st, &auth, &p, 2).await?;
    let wanted = if_match(&headers)?;
    st.commit(
        &auth.actor(),
        vec![Change::DeleteCredential {
            project: p,
            name: name.clone(),
            if_match: wanted,
        }],
    )
    .await
    .map_err(|e| explain_delete(&format!("credential '{name}'"), e))?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- gateway keys ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyBody {
    name: String,
    /// RFC 3339 time, or seconds from now.
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
}

async fn list_keys(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
) -> Result<Json<Value>, AdminError> {
    need_project(&st, &auth, &p, 1).await?;
    let keys = st.store.keys(&p).await?;
    Ok(Json(
        json!({ "data": keys.iter().map(key_json).collect::<Vec<_>>() }),
    ))
}

fn key_json(k: &signalbox_store::ApiKeyInfo) -> Value {
    json!({
        "id": k.id,
        "project": k.project,
        "name": k.name,
        "prefix": k.prefix,
        "created_at": rfc3339(k.created_at),
        "created_by": k.created_by,
        "expires_at": k.expires_at.map(rfc3339),
        "revoked_at": k.revoked_at.map(rfc3339),
    })
}

async fn create_key(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    need_project(&st, &auth, &p, 2).await?;
    let b: KeyBody = parse_json(&body)?;
    if !signalbox_store::label_ok(&b.name) {
        return Err(AdminError::bad_request("`name` is 1 to 128 characters").with_param("name"));
    }
    let now = signalbox_store::now_millis();
    let expires = match (b.expires_at.as_deref(), b.expires_in_seconds) {
        (Some(_), Some(_)) => {
            return Err(AdminError::bad_request(
                "give `expires_at` or `expires_in_seconds`, not both",
            )
            .with_param("expires_at"));
        }
        (Some(t), None) => Some(parse_rfc3339(t).ok_or_else(|| {
            AdminError::bad_request(
                "`expires_at` must be an RFC 3339 time like 2027-01-31T00:00:00Z",
            )
            .with_param("expires_at")
        })?),
        (None, Some(s)) => Some(now + expiry_seconds(s)? * 1000),
        (None, None) => None,
    };
    if expires.is_some_and(|e| e <= now) {
        return Err(AdminError::bad_request("`expires_at` is in the past").with_param("expires_at"));
    }
    let c = st
        .commit(
            &auth.actor(),
            vec![Change::CreateKey {
                project: p,
                name: b.name,
                expires_at: expires,
                value: None,
            }],
        )
        .await?;
    let mut out = c.key.as_ref().map(key_json).unwrap_or_default();
    out["key"] = json!(c.revealed);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// Parse `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into Unix milliseconds.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, rest) = s.split_once(['T', 't', ' '])?;
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let m: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let (time, offset_s) = if let Some(t) = rest.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else {
        let i = rest.rfind(['+', '-'])?;
        let (t, o) = rest.split_at(i);
        let sign = if o.starts_with('-') { -1 } else { 1 };
        let (oh, om) = o[1..].split_once(':')?;
        (
            t,
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60),
        )
    };
    let time = time.split('.').next()?;
    let mut t = time.split(':');
    let hh: i64 = t.next()?.parse().ok()?;
    let mm: i64 = t.next()?.parse().ok()?;
    let ss: i64 = t.next().unwrap_or("0").parse().ok()?;
    if !(0..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hh)
        || !(0..=59).contains(&mm)
        || !(0..=60).contains(&ss)
    {
        return None;
    }
    // Days from civil (Howard Hinnant).
    let y2 = if m <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss - offset_s) * 1000)
}

async fn revoke_key(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, id)): Path<(String, String)>,
) -> Result<StatusCode, AdminError> {
    need_project(&st, &auth, &p, 2).await?;
    st.commit(&auth.actor(), vec![Change::RevokeKey { project: p, id }])
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    #[serde(default)]
    grace_seconds: Option<i64>,
}

async fn rotate_key(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, AdminError> {
    need_project(&st, &auth, &p, 2).await?;
    let b: RotateBody = if body.is_empty() {
        RotateBody::default()
    } else {
        parse_json(&body)?
    };
    let grace = b.grace_seconds.unwrap_or(3600);
    if !(0..=30 * 86_400).contains(&grace) {
        return Err(
            AdminError::bad_request("`grace_seconds` is 0 to 2592000 (30 days)")
                .with_param("grace_seconds"),
        );
    }
    let c = st
        .commit(
            &auth.actor(),
            vec![Change::RotateKey {
                project: p.clone(),
                id: id.clone(),
                grace_secs: grace,
            }],
        )
        .await?;
    let mut out = c.key.as_ref().map(key_json).unwrap_or_default();
    out["key"] = json!(c.revealed);
    out["replaces"] = json!(id);
    let old_expiry = st
        .store
        .keys(&p)
        .await?
        .into_iter()
        .find(|k| k.id == id)
        .and_then(|k| k.expires_at);
    out["replaced_key_expires_at"] = json!(old_expiry.map(rfc3339));
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

// ---- provider test connection ----

async fn test_provider(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, name)): Path<(String, String)>,
) -> Result<Json<Value>, AdminError> {
    need_project(&st, &auth, &p, 2).await?;
    let snap = st.live.snapshot();
    let ps = snap
        .project(&p)
        .ok_or_else(|| AdminError::not_found(format!("no project named '{p}'")))?;
    let provider = ps
        .providers
        .get(&name)
        .ok_or_else(|| {
            AdminError::not_found(format!("no provider named '{name}' in project '{p}'"))
        })?
        .clone();
    // A provider written through the API is held to the same addresses when tested as when
    // called (its name is resolved again, and a metadata address refused).
    let guarded = !snap.server.allow_link_local_upstreams
        && file_object(&st.live, ObjectKind::Provider, &name).is_none();
    Ok(Json(sync::test_connection(&provider, guarded).await))
}

// ---- users and tokens ----

async fn list_users(State(st): State<AdminState>, auth: Auth) -> Result<Json<Value>, AdminError> {
    auth.need_admin()?;
    Ok(Json(json!({ "data": timed(st.store.users().await?) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    name: String,
    password: String,
    #[serde(default)]
    roles: std::collections::BTreeMap<String, String>,
}

async fn create_user(
    State(st): State<AdminState>,
    auth: Auth,
    body: Bytes,
) -> Result<Response, AdminError> {
    auth.need_admin()?;
    let b: UserBody = parse_json(&body)?;
    let u = st
        .store
        .create_user(&auth.actor(), &b.name, &b.password, &b.roles)
        .await?;
    Ok((StatusCode::CREATED, Json(timed(u))).into_response())
}

async fn delete_user(
    State(st): State<AdminState>,
    auth: Auth,
    Path(name): Path<String>,
) -> Result<StatusCode, AdminError> {
    auth.need_admin()?;
    st.store.delete_user(&auth.actor(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_roles(
    State(st): State<AdminState>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<StatusCode, AdminError> {
    auth.need_admin()?;
    let roles: std::collections::BTreeMap<String, String> = parse_json(&body)?;
    st.store.set_roles(&auth.actor(), &name, &roles).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordBody {
    password: String,
    /// The user's present password: required when users other than the admin change their
    /// own (a token alone, perhaps leaked, must not be enough to take the account over).
    #[serde(default)]
    current_password: Option<String>,
}

async fn set_password(
    State(st): State<AdminState>,
    auth: Auth,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Response, AdminError> {
    if name != auth.0.user {
        auth.need_admin()?;
    }
    let b: PasswordBody = parse_json(&body)?;
    if !auth.0.is_admin {
        // Guessing the present password through this endpoint is limited as logins are.
        let client = format!("password-change:{name}");
        let Some(current) = b.current_password.as_deref() else {
            return Err(AdminError::bad_request(
                "`current_password` is required to change your own password",
            )
            .with_param("current_password"));
        };
        if let Err(wait) = st.limiter.attempt(&client, &name) {
            return Ok(too_many(
                wait,
                "too many wrong passwords; wait before trying again",
            ));
        }
        if st.store.check_password(&name, current).await? {
            st.limiter.succeeded(&client, &name);
        } else {
            return Err(
                AdminError::forbidden("`current_password` is not your password")
                    .with_param("current_password"),
            );
        }
    }
    st.store
        .set_password(&auth.actor(), &name, &b.password)
        .await
        .map_err(|e| AdminError::from(e).with_param("password"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenBody {
    name: String,
    /// Defaults to the caller; only the admin may create tokens for others.
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    expires_in_seconds: Option<i64>,
}

async fn list_tokens(State(st): State<AdminState>, auth: Auth) -> Result<Json<Value>, AdminError> {
    let user = (!auth.0.is_admin).then_some(auth.0.user.as_str());
    Ok(Json(json!({ "data": timed(st.store.tokens(user).await?) })))
}

async fn create_token(
    State(st): State<AdminState>,
    auth: Auth,
    body: Bytes,
) -> Result<Response, AdminError> {
    let b: TokenBody = parse_json(&body)?;
    let user = b.user.unwrap_or_else(|| auth.0.user.clone());
    if user != auth.0.user {
        auth.need_admin()?;
    }
    if !signalbox_store::label_ok(&b.name) {
        return Err(AdminError::bad_request("`name` is 1 to 128 characters").with_param("name"));
    }
    let expires = match b.expires_in_seconds {
        Some(s) => Some(signalbox_store::now_millis() + expiry_seconds(s)? * 1000),
        None => None,
    };
    let (token, info) = st
        .store
        .create_token(&auth.actor(), &user, &b.name, expires)
        .await?;
    let mut out = timed(info);
    out["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

/// A lifetime in seconds for a key or token: positive, and at most a hundred years (so the
/// expiry stays a valid RFC 3339 time).
fn expiry_seconds(s: i64) -> Result<i64, AdminError> {
    const MAX: i64 = signalbox_store::MAX_KEY_LIFETIME_SECS;
    if (1..=MAX).contains(&s) {
        Ok(s)
    } else {
        Err(AdminError::bad_request(format!(
            "`expires_in_seconds` must be from 1 to {MAX} (a hundred years)"
        ))
        .with_param("expires_in_seconds"))
    }
}

async fn revoke_token(
    State(st): State<AdminState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, AdminError> {
    let owner = (!auth.0.is_admin).then_some(auth.0.user.as_str());
    st.store.revoke_token(&auth.actor(), &id, owner).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Map config errors for the CLI and tests.
pub fn rejected(errs: ConfigErrors) -> AdminError {
    AdminError::from(StoreError::Rejected(errs))
}
