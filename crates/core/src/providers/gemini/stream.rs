//! Gemini's stream (each SSE event a partial `GenerateContentResponse`) as OpenAI chunks.
//! Gemini sends no end marker: the stream is complete once every candidate that spoke has
//! a finish reason, and only then does `[DONE]` follow.

use super::super::chat::{self, ChunkWriter, Delta};
use super::super::translate::{Malformed, StreamTranslator};
use super::wire::{Response, UsageMetadata};
use super::{
    args_text, blocked, call_id, error_code, finish_reason, response_id, signed_call_id, usage,
};

#[derive(Default, Clone, Copy)]
struct CandidateState {
    started: bool,
    calls: usize,
    finished: bool,
}

pub(crate) struct Translator {
    include_usage: bool,
    model: String,
    provider: String,
    id: String,
    writer: Option<ChunkWriter>,
    candidates: Vec<CandidateState>,
    usage: Option<UsageMetadata>,
    done: bool,
}

impl Translator {
    pub fn new(include_usage: bool, model: String, provider: String) -> Self {
        Translator {
            include_usage,
            model,
            provider,
            id: String::new(),
            writer: None,
            candidates: Vec::new(),
            usage: None,
            done: false,
        }
    }
}

impl StreamTranslator for Translator {
    fn event(
        &mut self,
        _name: Option<&str>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Malformed> {
        if data.trim_ascii().is_empty() || self.done {
            return Ok(());
        }
        let r: Response = serde_json::from_slice(data)
            .map_err(|e| Malformed(format!("an unreadable Gemini event ({e})")))?;
        if let Some(err) = &r.error {
            let message = if err.message.is_empty() {
                format!("provider '{}' reported {}", self.provider, err.status)
            } else {
                err.message.clone()
            };
            chat::error_event(out, error_code(&err.status), &message);
            self.done = true;
            return Ok(());
        }
        if let Some(reason) = blocked(&r) {
            chat::error_event(out, crate::ErrorCode::ContentPolicy, &reason);
            self.done = true;
            return Ok(());
        }
        // As for a whole answer: a function call Gemini could not form is no answer (before
        // the first byte the plan moves on; after it, the stream is interrupted), never a
        // "stop" with nothing in it.
        if !r.candidates.is_empty()
            && r.candidates
                .iter()
                .all(|c| c.finish_reason.as_deref() == Some("MALFORMED_FUNCTION_CALL"))
        {
            let message = format!(
                "provider '{}' answered with a malformed function call",
                self.provider
            );
            chat::error_event(out, crate::ErrorCode::Upstream, &message);
            self.done = true;
            return Ok(());
        }
        if self.writer.is_none() {
            self.id = response_id(&r);
            let model = r.model_version.as_deref().unwrap_or(&self.model);
            self.writer = Some(ChunkWriter::new(&format!("chatcmpl-{}", self.id), model));
        }
        if r.usage_metadata.is_some() {
            self.usage = r.usage_metadata;
        }
        let Some(w) = self.writer.as_ref() else {
            return Ok(());
        };
        for (pos, c) in r.candidates.into_iter().enumerate() {
            let i = c.index.unwrap_or(pos);
            if i > 64 {
                return Err(Malformed("a candidate index out of range".into()));
            }
            if self.candidates.len() <= i {
                self.candidates.resize(i + 1, CandidateState::default());
            }
            let st = &mut self.candidates[i];
            if st.finished {
                continue;
            }
            if !st.started {
                w.delta(out, i, Delta::Role);
                st.started = true;
            }
            for p in c.content.map(|c| c.parts).unwrap_or_default() {
                if let Some(t) = p.text.filter(|t| !t.is_empty() && p.thought != Some(true)) {
                    w.delta(out, i, Delta::Text(&t));
                }
                if let Some(f) = p.function_call {
                    let id = signed_call_id(
                        f.id.unwrap_or_else(|| call_id(&self.id, i, st.calls)),
                        p.thought_signature.as_deref(),
                    );
                    w.delta(
                        out,
                        i,
                        Delta::ToolWhole {
                            index: st.calls,
                            id: &id,
                            name: &f.name,
                            arguments: &args_text(&f.args),
                        },
                    );
                    st.calls += 1;
                }
            }
            if let Some(reason) = c.finish_reason.as_deref() {
                w.delta(out, i, Delta::Finish(finish_reason(reason, st.calls > 0)));
                st.finished = true;
            }
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<u8>) {
        let complete = !self.done
            && !self.candidates.is_empty()
            && self.candidates.iter().all(|c| c.finished || !c.started);
        if !complete {
            return;
        }
        if let Some(w) = &self.writer {
            if self.include_usage {
                w.usage(out, &usage(&self.usage.unwrap_or_default()));
            }
            out.extend_from_slice(chat::DONE);
        }
    }
}
