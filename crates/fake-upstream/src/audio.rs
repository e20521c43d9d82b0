//! `POST /v1/audio/speech`, `/v1/audio/transcriptions` and `/v1/audio/translations`.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::CONTENT_TYPE;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Behaviour;
use crate::body::End;
use crate::handler::{Cx, Resp};
use crate::media::{self, AudioFormat};
use crate::multipart;
use crate::util::fnv1a;

const MAX_SPEECH_INPUT: usize = 4096;
const TEXT_PLAIN: &str = "text/plain; charset=utf-8";
const SPEECH_FORMATS: &[&str] = &["mp3", "opus", "aac", "flac", "wav", "pcm"];
const TRANSCRIPT_FORMATS: &[&str] = &["json", "text", "srt", "verbose_json", "vtt"];
/// Assumed bit rate of uploads that are not WAV files (128 kbit/s).
const ASSUMED_BYTES_PER_SEC: f64 = 16_000.0;
const WORDS_PER_SEGMENT: usize = 3;

/// Which of the two audio-to-text endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    Transcribe,
    Translate,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Transcribe => "transcribe",
            Task::Translate => "translate",
        }
    }
}

#[derive(Deserialize)]
struct SpeechRequest {
    model: Option<String>,
    input: Option<String>,
    voice: Option<Value>,
    response_format: Option<String>,
    speed: Option<f64>,
}

/// Length of the speech for `input` at `speed`: 200 ms plus 12 ms a character,
/// at most 2 s, divided by the speed.
fn speech_ms(input: &str, speed: f64) -> u32 {
    let chars = input.chars().count().min(150) as u32;
    let ms = f64::from(200 + 12 * chars) / speed;
    ms.round().clamp(50.0, 8_000.0) as u32
}

