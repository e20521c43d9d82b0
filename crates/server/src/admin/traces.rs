//! The trace query API: list with filters and cursor pages, one trace, aggregates, JSON-lines
//! export, and the per-variant figures of an experiment.

use super::{AdminError, AdminState, Auth, need_project, object_kind, parse_rfc3339, rfc3339};
use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use signalbox_core::config::ObjectKind;
use signalbox_core::model::RouteBody;
use signalbox_store::{TraceFilter, TraceRow};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TraceQuery {
    from: Option<String>,
    to: Option<String>,
    status: Option<String>,
    endpoint: Option<String>,
    route: Option<String>,
    variant: Option<String>,
    provider: Option<String>,
    model: Option<String>,
    key: Option<String>,
    user: Option<String>,
    session: Option<String>,
    min_tokens: Option<i64>,
    max_tokens: Option<i64>,
    /// `desc` (newest first, default) or `asc`.
    order: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
    /// Aggregates: route, variant, assigned_variant, provider, model, endpoint, status.
    by: Option<String>,
    /// Include captured content: lists default to no, one trace and exports to yes.
    content: Option<bool>,
}

/// A time as RFC 3339 or Unix milliseconds.
fn time_param(v: Option<&str>, name: &str) -> Result<Option<i64>, AdminError> {
    let Some(v) = v else { return Ok(None) };
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(Some(ms));
    }
    parse_rfc3339(v).map(Some).ok_or_else(|| {
        AdminError::bad_request(format!(
            "`{name}` must be an RFC 3339 time (2026-11-27T10:00:00Z) or Unix milliseconds"
        ))
        .with_param(name)
    })
}

impl TraceQuery {
    fn filter(&self, project: &str) -> Result<TraceFilter, AdminError> {
        if let Some(e) = self.endpoint.as_deref()
            && !signalbox_core::model::EndpointKind::ALL
                .iter()
                .any(|k| k.as_str() == e)
        {
            return Err(AdminError::bad_request(format!(
                "unknown endpoint '{e}' (chat, embeddings, audio_speech, audio_transcription, image_generation)"
            ))
            .with_param("endpoint"));
        }
        Ok(TraceFilter {
            project: project.to_string(),
            from_ms: time_param(self.from.as_deref(), "from")?,
            to_ms: time_param(self.to.as_deref(), "to")?,
            status: self.status.clone(),
            endpoint: self.endpoint.clone(),
            route: self.route.clone(),
            variant: self.variant.clone(),
            provider: self.provider.clone(),
            model: self.model.clone(),
            key_id: self.key.clone(),
            user_id: self.user.clone(),
            session_id: self.session.clone(),
            min_tokens: self.min_tokens,
            max_tokens: self.max_tokens,
            route_any: Vec::new(),
        })
    }

    fn oldest_first(&self) -> Result<bool, AdminError> {
        match self.order.as_deref() {
            None | Some("desc") => Ok(false),
            Some("asc") => Ok(true),
            Some(_) => Err(AdminError::bad_request("`order` is asc or desc").with_param("order")),
        }
    }
}

fn query_of(
    q: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<TraceQuery, AdminError> {
    q.map(|Query(q)| q).map_err(|e| {
        let msg = e.body_text();
        let mut err = AdminError::bad_request(format!("invalid query: {msg}"));
        err.param = super::field_named(&msg).filter(|_| msg.contains("unknown field"));
        err
    })
}

/// Name the query parameter a store refusal is about.
fn param_of(mut e: AdminError) -> AdminError {
    if e.code == "bad_request" {
        for (start, p) in [
            ("invalid cursor", "cursor"),
            ("status '", "status"),
            ("cannot group by", "by"),
        ] {
            if e.message.starts_with(start) {
                e.param = Some(p.to_string());
                break;
            }
        }
    }
    e
}

fn trace_json(t: &TraceRow) -> Value {
    trace_json_with(t, true)
}

fn trace_json_with(t: &TraceRow, content: bool) -> Value {
    let mut v = serde_json::to_value(t).unwrap_or(Value::Null);
    v["time"] = json!(rfc3339(t.time));
    if !content && let Some(o) = v.as_object_mut() {
        o.remove("content");
    }
    v
}

pub async fn list(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
    q: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    need_project(&st, &auth, &p, 1).await?;
    let q = query_of(q)?;
    let page = st
        .store
        .traces(
            &q.filter(&p)?,
            q.oldest_first()?,
            q.limit.unwrap_or(50),
            q.cursor.as_deref(),
        )
        .await
        .map_err(|e| param_of(AdminError::from(e)))?;
    let with_content = q.content.unwrap_or(false);
    Ok(Json(json!({
        "data": page.data.iter().map(|t| trace_json_with(t, with_content)).collect::<Vec<_>>(),
        "next_cursor": page.next_cursor,
    })))
}

pub async fn one(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, id)): Path<(String, String)>,
) -> Result<Json<Value>, AdminError> {
    need_project(&st, &auth, &p, 1).await?;
    Ok(Json(trace_json(&st.store.trace(&p, &id).await?)))
}

