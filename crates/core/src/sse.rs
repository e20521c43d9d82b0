//! A small incremental SSE framer: splits a byte stream into whole events without
//! changing a byte, so streams pass through exactly as the upstream sent them.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;

#[derive(Default, Debug)]
pub struct SseFramer {
    buf: BytesMut,
    /// How far the unfinished event at the front of `buf` has been scanned, and where its
    /// current line starts: a push scans only the new bytes, so an event arriving in many
    /// chunks (a streamed image's base64, megabytes) is read once, not once per chunk.
    scanned: usize,
    line_start: usize,
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
        loop {
            match scan_event(&self.buf, self.scanned, self.line_start) {
                Scan::End(end) => {
                    ends.push(end);
                    (self.scanned, self.line_start) = (end, end);
                }
                Scan::More { at, line_start } => {
                    (self.scanned, self.line_start) = (at, line_start);
                    break;
                }
            }
        }
        let &from = ends.last()?;
        self.scanned -= from;
        self.line_start -= from;
        Some((self.buf.split_to(from).freeze(), ends))
    }

    /// Bytes of an event not yet terminated.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    pub fn take_pending(&mut self) -> Bytes {
        (self.scanned, self.line_start) = (0, 0);
        self.buf.split().freeze()
    }
}

enum Scan {
    /// The event ends here (just past its blank line).
    End(usize),
    /// Not complete yet: scanning resumes at `at`, in a line that starts at `line_start`.
    More { at: usize, line_start: usize },
}

/// Scan `buf` from `at` (inside a line starting at `line_start`) for the blank line that
/// ends an event. Lines end with LF, CRLF or CR; a CR at the very end waits for what follows
/// (it may be the first half of a CRLF).
fn scan_event(buf: &[u8], mut at: usize, mut line_start: usize) -> Scan {
    while let Some(k) = memchr::memchr2(b'\n', b'\r', &buf[at..]) {
        let i = at + k;
        let mut j = i + 1;
        if buf[i] == b'\r' {
            match buf.get(j) {
                None => return Scan::More { at: i, line_start },
                Some(b'\n') => j += 1,
                Some(_) => {}
            }
        }
        if i == line_start {
            return Scan::End(j);
        }
        line_start = j;
        at = j;
    }
    Scan::More {
        at: buf.len(),
        line_start,
    }
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
    let at = last_key(json, &USAGE_KEY, TAIL)?;
    let after = &json[at + USAGE_KEY.needle().len()..];
    let colon = after.iter().position(|b| !b.is_ascii_whitespace())?;
    scan_usage(after[colon..].strip_prefix(b":")?)
}

static USAGE_KEY: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));

/// How far from the end `usage` is looked for first: it sits near the end of an answer
/// (followed by a few short keys), so most answers are searched only this far.
const TAIL: usize = 1024;

/// Where the last match of `key` starts. Forward searches (vectorised) over the last `tail`
/// bytes first, then, if that holds none, over the whole text: a match in the tail is the
/// last one, since any later match would lie in the tail too. (A reverse search is not
/// vectorised: it cost ~4 instructions a byte, over more bytes than this reads.)
fn last_key(text: &[u8], key: &memchr::memmem::Finder<'_>, tail: usize) -> Option<usize> {
    let from = text.len().saturating_sub(tail);
    if let Some(i) = key.find_iter(&text[from..]).last() {
        return Some(from + i);
    }
    if from == 0 {
        return None;
    }
    key.find_iter(text).last()
}