impl Cx<'_> {
    pub(crate) fn speech(&self, body: &[u8], behaviour: &Behaviour) -> Resp {
        let req: SpeechRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return self.invalid_json(&e),
        };
        if req.model.is_none() {
            return self.missing("model");
        }
        let Some(input) = req.input else {
            return self.missing("input");
        };
        let len = input.chars().count();
        if len > MAX_SPEECH_INPUT {
            return self.bad_request(
                &format!("Invalid 'input': string too long. Expected a string with maximum length {MAX_SPEECH_INPUT}, but got a string with length {len} instead."),
                Some("input"),
                Some("string_above_max_length"),
            );
        }
        let voice = match &req.voice {
            None => return self.missing("voice"),
            Some(Value::String(v)) => v.as_str(),
            Some(Value::Object(o)) => match o.get("id").and_then(Value::as_str) {
                Some(id) => id,
                None => return self.missing("voice.id"),
            },
            Some(_) => {
                return self.bad_request(
                    "Invalid type for 'voice': expected a string or an object.",
                    Some("voice"),
                    Some("invalid_type"),
                );
            }
        };
        let format = match req.response_format.as_deref() {
            None => AudioFormat::Mp3,
            Some(f) => match AudioFormat::parse(f) {
                Some(f) => f,
                None => return self.invalid_value("response_format", f, SPEECH_FORMATS),
            },
        };
        let speed = req.speed.unwrap_or(1.0);
        if !(0.25..=4.0).contains(&speed) {
            return self.bad_request(
                &format!("Invalid 'speed': {speed}. Expected a value between 0.25 and 4."),
                Some("speed"),
                Some("invalid_value"),
            );
        }

        let hz = 180 + (fnv1a(voice.as_bytes()) % 12) as u32 * 20;
        let samples = media::tone(speech_ms(&input, speed), hz);
        let audio = Bytes::from(format.encode(&samples));

        // Sent in `chunks` body frames, like a real streamed synthesis.
        let n = self.shared.chunks.min(audio.len()).max(1);
        let mut frames: VecDeque<Bytes> = (0..n)
            .map(|k| audio.slice(k * audio.len() / n..(k + 1) * audio.len() / n))
            .collect();
        let mut first_delay = Duration::ZERO;
        let mut end = End::Complete;
        match behaviour {
            Behaviour::SlowFirstEvent(d) => first_delay = *d,
            Behaviour::CutAfter(k) => {
                frames.truncate(*k);
                end = End::Cut;
            }
            Behaviour::StallAfter(k) => {
                frames.truncate(*k);
                end = End::Stall;
            }
            _ => {}
        }
        self.paced_ok(format.content_type(), frames, first_delay, end)
    }

    pub(crate) fn transcription(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        behaviour: &Behaviour,
        task: Task,
    ) -> Resp {
        let ct = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
        let parts = match multipart::parse(ct, body) {
            Ok(p) => p,
            Err(multipart::Error::NotMultipart) => {
                return self.bad_request(
                    &format!(
                        "Invalid Content-Type header ({}), expected multipart/form-data. (HINT: If you're using curl, you can pass -H 'Content-Type: multipart/form-data')",
                        ct.unwrap_or("none")
                    ),
                    None,
                    None,
                );
            }
            Err(_) => {
                return self.bad_request(
                    "Could not parse multipart form: the body does not match its boundary.",
                    None,
                    None,
                );
            }
        };
        let field = |name: &str| {
            parts
                .iter()
                .find(|p| p.name == name && p.filename.is_none())
                .map(multipart::Part::text)
        };
        let Some(file) = parts.iter().find(|p| p.name == "file") else {
            return self.missing("file");
        };
        let Some(model) = field("model") else {
            return self.missing("model");
        };
        let format = field("response_format").unwrap_or_else(|| "json".to_owned());
        if !TRANSCRIPT_FORMATS.contains(&format.as_str()) {
            return self.invalid_value("response_format", &format, TRANSCRIPT_FORMATS);
        }
        let granularities: Vec<String> = parts
            .iter()
            .filter(|p| {
                p.name == "timestamp_granularities[]" || p.name == "timestamp_granularities"
            })
            .map(multipart::Part::text)
            .collect();
        for g in &granularities {
            if g != "word" && g != "segment" {
                return self.invalid_value("timestamp_granularities", g, &["word", "segment"]);
            }
        }

        let filename = file.filename.as_deref().unwrap_or("file");
        let noun = match task {
            Task::Transcribe => "transcript",
            Task::Translate => "translation",
        };
        let text = format!("fake {noun} of {filename} ({} bytes)", file.data.len());
        let duration = media::wav_duration(file.data)
            .unwrap_or(file.data.len() as f64 / ASSUMED_BYTES_PER_SEC);
        let duration = (duration * 1000.0).round() / 1000.0;
        let seconds = duration.ceil() as u64;
        let language = match task {
            Task::Transcribe => field("language")
                .map(|l| language_name(&l))
                .unwrap_or_else(|| "english".to_owned()),
            Task::Translate => "english".to_owned(),
        };
        let words = timed_words(&text, duration);
        let segments = segments(&words);

        match format.as_str() {
            "text" => self.shaped_ok(TEXT_PLAIN, Bytes::from(format!("{text}\n")), behaviour),
            "srt" => self.shaped_ok(TEXT_PLAIN, Bytes::from(srt(&segments)), behaviour),
            "vtt" => self.shaped_ok(TEXT_PLAIN, Bytes::from(vtt(&segments)), behaviour),
            "verbose_json" => {
                let want_words = granularities.iter().any(|g| g == "word");
                let want_segments =
                    granularities.is_empty() || granularities.iter().any(|g| g == "segment");
                let out = Verbose {
                    task: task.name(),
                    language: &language,
                    duration,
                    text: &text,
                    words: want_words.then_some(words.as_slice()),
                    segments: want_segments.then_some(segments.as_slice()),
                    usage: Some(Usage::Duration { seconds }),
                };
                self.json_ok(to_json(&out), behaviour)
            }
            _ => {
                let usage = match task {
                    Task::Translate => None,
                    Task::Transcribe if model == "whisper-1" => Some(Usage::Duration { seconds }),
                    Task::Transcribe => {
                        let audio_tokens = (duration * 10.0).ceil().max(1.0) as u64;
                        let output_tokens = text.split_whitespace().count() as u64;
                        Some(Usage::Tokens {
                            input_tokens: audio_tokens,
                            input_token_details: TokenDetails {
                                text_tokens: 0,
                                audio_tokens,
                            },
                            output_tokens,
                            total_tokens: audio_tokens + output_tokens,
                        })
                    }
                };
                // `stream=true` (not for whisper-1): the text as `transcript.text.delta`
                // events, then `transcript.text.done` with the usage.
                if model != "whisper-1"
                    && field("stream").is_some_and(|s| s.trim().eq_ignore_ascii_case("true"))
                {
                    let mut events: VecDeque<Bytes> = text
                        .split_inclusive(' ')
                        .map(|w| {
                            let ev =
                                serde_json::json!({"type": "transcript.text.delta", "delta": w});
                            Bytes::from(format!("data: {ev}\n\n"))
                        })
                        .collect();
                    let done = serde_json::json!({"type": "transcript.text.done", "text": text, "usage": usage});
                    events.push_back(Bytes::from(format!("data: {done}\n\n")));
                    return self.paced_ok(
                        "text/event-stream",
                        events,
                        Duration::ZERO,
                        crate::body::End::Complete,
                    );
                }
                self.json_ok(to_json(&Simple { text: &text, usage }), behaviour)
            }
        }
    }
}

