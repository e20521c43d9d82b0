//! A small incremental SSE framer: splits a byte stream into whole events without
//! changing a byte, so streams pass through exactly as the upstream sent them.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Default, Debug)]
pub struct SseFramer {
    buf: BytesMut,
}

impl SseFramer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Add bytes; returns the complete events now available, as one contiguous block
    /// (the exact input bytes) plus the end offset of each event inside it.
    pub fn push(&mut self, chunk: &[u8]) -> Option<(Bytes, Vec<usize>)> {
        self.buf.extend_from_slice(chunk);
        let mut ends = Vec::new();
        let mut from = 0;
        while let Some(end) = event_end(&self.buf[from..]) {
            from += end;
            ends.push(from);
        }
        if ends.is_empty() {
            return None;
        }
        Some((self.buf.split_to(from).freeze(), ends))
    }

    /// Bytes of an event not yet terminated.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    pub fn take_pending(&mut self) -> Bytes {
        self.buf.split().freeze()
    }
}

/// Offset just past the blank line that ends the first event in `buf`, if complete.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if b == b'\n' || b == b'\r' {
            let empty = i == line_start;
            let mut j = i + 1;
            if b == b'\r' {
                if j >= buf.len() {
                    return None; // a CR at the end may be the first half of CRLF
                }
                if buf[j] == b'\n' {
                    j += 1;
                }
            }
            if empty {
                return Some(j);
            }
            line_start = j;
            i = j;
            continue;
        }
        i += 1;
    }
    None
}

/// The `data` of an event: its `data:` lines joined by `\n`. `None` for events with no data.
pub fn event_data(event: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for line in event.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            parts.push(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    match parts.len() {
        0 => None,
        1 => Some(std::borrow::Cow::Borrowed(parts[0])),
        _ => Some(std::borrow::Cow::Owned(parts.join(&b'\n'))),
    }
}

/// Token usage in OpenAI's terms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing)]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default, skip_serializing)]
    pub completion_tokens_details: Option<CompletionDetails>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl Usage {
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .unwrap_or(0)
    }
    pub fn reasoning_tokens(&self) -> u64 {
        self.completion_tokens_details
            .and_then(|d| d.reasoning_tokens)
            .unwrap_or(0)
    }
}

/// The last `"usage"` object in a JSON document (an answer or an event), read with
/// [`scan_usage`]. Inside JSON strings quotes are escaped, so the key pattern only matches
/// real keys; the last one is the top-level usage in OpenAI's and the Responses API's shapes.
pub fn last_usage(json: &[u8]) -> Option<Usage> {
    // A reverse substring search: usage sits near the end of an answer. (Hopping back quote
    // to quote with memrchr was measured slower: one call per quote.)
    use memchr::memmem::FinderRev;
    use std::sync::LazyLock;
    static USAGE: LazyLock<FinderRev<'static>> = LazyLock::new(|| FinderRev::new(b"\"usage\""));
    let after = &json[USAGE.rfind(json)? + 7..];
    let colon = after.iter().position(|b| !b.is_ascii_whitespace())?;
    scan_usage(after[colon..].strip_prefix(b":")?)
}

/// Read a `usage` object from the bytes right after its key's colon, without serde: the
/// object is delimited by brace matching (skipping strings), then each counter is found by
/// its quoted key. Unknown fields cost nothing. `None` for `null` or anything malformed.
pub fn scan_usage(after_colon: &[u8]) -> Option<Usage> {
    let start = after_colon.iter().position(|b| !b.is_ascii_whitespace())?;
    let b = &after_colon[start..];
    if b.first() != Some(&b'{') {
        return None;
    }
    // One pass: track depth to find the end; at each key, read a following integer.
    let (mut prompt, mut completion, mut total, mut cached, mut reasoning) =
        (None, None, None, None, None);
    let mut depth = 0usize;
    let mut i = 0;
    // Jump from one brace or quote to the next (memchr): the bytes between are only
    // separators and numbers, read right after their key.
    while i < b.len() {
        i += memchr::memchr3(b'"', b'{', b'}', &b[i..])?;
        match b[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    let prompt_tokens = prompt.unwrap_or(0);
                    let completion_tokens = completion.unwrap_or(0);
                    return Some(Usage {
                        prompt_tokens,
                        completion_tokens,
                        total_tokens: total.unwrap_or(prompt_tokens + completion_tokens),
                        prompt_tokens_details: cached.map(|c| PromptDetails {
                            cached_tokens: Some(c),
                        }),
                        completion_tokens_details: reasoning.map(|r| CompletionDetails {
                            reasoning_tokens: Some(r),
                        }),
                    });
                }
            }
            _ => {
                // A string: find its end (skipping escapes).
                let s = i + 1;
                let mut j = s;
                loop {
                    if j >= b.len() {
                        return None;
                    }
                    j += memchr::memchr2(b'"', b'\\', &b[j..])?;
                    if b[j] == b'"' {
                        break;
                    }
                    j += 2;
                }
                let key = &b[s..j];
                i = j + 1;
                // A key followed by `:` and an integer?
                while i < b.len() && b[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i < b.len() && b[i] == b':' {
                    i += 1;
                    while i < b.len() && b[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    let n_start = i;
                    let mut n: u64 = 0;
                    while i < b.len() && b[i].is_ascii_digit() {
                        n = n.saturating_mul(10).saturating_add(u64::from(b[i] - b'0'));
                        i += 1;
                    }
                    if i > n_start {
                        let slot = match key {
                            b"prompt_tokens" | b"input_tokens" => &mut prompt,
                            b"completion_tokens" | b"output_tokens" => &mut completion,
                            b"total_tokens" => &mut total,
                            b"cached_tokens" => &mut cached,
                            b"reasoning_tokens" => &mut reasoning,
                            _ => continue,
                        };
                        *slot = Some(n);
                    }
                }
                continue;
            }
        }
        i += 1;
    }
    None
}