pub async fn aggregate(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
    q: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    need_project(&st, &auth, &p, 1).await?;
    let q = query_of(q)?;
    let data = st
        .store
        .aggregate(&q.filter(&p)?, q.by.as_deref())
        .await
        .map_err(|e| param_of(AdminError::from(e)))?;
    Ok(Json(json!({ "by": q.by, "data": data })))
}

/// Every matching trace as JSON lines, oldest first, streamed page by page.
pub async fn export(
    State(st): State<AdminState>,
    auth: Auth,
    Path(p): Path<String>,
    q: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AdminError> {
    need_project(&st, &auth, &p, 1).await?;
    let q = query_of(q)?;
    let filter = q.filter(&p)?;
    let with_content = q.content.unwrap_or(true);
    // The first page is read before the answer starts, so a filter the store refuses is a
    // 400 naming its parameter, not a stream cut before its first byte.
    let first = st
        .store
        .traces(&filter, true, 1000, None)
        .await
        .map_err(|e| param_of(e.into()))?;
    let lines = move |page: &signalbox_store::TracePage| {
        let mut chunk = String::new();
        for t in &page.data {
            chunk.push_str(&trace_json_with(t, with_content).to_string());
            chunk.push('\n');
        }
        bytes::Bytes::from(chunk)
    };
    let head = lines(&first);
    let store = st.store.clone();
    let rest = futures_util::stream::unfold(first.next_cursor, move |cursor| {
        let store = store.clone();
        let filter = filter.clone();
        async move {
            let cursor = cursor?;
            match store.traces(&filter, true, 1000, Some(&cursor)).await {
                Ok(page) => Some((Ok::<_, std::io::Error>(lines(&page)), page.next_cursor)),
                Err(e) => Some((Err(std::io::Error::other(e.to_string())), None)),
            }
        }
    });
    use futures_util::StreamExt;
    let stream = futures_util::stream::once(async move { Ok(head) }).chain(rest);
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Per-variant figures of an experiment route or function, side by side with its weights.
pub async fn experiment(
    State(st): State<AdminState>,
    auth: Auth,
    Path((p, kind_s, name)): Path<(String, String, String)>,
    q: Result<Query<TraceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AdminError> {
    let kind = object_kind(&kind_s)?;
    need_project(&st, &auth, &p, 1).await?;
    let q = query_of(q)?;
    let snap = st.live.snapshot();
    let ps = snap
        .project(&p)
        .ok_or_else(|| AdminError::not_found(format!("no project named '{p}'")))?;
    let (label, route) = match kind {
        ObjectKind::Route => (format!("route:{name}"), ps.routes.get(&name)),
        ObjectKind::Function => (format!("function:{name}"), ps.functions.get(&name)),
        _ => {
            return Err(AdminError::not_found(
                "experiments belong to routes and functions",
            ));
        }
    };
    let route = route
        .ok_or_else(|| AdminError::not_found(format!("no {} named '{name}'", kind.as_str())))?;
    let RouteBody::Experiment {
        variants: exp_variants,
        sticky,
        ..
    } = &*route.body
    else {
        return Err(AdminError::bad_request(format!(
            "{} '{name}' is not an experiment",
            kind.as_str()
        )));
    };
    let mut filter = q.filter(&p)?;
    // A route's experiment also runs for the functions that point at it: their traffic is
    // the experiment's too (traced under the function's label). The caller's `route` filter
    // is replaced, as ever.
    filter.route = None;
    filter.route_any = std::iter::once(label)
        .chain(
            ps.functions
                .iter()
                .filter(|(_, f)| kind == ObjectKind::Route && f.via_route.as_deref() == Some(&name))
                .map(|(f, _)| format!("function:{f}")),
        )
        .collect();
    let figures = st
        .store
        .aggregate(&filter, Some("variant"))
        .await
        .map_err(|e| param_of(e.into()))?;
    let total: u64 = exp_variants.iter().map(|v| v.weight as u64).sum();
    let mut variants: Vec<Value> = exp_variants
        .iter()
        .map(|v| {
            let f = figures
                .iter()
                .find(|a| a.group.as_deref() == Some(v.name.as_str()));
            json!({
                "variant": v.name,
                "weight": v.weight,
                "share": if total > 0 { v.weight as f64 / total as f64 } else { 0.0 },
                "figures": f,
            })
        })
        .collect();
    // Variants removed (or renamed) since, with traces in the range: listed as retired, so
    // no request of the range goes missing from the view.
    for a in &figures {
        if let Some(g) = a.group.as_deref()
            && !exp_variants.iter().any(|v| v.name == g)
        {
            variants.push(json!({
                "variant": g,
                "weight": 0,
                "share": 0.0,
                "retired": true,
                "figures": a,
            }));
        }
    }
    Ok(Json(json!({
        "name": name,
        "object": kind.as_str(),
        "sticky": match sticky {
            signalbox_core::model::Sticky::None => None,
            signalbox_core::model::Sticky::User => Some("user"),
            signalbox_core::model::Sticky::Session => Some("session"),
        },
        "variants": variants,
    })))
}
