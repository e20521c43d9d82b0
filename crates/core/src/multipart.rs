//! `multipart/form-data` uploads (audio transcription): read once, kept for replay.
//!
//! The gateway reads the `model` field and re-encodes every other part into a replay store:
//! in memory up to [`SPILL_THRESHOLD`], then in an anonymous temporary file (unlinked at
//! creation, so nothing is left behind; the handle closes when the request ends). Each
//! attempt — a retry or a fallback — sends a fresh copy: the target's `model` part first,
//! then the stored parts, with an exact `Content-Length`.

use crate::error::{ApiError, ErrorCode};
use bytes::Bytes;
use futures_util::{Stream, StreamExt, TryStreamExt};
use http::StatusCode;
use std::io::{Seek, SeekFrom, Write};

/// A replayed upload as it streams upstream.
pub type UploadStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Bodies larger than this are spilled to a temporary file.
pub const SPILL_THRESHOLD: usize = 1024 * 1024;

enum Store {
    Memory(Vec<Bytes>),
    File(std::fs::File),
}

/// An upload kept for replay.
pub struct MultipartBody {
    pub model: String,
    boundary: String,
    store: std::sync::Mutex<Store>,
    len: u64,
    pub file_name: Option<String>,
}

impl std::fmt::Debug for MultipartBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultipartBody")
            .field("model", &self.model)
            .field("len", &self.len)
            .finish()
    }
}

/// `Content-Type` boundary of a multipart request, or a 415.
pub fn boundary_of(content_type: Option<&str>, endpoint: &str) -> Result<String, ApiError> {
    let unsupported = || {
        ApiError::bad_request(format!(
            "{endpoint} takes multipart/form-data with a `file` and a `model` field"
        ))
        .with_status(StatusCode::UNSUPPORTED_MEDIA_TYPE)
    };
    let ct = content_type.ok_or_else(unsupported)?;
    if !ct
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
    {
        return Err(unsupported());
    }
    multer::parse_boundary(ct).map_err(|_| unsupported())
}

fn quote(s: &str) -> String {
    s.replace(['\r', '\n'], " ").replace('"', "%22")
}

struct Writer {
    store: Store,
    len: u64,
}

impl Writer {
    fn push(&mut self, b: Bytes) -> Result<(), ApiError> {
        self.len += b.len() as u64;
        if let Store::Memory(parts) = &mut self.store {
            parts.push(b);
            if self.len as usize > SPILL_THRESHOLD {
                let mut file = tempfile::tempfile().map_err(spill_error)?;
                for part in parts.iter() {
                    file.write_all(part).map_err(spill_error)?;
                }
                self.store = Store::File(file);
            }
            return Ok(());
        }
        if let Store::File(f) = &mut self.store {
            f.write_all(&b).map_err(spill_error)?;
        }
        Ok(())
    }
}

fn spill_error(e: std::io::Error) -> ApiError {
    tracing::error!("cannot spill an upload to a temporary file: {e}");
    ApiError::internal()
}

/// Read an upload, keeping every part except `model` for replay.
pub async fn ingest<S, E>(
    stream: S,
    boundary: String,
    limit: usize,
) -> Result<MultipartBody, ApiError>
where
    S: Stream<Item = Result<Bytes, E>> + Send + Unpin + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
{
    let too_large = || {
        ApiError::bad_request(format!("upload is larger than the limit of {limit} bytes"))
            .with_status(StatusCode::PAYLOAD_TOO_LARGE)
    };
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit as u64));
    let mut form = multer::Multipart::with_constraints(stream, boundary.clone(), constraints);
    let mut w = Writer {
        store: Store::Memory(Vec::new()),
        len: 0,
    };
    let mut model = None;
    let mut file_name = None;
    let bad = |e: multer::Error| match e {
        multer::Error::StreamSizeExceeded { .. } | multer::Error::FieldSizeExceeded { .. } => {
            too_large()
        }
        other => ApiError::bad_request(format!("malformed multipart body: {other}")),
    };
    while let Some(mut field) = form.next_field().await.map_err(bad)? {
        let name = field.name().unwrap_or_default().to_string();
        if name == "model" {
            let text = field.text().await.map_err(bad)?;
            model = Some(text.trim().to_string());
            continue;
        }
        let mut head = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"",
            quote(&name)
        );
        if let Some(f) = field.file_name() {
            head.push_str(&format!("; filename=\"{}\"", quote(f)));
        }
        if name == "file" {
            file_name = Some(field.file_name().unwrap_or_default().to_string());
        }
        head.push_str("\r\n");
        if let Some(ct) = field.content_type() {
            head.push_str(&format!("Content-Type: {ct}\r\n"));
        }
        head.push_str("\r\n");
        w.push(Bytes::from(head))?;
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            w.push(chunk)?;
        }
        w.push(Bytes::from_static(b"\r\n"))?;
    }
    w.push(Bytes::from(format!("--{boundary}--\r\n")))?;
    let Some(model) = model.filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request("you must provide a `model` field").with_param("model"));
    };
    if file_name.is_none() {
        return Err(
            ApiError::bad_request("you must provide a `file` field with the audio")
                .with_param("file"),
        );
    }
    if let Store::File(f) = &mut w.store {
        f.flush().map_err(spill_error)?;
    }
    Ok(MultipartBody {
        model,
        boundary,
        store: std::sync::Mutex::new(w.store),
        len: w.len,
        file_name,
    })
}

impl MultipartBody {
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    pub fn spilled(&self) -> bool {
        matches!(
            *self.store.lock().unwrap_or_else(|e| e.into_inner()),
            Store::File(_)
        )
    }

    /// A fresh copy of the upload with `model` set, and its exact length.
    pub fn replay(&self, model: &str) -> Result<(u64, UploadStream), ApiError> {
        let head = Bytes::from(format!(
            "--{}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n",
            self.boundary
        ));
        let len = head.len() as u64 + self.len;
        let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) });
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        match &*store {
            Store::Memory(parts) => {
                let rest = futures_util::stream::iter(parts.clone().into_iter().map(Ok));
                Ok((len, Box::pin(first.chain(rest))))
            }
            Store::File(f) => {
                let mut f = f.try_clone().map_err(spill_error)?;
                f.seek(SeekFrom::Start(0)).map_err(spill_error)?;
                let reader = tokio_util::io::ReaderStream::with_capacity(
                    tokio::fs::File::from_std(f),
                    64 * 1024,
                );
                Ok((
                    len,
                    Box::pin(first.chain(reader.map_err(std::io::Error::other))),
                ))
            }
        }
    }
}

/// An upstream error for a multipart body that could not be replayed.
pub fn replay_failed() -> ApiError {
    ApiError::new(ErrorCode::Internal, "the upload could not be replayed")
}