fn to_json(v: &impl Serialize) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Whisper reports the language by name.
fn language_name(code: &str) -> String {
    let name = match code.to_ascii_lowercase().as_str() {
        "en" => "english",
        "fr" => "french",
        "de" => "german",
        "es" => "spanish",
        "it" => "italian",
        "pt" => "portuguese",
        "nl" => "dutch",
        "ja" => "japanese",
        "zh" => "chinese",
        "ko" => "korean",
        "ru" => "russian",
        _ => return code.to_owned(),
    };
    name.to_owned()
}

#[derive(Serialize)]
struct Simple<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
struct Verbose<'a> {
    task: &'static str,
    language: &'a str,
    duration: f64,
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    words: Option<&'a [Word]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    segments: Option<&'a [Segment]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Usage {
    Duration {
        seconds: u64,
    },
    Tokens {
        input_tokens: u64,
        input_token_details: TokenDetails,
        output_tokens: u64,
        total_tokens: u64,
    },
}

#[derive(Serialize)]
struct TokenDetails {
    text_tokens: u64,
    audio_tokens: u64,
}

#[derive(Serialize)]
struct Word {
    word: String,
    start: f64,
    end: f64,
}

#[derive(Serialize)]
struct Segment {
    id: usize,
    seek: u64,
    start: f64,
    end: f64,
    text: String,
    tokens: Vec<u64>,
    temperature: f64,
    avg_logprob: f64,
    compression_ratio: f64,
    no_speech_prob: f64,
}

fn round_ms(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// The words of `text`, spread evenly over `duration`.
fn timed_words(text: &str, duration: f64) -> Vec<Word> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let per = duration / words.len().max(1) as f64;
    words
        .iter()
        .enumerate()
        .map(|(i, w)| Word {
            word: (*w).to_owned(),
            start: round_ms(per * i as f64),
            end: round_ms(per * (i + 1) as f64),
        })
        .collect()
}

/// Whisper-style segments of [`WORDS_PER_SEGMENT`] words.
fn segments(words: &[Word]) -> Vec<Segment> {
    words
        .chunks(WORDS_PER_SEGMENT)
        .enumerate()
        .map(|(id, ws)| {
            let mut text = String::new();
            for w in ws {
                text.push(' ');
                text.push_str(&w.word);
            }
            let tokens = ws
                .iter()
                .map(|w| 220 + fnv1a(w.word.as_bytes()) % 50_000)
                .collect();
            Segment {
                id,
                seek: 0,
                start: ws.first().map_or(0.0, |w| w.start),
                end: ws.last().map_or(0.0, |w| w.end),
                text,
                tokens,
                temperature: 0.0,
                avg_logprob: -0.25,
                compression_ratio: 1.0,
                no_speech_prob: 0.01,
            }
        })
        .collect()
}

/// `HH:MM:SS<sep>mmm`
fn timestamp(seconds: f64, sep: char) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}{sep}{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

fn srt(segments: &[Segment]) -> String {
    let mut out = String::new();
    for s in segments {
        let _ = write!(
            out,
            "{}\n{} --> {}\n{}\n\n",
            s.id + 1,
            timestamp(s.start, ','),
            timestamp(s.end, ','),
            s.text.trim()
        );
    }
    out
}

fn vtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for s in segments {
        let _ = write!(
            out,
            "{} --> {}\n{}\n\n",
            timestamp(s.start, '.'),
            timestamp(s.end, '.'),
            s.text.trim()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtitle_formats() {
        let words = timed_words("one two three four", 2.0);
        let segs = segments(&words);
        assert_eq!(segs.len(), 2);
        assert_eq!(segs[0].text, " one two three");
        assert_eq!(
            srt(&segs),
            "1\n00:00:00,000 --> 00:00:01,500\none two three\n\n2\n00:00:01,500 --> 00:00:02,000\nfour\n\n"
        );
        assert_eq!(
            vtt(&segs),
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\none two three\n\n00:00:01.500 --> 00:00:02.000\nfour\n\n"
        );
        assert_eq!(timestamp(3_723.004, ','), "01:02:03,004");
    }

    #[test]
    fn speech_length_follows_input() {
        assert_eq!(speech_ms("", 1.0), 200);
        assert_eq!(speech_ms("hello", 1.0), 260);
        assert_eq!(speech_ms("hello", 2.0), 130);
        assert_eq!(speech_ms(&"x".repeat(4000), 1.0), 2000);
    }
}