/// Read a `usage` object from the bytes right after its key's colon, without serde: one
/// pass over the object, byte by byte, tracking brace depth (strings skipped) to find its
/// end, and reading the integer after each counter key. Unknown fields cost nothing.
/// `None` for `null` or anything malformed. (Jumping between quotes and braces with memchr
/// was slower on real usage objects: a call per token, each only a few bytes apart.)
pub fn scan_usage(after_colon: &[u8]) -> Option<Usage> {
    let start = after_colon.iter().position(|b| !b.is_ascii_whitespace())?;
    let b = &after_colon[start..];
    if b.first() != Some(&b'{') {
        return None;
    }
    let (mut prompt, mut completion, mut total, mut cached, mut reasoning) =
        (None, None, None, None, None);
    let mut depth = 1usize;
    let mut i = 1;
    loop {
        match *b.get(i)? {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    // No token counter at all (a transcription's `{"type": "duration",
                    // "seconds": 12}`): the tokens are unknown, not zero.
                    if prompt.is_none() && completion.is_none() && total.is_none() {
                        return None;
                    }
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
            b'"' => {
                let s = i + 1;
                let j = string_end(b, s)?;
                i = j + 1;
                let slot = match &b[s..j] {
                    b"prompt_tokens" | b"input_tokens" => &mut prompt,
                    b"completion_tokens" | b"output_tokens" => &mut completion,
                    b"total_tokens" => &mut total,
                    b"cached_tokens" => &mut cached,
                    b"reasoning_tokens" => &mut reasoning,
                    _ => continue,
                };
                // A counter key followed by `:` and an integer?
                while b.get(i).is_some_and(u8::is_ascii_whitespace) {
                    i += 1;
                }
                if b.get(i) != Some(&b':') {
                    continue;
                }
                i += 1;
                while b.get(i).is_some_and(u8::is_ascii_whitespace) {
                    i += 1;
                }
                let n_start = i;
                let mut n: u64 = 0;
                while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
                    n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
                    i += 1;
                }
                if i > n_start {
                    *slot = Some(n);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
}

/// The index of the quote that closes a JSON string whose text starts at `from` (escapes
/// skipped). Eight bytes at a time while none is a quote or a backslash: ~1.5 instructions a
/// byte instead of ~6.
pub(crate) fn string_end(b: &[u8], mut j: usize) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    loop {
        while let Some(chunk) = b.get(j..j + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            let (q, e) = (x ^ (LO * u64::from(b'"')), x ^ (LO * u64::from(b'\\')));
            // A zero byte in q or e is a quote or backslash in x; the lowest flag is exact.
            let hit = (q.wrapping_sub(LO) & !q | e.wrapping_sub(LO) & !e) & HI;
            if hit != 0 {
                j += (hit.trailing_zeros() / 8) as usize;
                break;
            }
            j += 8;
        }
        match *b.get(j)? {
            b'"' => return Some(j),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
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
        /// The choices (by `index`, bit i; index 63 stands for 63 and above) this chunk
        /// carries, and those of them with a `finish_reason`: a stream of several choices is
        /// complete only when every choice it started has finished.
        choices: u64,
        finished: u64,
        usage: Option<Usage>,
        usage_only: bool,
    },
    /// An in-band error object from the upstream.
    Error,
    /// A Responses API terminal event (`response.completed`, `.incomplete`): the stream is
    /// complete; it carries the usage. (`response.failed` is an [`EventInfo::Error`].)
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
    index: u32,
    #[serde(default)]
    finish_reason: Option<IgnoredAny>,
}

#[derive(Deserialize)]
struct ErrorPeek<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
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
        // Events passed through as they are (image streams): only an error is told apart,
        // `{"type":"error",...}` or `{"error":{...}}` (the rest is never judged).
        Protocol::Passthrough => match event_data(event) {
            None => EventInfo::Empty,
            Some(data) => match serde_json::from_slice::<ErrorPeek<'_>>(data.trim_ascii()) {
                Ok(p) if p.error.is_some() || p.kind.as_deref() == Some("error") => {
                    EventInfo::Error
                }
                // A transcription's `transcript.text.done` and an image stream's
                // `image_generation.completed` carry the request's usage.
                _ => EventInfo::Chunk {
                    finish: false,
                    choices: 0,
                    finished: 0,
                    usage: last_usage(&data),
                    usage_only: false,
                },
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
            Some("response.completed" | "response.incomplete") => EventInfo::Terminal {
                usage: last_usage(data),
            },
            // The response failed upstream: an error like an `error` event.
            Some("error" | "response.failed") => EventInfo::Error,
            _ => EventInfo::Chunk {
                finish: false,
                choices: 0,
                finished: 0,
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
        // An error member is an error whatever else the chunk carries (some servers send it
        // with a choice whose finish_reason is "error").
        Ok(c) if c.error.is_some() => EventInfo::Error,
        Ok(c) => {
            let choices = c.choices.unwrap_or_default();
            let bit = |ch: &ChoicePeek| 1u64 << ch.index.min(63);
            EventInfo::Chunk {
                finish: choices.iter().any(|ch| ch.finish_reason.is_some()),
                choices: choices.iter().map(bit).fold(0, |a, b| a | b),
                finished: choices
                    .iter()
                    .filter(|ch| ch.finish_reason.is_some())
                    .map(bit)
                    .fold(0, |a, b| a | b),
                usage_only: choices.is_empty() && c.usage.is_some(),
                usage: c.usage,
            }
        }
        Err(_) => EventInfo::Invalid,
    }
}

/// A chat completion chunk event with its top-level `usage` member taken out, everything else
/// byte for byte (key order, spacing of the other values, the `data: ` line around it).
/// `None` when the event holds no JSON object with a `usage` member.
pub fn without_usage(event: &[u8]) -> Option<Vec<u8>> {
    let open = memchr::memchr(b'{', event)?;
    let close = memchr::memrchr(b'}', event)?;
    let json = event.get(open..=close)?;
    let members: OrderedMembers = serde_json::from_slice(json).ok()?;
    if !members.0.iter().any(|(k, _)| k == "usage") {
        return None;
    }
    let mut out = Vec::with_capacity(event.len());
    out.extend_from_slice(&event[..open]);
    out.push(b'{');
    let mut first = true;
    for (k, v) in members.0.iter().filter(|(k, _)| k != "usage") {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(serde_json::to_string(k).ok()?.as_bytes());
        out.push(b':');
        out.extend_from_slice(v.get().as_bytes());
    }
    out.push(b'}');
    out.extend_from_slice(&event[close + 1..]);
    Some(out)
}

/// A JSON object's members in the order written, values untouched.
struct OrderedMembers(Vec<(String, Box<serde_json::value::RawValue>)>);

impl<'de> serde::Deserialize<'de> for OrderedMembers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = OrderedMembers;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = m.next_entry()? {
                    out.push(entry);
                }
                Ok(OrderedMembers(out))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_comes_out_of_a_chunk_and_nothing_else_moves() {
        let ev = b"data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"total_tokens\":5},\"z\":1}\n\n";
        let out = without_usage(ev).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"z\":1}\n\n"
        );
        assert!(without_usage(b"data: {\"id\":\"c1\"}\n\n").is_none());
    }

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
    fn usage_without_token_counters_is_unknown_not_zero() {
        assert_eq!(scan_usage(br#" {"type": "duration", "seconds": 12}"#), None);
        assert_eq!(scan_usage(b"{}"), None);
        assert!(
            scan_usage(br#"{"type": "tokens", "input_tokens": 3, "output_tokens": 2}"#).is_some()
        );
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

    /// Where events end in `input`, by the line rules alone, scanning from the start.
    fn event_ends(input: &[u8]) -> Vec<usize> {
        let (mut ends, mut from) = (Vec::new(), 0);
        while let Scan::End(end) = scan_event(&input[from..], 0, 0) {
            from += end;
            ends.push(from);
        }
        ends
    }

    proptest::proptest! {
        /// However a stream is cut into chunks, the framer hands out the same events, byte for
        /// byte, and keeps the rest pending: a CR, LF or CRLF split across chunks included.
        #[test]
        fn framing_does_not_depend_on_how_the_stream_is_chunked(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "data: x", "data: {\"a\":1}", "\n", "\r", "\r\n", ":c", "event: e", "id: 1", "data:", " ",
            ]), 0..40),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let input = parts.concat().into_bytes();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(input.len())).collect();
            cuts.push(0);
            cuts.push(input.len());
            cuts.sort_unstable();
            let mut f = SseFramer::new();
            let (mut out, mut ends) = (Vec::new(), Vec::new());
            for w in cuts.windows(2) {
                if let Some((block, at)) = f.push(&input[w[0]..w[1]]) {
                    ends.extend(at.iter().map(|e| out.len() + e));
                    out.extend_from_slice(&block);
                }
            }
            let want = event_ends(&input);
            proptest::prop_assert_eq!(&ends, &want);
            out.extend_from_slice(f.pending());
            proptest::prop_assert_eq!(out, input);
        }

        #[test]
        fn scan_usage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let _ = scan_usage(&bytes);
            let _ = last_usage(&bytes);
        }

        #[test]
        fn string_end_finds_the_closing_quote_past_escapes(text in "[a\\\\\"\u{e9}]{0,40}") {
            let b = text.as_bytes();
            let mut want = None;
            let mut j = 0;
            while j < b.len() {
                match b[j] {
                    b'"' => { want = Some(j); break; }
                    b'\\' => j += 2,
                    _ => j += 1,
                }
            }
            proptest::prop_assert_eq!(string_end(b, 0), want);
        }

        #[test]
        fn last_key_finds_the_last_match_whatever_the_tail(text in "[ab\"]{0,40}", tail in 0usize..48) {
            let key = memchr::memmem::Finder::new(b"a\"b");
            let want = (0..text.len().saturating_sub(2)).rev().find(|&i| &text.as_bytes()[i..i + 3] == b"a\"b");
            proptest::prop_assert_eq!(last_key(text.as_bytes(), &key, tail), want);
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
    fn passed_through_events_are_only_told_apart_when_they_are_errors() {
        let chunk = |ev: &[u8]| {
            matches!(
                inspect_as(Protocol::Passthrough, ev),
                EventInfo::Chunk { .. }
            )
        };
        assert!(chunk(b"event: image_generation.partial_image\ndata: {\"type\":\"image_generation.partial_image\",\"b64_json\":\"AAAA\"}\n\n"));
        assert!(chunk(b"data: not json\n\n"));
        for ev in [
            &b"event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"x\"}}\n\n"[..],
            b"data: {\"error\":{\"message\":\"x\",\"code\":\"server_error\"}}\n\n",
        ] {
            assert_eq!(inspect_as(Protocol::Passthrough, ev), EventInfo::Error);
        }
        assert_eq!(
            inspect_as(Protocol::Passthrough, b": keep-alive\n\n"),
            EventInfo::Empty
        );
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
                choices: 1,
                finished: 1,
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