/// Which streaming protocol an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Chat completions chunks, ended by `data: [DONE]`.
    ChatCompletions,
    /// Responses API named events, ended by `response.completed` (or `.incomplete`/`.failed`).
    Responses,
    /// Any other event stream (image generation): passed through untouched, complete when
    /// the upstream closes it.
    Passthrough,
}

/// What the gateway learns from one stream event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventInfo {
    Done,
    /// A chunk. `usage_only`: no choices and a usage object (the include_usage chunk).
    Chunk {
        finish: bool,
        usage: Option<Usage>,
        usage_only: bool,
    },
    /// An in-band error object from the upstream.
    Error,
    /// A Responses API terminal event (`response.completed`, `.incomplete`, `.failed`): the
    /// stream is complete; it carries the usage.
    Terminal {
        usage: Option<Usage>,
    },
    /// Not JSON: passed through and counted.
    Invalid,
    /// A comment or an event without data.
    Empty,
}

#[derive(Deserialize)]
struct ChunkPeek {
    #[serde(default)]
    choices: Option<Vec<ChoicePeek>>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ChoicePeek {
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct TypePeek<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
}

/// Inspect an event of the given protocol.
pub fn inspect_as(protocol: Protocol, event: &[u8]) -> EventInfo {
    match protocol {
        Protocol::ChatCompletions => inspect(event),
        Protocol::Responses => inspect_responses(event),
        Protocol::Passthrough => match event_data(event) {
            None => EventInfo::Empty,
            Some(_) => EventInfo::Chunk {
                finish: false,
                usage: None,
                usage_only: false,
            },
        },
    }
}

/// The event's data, or what an event without JSON data means (`[DONE]`, a comment, empty).
fn json_data(event: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, EventInfo> {
    let data = event_data(event).ok_or(EventInfo::Empty)?;
    match data.as_ref().trim_ascii() {
        b"[DONE]" => Err(EventInfo::Done),
        b"" => Err(EventInfo::Empty),
        _ => Ok(data),
    }
}

fn inspect_responses(event: &[u8]) -> EventInfo {
    let data = match json_data(event) {
        Ok(d) => d,
        Err(info) => return info,
    };
    let data = data.as_ref().trim_ascii();
    match serde_json::from_slice::<TypePeek<'_>>(data) {
        Ok(t) => match t.kind.as_deref() {
            Some("response.completed" | "response.incomplete" | "response.failed") => {
                EventInfo::Terminal {
                    usage: last_usage(data),
                }
            }
            Some("error") => EventInfo::Error,
            _ => EventInfo::Chunk {
                finish: false,
                usage: None,
                usage_only: false,
            },
        },
        Err(_) => EventInfo::Invalid,
    }
}

pub fn inspect(event: &[u8]) -> EventInfo {
    let data = match json_data(event) {
        Ok(d) => d,
        Err(info) => return info,
    };
    let trimmed = data.as_ref().trim_ascii();
    match serde_json::from_slice::<ChunkPeek>(trimmed) {
        Ok(c) if c.error.is_some() && c.choices.is_none() => EventInfo::Error,
        Ok(c) => {
            let choices = c.choices.unwrap_or_default();
            EventInfo::Chunk {
                finish: choices.iter().any(|ch| ch.finish_reason.is_some()),
                usage_only: choices.is_empty() && c.usage.is_some(),
                usage: c.usage,
            }
        }
        Err(_) => EventInfo::Invalid,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framer_splits_events_across_chunks_without_changing_bytes() {
        let mut f = SseFramer::new();
        assert!(f.push(b"data: {\"a\":1}\n").is_none());
        let (block, ends) = f.push(b"\ndata: {\"b\":2}\r\n\r\ndata: [DO").unwrap();
        assert_eq!(&block[..], b"data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n");
        assert_eq!(ends, vec![15, 32]);
        let (block, _) = f.push(b"NE]\n\n").unwrap();
        assert_eq!(inspect(&block), EventInfo::Done);
    }

    #[test]
    fn scan_usage_reads_counters_and_ignores_the_rest() {
        let u = scan_usage(br#" {"prompt_tokens": 12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":2},"note":"a } brace"} , "x": 1"#).unwrap();
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.total_tokens),
            (12, 5, 17)
        );
        assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (4, 2));
        assert_eq!(scan_usage(b" null"), None);
        assert_eq!(scan_usage(b"{\"prompt_tokens\":1"), None, "unterminated");
        let u = scan_usage(br#"{"prompt_tokens":3,"completion_tokens":4}"#).unwrap();
        assert_eq!((u.total_tokens, u.cached_tokens()), (7, 0));
        // Escaped quotes and braces inside strings are not structure.
        let u = scan_usage(
            br#"{"note":"say \"}\" {here","prompt_tokens":2,"x\\":{"total_tokens":"9"}}"#,
        )
        .unwrap();
        assert_eq!((u.prompt_tokens, u.total_tokens), (2, 2));
        for cut in [
            &br#"{"a":"\"#[..],
            br#"{"a":"x\""#,
            br#"{""#,
            b"{",
            br#"{"a":{"#,
        ] {
            assert_eq!(scan_usage(cut), None, "{}", String::from_utf8_lossy(cut));
        }
    }

    proptest::proptest! {
        #[test]
        fn scan_usage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = scan_usage(&bytes);
            let _ = last_usage(&bytes);
        }

        #[test]
        fn scan_usage_reads_what_serde_reads(p in 0u64..1_000_000, c in 0u64..1_000_000, pad in "[a-z\\\\\"{} ]{0,12}") {
            let obj = serde_json::json!({"note": pad, "prompt_tokens": p, "completion_tokens": c, "d": {"cached_tokens": 1}});
            let text = serde_json::to_string(&obj).unwrap_or_default();
            let u = scan_usage(text.as_bytes());
            proptest::prop_assert_eq!(u.map(|u| (u.prompt_tokens, u.completion_tokens, u.cached_tokens())), Some((p, c, 1)));
        }
    }

