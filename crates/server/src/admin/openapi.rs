//! `GET /admin/v1/openapi.json`: filled in below.
use axum::Json;
use serde_json::{Value, json};

pub async fn document() -> Json<Value> {
    Json(json!({"openapi": "3.1.0"}))
}
