//! Reading only what routing needs from a JSON request body, and rewriting the `model`
//! field by splicing bytes instead of re-serialising the whole payload.

use crate::error::ApiError;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::ops::Range;

/// What the gateway reads from a JSON body; everything else passes through untouched.
#[derive(Debug, Clone)]
pub struct Peeked {
    pub model: String,
    /// Byte range of the `model` value (including its quotes) in the body.
    pub model_span: Range<usize>,
    pub stream: bool,
    /// `stream_options.include_usage` as the caller sent it.
    pub include_usage: bool,
    pub has_stream_options: bool,
    /// The body's `user` field, when it is a string.
    pub user: Option<String>,
    /// Which of the endpoint-defining fields are present (`messages`, `input`, `prompt`).
    pub has_messages: bool,
    pub has_input: bool,
    pub has_prompt: bool,
}

#[derive(Deserialize)]
struct Peek<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    /// Kept even when `null` (a plain `Option` would fold `null` into "absent").
    #[serde(borrow, default, deserialize_with = "present")]
    stream_options: Option<&'a RawValue>,
    #[serde(borrow, default)]
    user: Option<&'a RawValue>,
    #[serde(default)]
    messages: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    input: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    prompt: Option<serde::de::IgnoredAny>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

fn offset_in(outer: &[u8], inner: &str) -> Range<usize> {
    let start = inner.as_ptr() as usize - outer.as_ptr() as usize;
    start..start + inner.len()
}

impl Peeked {
    /// For bodies that are not JSON (uploads): only the model is known.
    pub fn for_model(model: String) -> Peeked {
        Peeked {
            model,
            model_span: 0..0,
            stream: false,
            include_usage: false,
            has_stream_options: false,
            user: None,
            has_messages: false,
            has_input: false,
            has_prompt: false,
        }
    }
}

/// The longest `model` a request may name.
pub const MAX_MODEL_BYTES: usize = 512;

/// A `model` longer than any model or route name: refused without being echoed back.
pub fn model_too_long() -> ApiError {
    ApiError::bad_request(format!("`model` is longer than {MAX_MODEL_BYTES} bytes"))
        .with_param("model")
}

/// A JSON value that should be a string, as a `String`: copied as it is when it has no
/// escapes (a routing name almost never does), else decoded by serde_json.
fn json_string(raw: &RawValue) -> Result<String, serde_json::Error> {
    let raw = raw.get();
    match raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(text) if !text.contains('\\') => Ok(text.to_string()),
        _ => serde_json::from_str(raw),
    }
}

/// Read `model`, `stream`, `stream_options` and `user` from a JSON object body.
pub fn peek(body: &[u8]) -> Result<Peeked, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => {
            return Err(ApiError::bad_request(
                "request body is empty; expected a JSON object",
            ));
        }
        Some(b'{') => {}
        Some(_) => {
            if serde_json::from_slice::<serde::de::IgnoredAny>(body).is_err() {
                return Err(ApiError::bad_request("request body is not valid JSON"));
            }
            return Err(ApiError::bad_request("request body must be a JSON object"));
        }
    }
    // The fields read below are checked as they are parsed; the rest only passes through, so
    // the whole body is checked for UTF-8 here (JSON text is UTF-8; an upstream would refuse it).
    if simdutf8::basic::from_utf8(body).is_err() {
        return Err(ApiError::bad_request(
            "request body is not valid JSON: it is not valid UTF-8",
        ));
    }
    let p: Peek<'_> = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let Some(model_raw) = p.model else {
        return Err(ApiError::bad_request("you must provide a model parameter").with_param("model"));
    };
    let model: String = match json_string(model_raw) {
        Ok(m) if m.len() > MAX_MODEL_BYTES => return Err(model_too_long()),
        Ok(m) if !m.is_empty() => m,
        Ok(_) => return Err(ApiError::bad_request("`model` must not be empty").with_param("model")),
        Err(_) => return Err(ApiError::bad_request("`model` must be a string").with_param("model")),
    };
    let stream = match p.stream.map(|r| r.get()) {
        None | Some("null") | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(ApiError::bad_request("`stream` must be a boolean").with_param("stream"));
        }
    };
    let (has_stream_options, include_usage) = match p.stream_options.map(|r| r.get()) {
        None => (false, false),
        // Present but null: an edit must replace it, not add a second key.
        Some("null") => (true, false),
        // An object (serde would also take an array, as a struct's fields in order).
        Some(raw) => match serde_json::from_str::<StreamOptions>(raw) {
            Ok(o) if raw.starts_with('{') => (true, o.include_usage.unwrap_or(false)),
            _ => {
                return Err(ApiError::bad_request("`stream_options` must be an object")
                    .with_param("stream_options"));
            }
        },
    };
    let user = p.user.and_then(|u| json_string(u).ok());
    Ok(Peeked {
        model_span: offset_in(body, model_raw.get()),
        model,
        stream,
        include_usage,
        has_stream_options,
        user,
        has_messages: p.messages.is_some(),
        has_input: p.input.is_some(),
        has_prompt: p.prompt.is_some(),
    })
}