    #[test]
    fn responses_events_end_on_completed_with_usage() {
        let done = b"event: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":9,\"response\":{\"id\":\"resp_1\",\"usage\":{\"input_tokens\":5,\"input_tokens_details\":{\"cached_tokens\":2},\"output_tokens\":7,\"output_tokens_details\":{\"reasoning_tokens\":1},\"total_tokens\":12}}}\n\n";
        match inspect_as(Protocol::Responses, done) {
            EventInfo::Terminal { usage: Some(u) } => {
                assert_eq!(
                    (u.prompt_tokens, u.completion_tokens, u.total_tokens),
                    (5, 7, 12)
                );
                assert_eq!((u.cached_tokens(), u.reasoning_tokens()), (2, 1));
            }
            other => panic!("{other:?}"),
        }
        let delta = b"event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"delta\":\"hi\"}\n\n";
        assert!(matches!(
            inspect_as(Protocol::Responses, delta),
            EventInfo::Chunk { finish: false, .. }
        ));
        let err = b"event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"x\"}\n\n";
        assert_eq!(inspect_as(Protocol::Responses, err), EventInfo::Error);
    }

    #[test]
    fn inspect_finds_finish_reason_usage_and_errors() {
        let e = b"data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n";
        assert_eq!(
            inspect(e),
            EventInfo::Chunk {
                finish: true,
                usage: None,
                usage_only: false
            }
        );
        let u = b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4,\"total_tokens\":7}}\n\n";
        match inspect(u) {
            EventInfo::Chunk {
                usage_only: true,
                usage: Some(us),
                ..
            } => assert_eq!(us.total_tokens, 7),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            inspect(b"data: {\"error\":{\"message\":\"x\"}}\n\n"),
            EventInfo::Error
        );
        assert_eq!(inspect(b"data: not json\n\n"), EventInfo::Invalid);
        assert_eq!(inspect(b": keep-alive\n\n"), EventInfo::Empty);
    }
}
