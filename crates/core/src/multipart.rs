//! `multipart/form-data` uploads (audio transcription): read once, kept for replay.
//!
//! The gateway reads the `model` field and re-encodes every other part into a replay store:
//! in memory up to [`SPILL_THRESHOLD`], then in an anonymous temporary file (unlinked at
//! creation, so nothing is left behind; the handle closes when the request ends). Each
//! attempt — a retry or a fallback — sends a fresh copy: the target's `model` part first,
//! then the stored parts, with an exact `Content-Length`.

use crate::error::ApiError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::StatusCode;
use tokio::io::AsyncWriteExt;

/// A replayed upload as it streams upstream.
pub type UploadStream = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// Bodies larger than this are spilled to a temporary file.
pub const SPILL_THRESHOLD: usize = 1024 * 1024;

enum Store {
    Memory(Vec<Bytes>),
    /// While the upload is being read.
    Spilling(tokio::fs::File),
    /// Read back with positional reads, so an abandoned attempt still reading its copy can
    /// never move another attempt's position.
    File(std::sync::Arc<std::fs::File>),
}

/// An upload kept for replay.
pub struct MultipartBody {
    pub model: String,
    /// The `stream` field said `true`: the answer is a stream of events.
    pub stream: bool,
    boundary: String,
    store: Store,
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
    /// Keep a piece of the body; past the threshold, move everything to a temporary file.
    /// File work goes through tokio's blocking pool, never on the request's thread.
    async fn push(&mut self, b: Bytes) -> Result<(), ApiError> {
        self.len += b.len() as u64;
        match &mut self.store {
            Store::Memory(parts) => {
                parts.push(b);
                if self.len as usize > SPILL_THRESHOLD {
                    let f = tokio::task::spawn_blocking(tempfile::tempfile)
                        .await
                        .map_err(|e| spill_error(std::io::Error::other(e)))?
                        .map_err(spill_error)?;
                    let mut f = tokio::fs::File::from_std(f);
                    for part in parts.iter() {
                        f.write_all(part).await.map_err(spill_error)?;
                    }
                    self.store = Store::Spilling(f);
                }
            }
            Store::Spilling(f) => f.write_all(&b).await.map_err(spill_error)?,
            Store::File(_) => return Err(spill_error(std::io::Error::other("store is closed"))),
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
    let mut stream = false;
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
        if name == "stream" {
            // Read (the answer is then a stream), and kept for replay like any field.
            let text = field.text().await.map_err(bad)?;
            stream = text.trim().eq_ignore_ascii_case("true");
            let part = format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"stream\"\r\n\r\n{text}\r\n"
            );
            w.push(Bytes::from(part)).await?;
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
        w.push(Bytes::from(head)).await?;
        while let Some(chunk) = field.chunk().await.map_err(bad)? {
            w.push(chunk).await?;
        }
        w.push(Bytes::from_static(b"\r\n")).await?;
    }
    w.push(Bytes::from(format!("--{boundary}--\r\n"))).await?;
    let Some(model) = model.filter(|m| !m.is_empty()) else {
        return Err(ApiError::bad_request("you must provide a `model` field").with_param("model"));
    };
    if file_name.is_none() {
        return Err(
            ApiError::bad_request("you must provide a `file` field with the audio")
                .with_param("file"),
        );
    }
    w.store = match w.store {
        Store::Spilling(mut f) => {
            f.flush().await.map_err(spill_error)?;
            Store::File(std::sync::Arc::new(f.into_std().await))
        }
        other => other,
    };
    Ok(MultipartBody {
        model,
        stream,
        boundary,
        store: w.store,
        len: w.len,
        file_name,
    })
}

impl MultipartBody {
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    pub fn spilled(&self) -> bool {
        matches!(self.store, Store::File(_) | Store::Spilling(_))
    }

    /// A fresh copy of the upload with `model` set, and its exact length.
    pub async fn replay(&self, model: &str) -> Result<(u64, UploadStream), ApiError> {
        let head = Bytes::from(format!(
            "--{}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n{model}\r\n",
            self.boundary
        ));
        let len = head.len() as u64 + self.len;
        let first = futures_util::stream::once(async move { Ok::<_, std::io::Error>(head) });
        match &self.store {
            Store::Memory(parts) => {
                let rest = futures_util::stream::iter(parts.clone().into_iter().map(Ok));
                Ok((len, Box::pin(first.chain(rest))))
            }
            Store::File(f) => {
                let file = f.clone();
                let total = self.len;
                let rest = futures_util::stream::unfold(0u64, move |offset| {
                    let file = file.clone();
                    async move {
                        if offset >= total {
                            return None;
                        }
                        let want = (total - offset).min(64 * 1024) as usize;
                        let read = tokio::task::spawn_blocking(move || {
                            use std::os::unix::fs::FileExt;
                            let mut buf = vec![0u8; want];
                            let n = file.read_at(&mut buf, offset)?;
                            buf.truncate(n);
                            Ok::<_, std::io::Error>(buf)
                        })
                        .await
                        .map_err(std::io::Error::other)
                        .and_then(|r| r);
                        match read {
                            Ok(buf) if buf.is_empty() => Some((
                                Err(std::io::Error::other(
                                    "spilled upload is shorter than written",
                                )),
                                total,
                            )),
                            Ok(buf) => {
                                let next = offset + buf.len() as u64;
                                Some((Ok(Bytes::from(buf)), next))
                            }
                            Err(e) => Some((Err(e), total)),
                        }
                    }
                });
                Ok((len, Box::pin(first.chain(rest))))
            }
            Store::Spilling(_) => Err(spill_error(std::io::Error::other(
                "upload still being read",
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upload(size: usize) -> (String, Vec<u8>) {
        let boundary = "XyZ123".to_string();
        let mut body = Vec::new();
        body.extend_from_slice(b"--XyZ123\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\nContent-Type: audio/wav\r\n\r\n");
        body.extend((0..size).map(|i| (i % 251) as u8));
        body.extend_from_slice(b"\r\n--XyZ123\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nroute::listen\r\n--XyZ123--\r\n");
        (boundary, body)
    }

    async fn collect(mut s: UploadStream) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(b) = s.next().await {
            out.extend_from_slice(&b.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn large_uploads_spill_and_every_replay_is_identical_with_its_own_model() {
        for (size, spills) in [(1000usize, false), (3 * SPILL_THRESHOLD, true)] {
            let (boundary, body) = upload(size);
            let chunks: Vec<Result<Bytes, std::io::Error>> = body
                .chunks(7000)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect();
            let m = ingest(futures_util::stream::iter(chunks), boundary, 64 << 20)
                .await
                .unwrap();
            assert_eq!(m.model, "route::listen");
            assert_eq!(m.spilled(), spills, "size {size}");
            let (len_a, a) = m.replay("whisper-1").await.unwrap();
            let a = collect(a).await;
            let (_, b) = m.replay("whisper-2").await.unwrap();
            let b = collect(b).await;
            assert_eq!(a.len() as u64, len_a, "Content-Length is exact");
            assert_eq!(a.len(), b.len());
            assert!(String::from_utf8_lossy(&a[..120]).contains("whisper-1"));
            assert!(String::from_utf8_lossy(&b[..120]).contains("whisper-2"));
            let file_a = &a[a.len() - size - 20..];
            let file_b = &b[b.len() - size - 20..];
            assert_eq!(file_a, file_b, "the same file bytes on every replay");
        }
    }
}