/// A body gathered chunk by chunk: a body in one chunk (most) stays that chunk, uncopied;
/// chunks are joined only from the second on.
#[derive(Default)]
pub struct Gathered {
    first: Option<Bytes>,
    buf: bytes::BytesMut,
}

impl Gathered {
    /// Bytes gathered so far.
    #[inline]
    pub fn len(&self) -> usize {
        self.first.as_ref().map_or(0, Bytes::len) + self.buf.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[inline]
    pub fn push(&mut self, chunk: Bytes) {
        if chunk.is_empty() {
            return;
        }
        match self.first.take() {
            None if self.buf.is_empty() => self.first = Some(chunk),
            Some(f) => {
                self.buf.reserve(f.len() + chunk.len());
                self.buf.extend_from_slice(&f);
                self.buf.extend_from_slice(&chunk);
            }
            None => self.buf.extend_from_slice(&chunk),
        }
    }

    #[inline]
    pub fn into_bytes(self) -> Bytes {
        self.first.unwrap_or_else(|| self.buf.freeze())
    }
}

/// Build the upstream body: `model` replaced, variant params applied (they win over the
/// caller's), and `stream_options.include_usage` forced on when asked.
pub fn rewrite(
    body: &Bytes,
    peeked: &Peeked,
    model: &str,
    params: Option<&serde_json::Map<String, serde_json::Value>>,
    force_include_usage: bool,
) -> Result<Bytes, ApiError> {
    let needs_tree =
        params.is_some_and(|p| !p.is_empty()) || (force_include_usage && peeked.has_stream_options);
    if needs_tree {
        let mut obj: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
        obj.insert("model".into(), model.into());
        if let Some(p) = params {
            for (k, v) in p {
                match (k.as_str(), obj.get_mut(k), v) {
                    // The Responses API nests what a variant sets (`reasoning.effort`,
                    // `text.format`) beside the caller's other settings there (`summary`,
                    // `verbosity`): those are kept.
                    (
                        "reasoning" | "text",
                        Some(serde_json::Value::Object(caller)),
                        serde_json::Value::Object(set),
                    ) => {
                        for (ik, iv) in set {
                            caller.insert(ik.clone(), iv.clone());
                        }
                    }
                    _ => {
                        obj.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        if force_include_usage {
            let so = obj
                .entry("stream_options")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            if !so.is_object() {
                *so = serde_json::Value::Object(Default::default());
            }
            if let Some(o) = so.as_object_mut() {
                o.insert("include_usage".into(), true.into());
            }
        }
        return serde_json::to_vec(&obj)
            .map(Bytes::from)
            .map_err(|_| ApiError::internal());
    }
    const USAGE: &[u8] = br#""stream_options":{"include_usage":true},"#;
    let extra = if force_include_usage { USAGE.len() } else { 0 };
    let span = &peeked.model_span;
    // One buffer, the model written into it quoted. Sized exactly unless the model needs
    // escapes, so it becomes `Bytes` without another allocation.
    let mut out: Vec<u8> = Vec::with_capacity(body.len() - span.len() + model.len() + 2 + extra);
    let head = &body[..span.start];
    if force_include_usage {
        // The body starts with optional whitespace and `{` (checked by `peek`).
        let brace = head.iter().position(|b| *b == b'{').unwrap_or(0);
        out.extend_from_slice(&head[..=brace]);
        out.extend_from_slice(USAGE);
        out.extend_from_slice(&head[brace + 1..]);
    } else {
        out.extend_from_slice(head);
    }
    serde_json::to_writer(&mut out, model).map_err(|_| ApiError::internal())?;
    out.extend_from_slice(&body[span.end..]);
    Ok(Bytes::from(out))
}

/// A variant's params (chat completions' names) as `POST /v1/responses` names them:
/// `max_tokens`/`max_completion_tokens` are `max_output_tokens`, `reasoning_effort` is
/// `reasoning.effort`, `response_format` is `text.format` (a JSON schema's fields one level
/// up); `stop`, `seed` and the penalties, which the Responses API has no field for, are left
/// out. Anything else (`temperature`, `top_p`, what `params` sets) goes as it is.
pub fn responses_params(
    chat: &serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    use serde_json::{Value, json};
    let mut out = serde_json::Map::new();
    for (k, v) in chat {
        match k.as_str() {
            "max_tokens" => {
                if !chat.contains_key("max_completion_tokens") {
                    out.insert("max_output_tokens".into(), v.clone());
                }
            }
            "max_completion_tokens" => {
                out.insert("max_output_tokens".into(), v.clone());
            }
            "reasoning_effort" => {
                out.insert("reasoning".into(), json!({ "effort": v }));
            }
            "response_format" => {
                let format = match (v.get("type").and_then(Value::as_str), v.get("json_schema")) {
                    (Some("json_schema"), Some(Value::Object(schema))) => {
                        let mut f = schema.clone();
                        f.insert("type".into(), "json_schema".into());
                        Value::Object(f)
                    }
                    _ => v.clone(),
                };
                out.insert("text".into(), json!({ "format": format }));
            }
            "stop" | "seed" | "presence_penalty" | "frequency_penalty" => {}
            _ => {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    out
}

/// The field an endpoint's JSON body cannot do without, checked before anything goes
/// upstream (a chat body sent to `/v1/embeddings` names `input`).
pub fn check_fits(path: &str, p: &Peeked) -> Result<(), ApiError> {
    let (field, present) = match path {
        "/chat/completions" => ("messages", p.has_messages),
        "/embeddings" | "/audio/speech" => ("input", p.has_input),
        "/images/generations" => ("prompt", p.has_prompt),
        _ => return Ok(()),
    };
    if present {
        return Ok(());
    }
    let hint = if path != "/chat/completions" && p.has_messages {
        " (this looks like a chat body: chat goes to POST /v1/chat/completions)"
    } else {
        ""
    };
    Err(ApiError::bad_request(format!(
        "you must provide `{field}` for POST /v1{path}{hint}"
    ))
    .with_param(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A variant written in chat completions' terms reaches a Responses API upstream in its
    /// terms, and nothing it has no field for is sent.
    #[test]
    fn variant_params_take_the_responses_api_names() {
        let chat = serde_json::json!({
            "temperature": 0.2, "max_tokens": 50, "reasoning_effort": "low", "seed": 7,
            "stop": ["END"], "presence_penalty": 0.5, "frequency_penalty": 0.1,
            "response_format": {"type": "json_schema", "json_schema": {"name": "r", "schema": {"type": "object"}, "strict": true}},
            "service_tier": "flex"
        });
        let out = responses_params(chat.as_object().unwrap());
        assert_eq!(
            serde_json::Value::Object(out),
            serde_json::json!({
                "temperature": 0.2, "max_output_tokens": 50, "reasoning": {"effort": "low"},
                "text": {"format": {"type": "json_schema", "name": "r", "schema": {"type": "object"}, "strict": true}},
                "service_tier": "flex"
            })
        );
        // Set into the caller's own `reasoning` and `text`, whose other settings stay.
        let caller = Bytes::from_static(
            br#"{"model":"route::r","input":"hi","reasoning":{"summary":"auto"},"text":{"verbosity":"low"}}"#,
        );
        let p = peek(&caller).unwrap();
        let params = responses_params(chat.as_object().unwrap());
        let out: serde_json::Value =
            serde_json::from_slice(&rewrite(&caller, &p, "gpt-5", Some(&params), false).unwrap())
                .unwrap();
        assert_eq!(
            out["reasoning"],
            serde_json::json!({"summary": "auto", "effort": "low"})
        );
        assert_eq!(out["text"]["verbosity"], "low");
        assert_eq!(out["text"]["format"]["name"], "r");
        let both = serde_json::json!({"max_tokens": 5, "max_completion_tokens": 9, "response_format": {"type": "json_object"}});
        let out = responses_params(both.as_object().unwrap());
        assert_eq!(
            serde_json::Value::Object(out),
            serde_json::json!({"max_output_tokens": 9, "text": {"format": {"type": "json_object"}}})
        );
    }

    #[test]
    fn peek_reads_model_and_stream_without_touching_the_rest() {
        let body = br#" {"messages":[{"role":"user","content":"hi \"model\""}], "model" : "route::x", "stream":true}"#;
        let p = peek(body).unwrap();
        assert_eq!(p.model, "route::x");
        assert!(p.stream);
        assert!(!p.include_usage);
        assert_eq!(&body[p.model_span.clone()], br#""route::x""#);
    }

    #[test]
    fn rewrite_splices_model_and_keeps_other_bytes() {
        let body = Bytes::from_static(br#"{"model":"route::x","messages":[],"temperature":0.5}"#);
        let p = peek(&body).unwrap();
        let out = rewrite(&body, &p, "gpt-4o", None, false).unwrap();
        assert_eq!(
            &out[..],
            br#"{"model":"gpt-4o","messages":[],"temperature":0.5}"#
        );
        let out = rewrite(&body, &p, "gpt-4o", None, true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["model"], "gpt-4o");
        assert_eq!(v["temperature"], 0.5);
    }

    #[test]
    fn rewrite_applies_variant_params_over_the_callers() {
        let body = Bytes::from_static(
            br#"{"model":"route::x","temperature":0.9,"stream_options":{"include_usage":false}}"#,
        );
        let p = peek(&body).unwrap();
        let mut params = serde_json::Map::new();
        params.insert("temperature".into(), 0.2.into());
        let out = rewrite(&body, &p, "m", Some(&params), true).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["temperature"], 0.2);
        assert_eq!(v["stream_options"]["include_usage"], true);
    }

    #[test]
    fn a_null_stream_options_is_replaced_not_duplicated() {
        let body = Bytes::from_static(br#"{"model":"r","stream":true,"stream_options":null}"#);
        let p = peek(&body).unwrap();
        let out = rewrite(&body, &p, "m", None, true).unwrap();
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(text.matches("stream_options").count(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
    }

    #[test]
    fn peek_rejects_bad_bodies_with_the_right_param() {
        assert!(peek(b"").is_err());
        assert_eq!(
            peek(b"[1]").unwrap_err().message,
            "request body must be a JSON object"
        );
        assert_eq!(
            peek(b"{\"model\":3}").unwrap_err().param.as_deref(),
            Some("model")
        );
        assert_eq!(
            peek(b"{\"messages\":[]}").unwrap_err().param.as_deref(),
            Some("model")
        );
        assert!(peek(b"{\"model\":\"x\"").is_err());
        for so in ["[]", "[true]", "1", "\"x\""] {
            let body = format!(r#"{{"model":"x","stream_options":{so}}}"#);
            assert_eq!(
                peek(body.as_bytes()).unwrap_err().param.as_deref(),
                Some("stream_options"),
                "{so}"
            );
        }
        assert_eq!(
            peek(br#"{"model":"x","stream":"yes"}"#)
                .unwrap_err()
                .param
                .as_deref(),
            Some("stream")
        );
    }

    use proptest::prelude::*;

    /// JSON values without the keys `peek` reads (so the body's meaning is only its `model`).
    fn value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1000i32..1000).prop_map(|h| Value::from(f64::from(h) / 2.0)),
            "\\PC{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    fn key() -> impl Strategy<Value = String> {
        "\\PC{0,8}".prop_filter("a key peek reads", |k| {
            !["model", "stream", "stream_options", "user"].contains(&k.as_str())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Whatever the body holds around it and wherever `model` sits, `peek` finds it, and
        /// the rewritten body is the caller's object with only `model` changed (and
        /// `stream_options.include_usage` added when forced).
        #[test]
        fn rewrite_changes_only_the_model_of_any_object(
            fields in prop::collection::btree_map(key(), value(), 0..6),
            at in 0usize..7,
            model in "\\PC{1,40}",
            new_model in "\\PC{1,40}",
            spaces in prop::collection::vec(prop::sample::select(vec!["", " ", "\n", "\t "]), 4),
            force in any::<bool>(),
        ) {
            let mut entries: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
                .collect();
            let model_json = serde_json::Value::from(model.as_str()).to_string();
            let at = at.min(entries.len());
            entries.insert(at, format!("\"model\"{}:{}{model_json}{}", spaces[0], spaces[1], spaces[2]));
            let body = Bytes::from(format!("{}{{{}}}", spaces[3], entries.join(",")));

            let p = peek(&body).unwrap();
            prop_assert_eq!(&p.model, &model);
            prop_assert_eq!(&body[p.model_span.clone()], model_json.as_bytes());
            prop_assert!(!p.stream && !p.has_stream_options && p.user.is_none());

            let out = rewrite(&body, &p, &new_model, None, force).unwrap();
            let mut want: serde_json::Map<String, serde_json::Value> = fields.into_iter().collect();
            want.insert("model".into(), new_model.into());
            if force {
                want.insert("stream_options".into(), serde_json::json!({"include_usage": true}));
            }
            let got: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&out).unwrap();
            prop_assert_eq!(got, want);
        }

        /// Any bytes at all, and near-JSON built from JSON's tokens: `peek` answers (never
        /// panics), and accepts exactly the JSON objects with one `model`, a non-empty string,
        /// whose `stream` and `stream_options` (at most one each) have their types.
        #[test]
        fn peek_accepts_exactly_objects_with_a_string_model(bytes in prop_oneof![
            1 => prop::collection::vec(any::<u8>(), 0..64),
            3 => (
                prop::collection::vec((
                    prop::sample::select(vec!["model", "stream", "stream_options", "user", "x", ""]),
                    prop::sample::select(vec![
                        "\"x\"", "\"\"", "\"\\u00e9\\\"\"", "1", "null", "true", "{}", "[]",
                        "{\"include_usage\":true}",
                    ]),
                ), 0..5),
                proptest::option::of((any::<prop::sample::Index>(), prop::sample::select(b"{}[]:,\" \\x1".to_vec()))),
            )
                .prop_map(|(entries, mutation)| {
                    let entries: Vec<String> = entries.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
                    let mut b = format!("{{{}}}", entries.join(",")).into_bytes();
                    // Now and then one byte overwritten: near misses of valid bodies.
                    if let Some((i, c)) = mutation {
                        let i = i.index(b.len());
                        b[i] = c;
                    }
                    b
                }),
        ]) {
            let entries = serde_json::from_slice::<Entries>(&bytes).ok();
            let valid = entries.is_some_and(|Entries(e)| {
                let one = |k: &str| e.iter().filter(|(n, _)| n == k).count() <= 1;
                let get = |k: &str| e.iter().find(|(n, _)| n == k).map(|(_, v)| v);
                ["model", "stream", "stream_options", "user"].into_iter().all(one)
                    && get("model").and_then(|m| m.as_str()).is_some_and(|m| !m.is_empty())
                    && get("stream").is_none_or(|s| s.is_boolean() || s.is_null())
                    && get("stream_options").is_none_or(|s| s.is_object() || s.is_null())
            });
            prop_assert_eq!(peek(&bytes).is_ok(), valid, "{}", String::from_utf8_lossy(&bytes));
        }
    }

    /// A JSON object's entries in order, duplicates kept.
    struct Entries(Vec<(String, serde_json::Value)>);

    impl<'de> Deserialize<'de> for Entries {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Entries;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut m: A,
                ) -> Result<Entries, A::Error> {
                    let mut out = Vec::new();
                    while let Some(entry) = m.next_entry()? {
                        out.push(entry);
                    }
                    Ok(Entries(out))
                }
            }
            d.deserialize_map(V)
        }
    }
}
