//! Anthropic's stream events as OpenAI chunks, one event at a time.
//!
//! The role chunk is held back until the first content or tool call, so an `error` event
//! right after `message_start` (an overload) is still the stream's first event and the
//! gateway can retry or fall back.

use super::super::chat::{self, ChunkWriter, Delta};
use super::super::translate::{Malformed, StreamTranslator};
use super::wire::{BlockDelta, Event, StartBlock, Usage};
use super::{error_code, finish_reason, usage};

pub(crate) struct Translator {
    include_usage: bool,
    provider: String,
    writer: Option<ChunkWriter>,
    started: bool,
    usage: Usage,
    /// Tool-use blocks seen: (block index, call index, whether any arguments were sent).
    tools: Vec<(usize, usize, bool)>,
    finished: bool,
    done: bool,
}

impl Translator {
    pub fn new(include_usage: bool, provider: String) -> Self {
        Translator {
            include_usage,
            provider,
            writer: None,
            started: false,
            usage: Usage::default(),
            tools: Vec::new(),
            finished: false,
            done: false,
        }
    }

    fn writer(&self) -> Result<&ChunkWriter, Malformed> {
        self.writer
            .as_ref()
            .ok_or_else(|| Malformed("content before message_start".into()))
    }

    /// The role chunk, once, before the first content.
    fn start(&mut self, out: &mut Vec<u8>) -> Result<(), Malformed> {
        if !self.started {
            self.writer()?.delta(out, 0, Delta::Role);
            self.started = true;
        }
        Ok(())
    }
}

fn merge(into: &mut Usage, from: &Usage) {
    if from.input_tokens.is_some() {
        into.input_tokens = from.input_tokens;
    }
    if from.output_tokens.is_some() {
        into.output_tokens = from.output_tokens;
    }
    if from.cache_creation_input_tokens.is_some() {
        into.cache_creation_input_tokens = from.cache_creation_input_tokens;
    }
    if from.cache_read_input_tokens.is_some() {
        into.cache_read_input_tokens = from.cache_read_input_tokens;
    }
}

impl StreamTranslator for Translator {
    fn event(
        &mut self,
        _name: Option<&str>,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), Malformed> {
        if data.trim_ascii().is_empty() {
            return Ok(());
        }
        let ev: Event = serde_json::from_slice(data)
            .map_err(|e| Malformed(format!("an unreadable Anthropic event ({e})")))?;
        if self.done {
            return Ok(());
        }
        match ev {
            Event::MessageStart { message } => {
                merge(&mut self.usage, &message.usage);
                self.writer = Some(ChunkWriter::new(&message.id, &message.model));
            }
            Event::ContentBlockStart {
                index,
                content_block,
            } => match content_block {
                // Anthropic opens every text block empty: the stream starts with its first
                // text, not here (an error before it is still the first event).
                StartBlock::Text { text } => {
                    if !text.is_empty() {
                        self.start(out)?;
                        self.writer()?.delta(out, 0, Delta::Text(&text));
                    }
                }
                StartBlock::ToolUse { id, name } => {
                    self.start(out)?;
                    let call = self.tools.len();
                    self.tools.push((index, call, false));
                    self.writer()?.delta(
                        out,
                        0,
                        Delta::ToolStart {
                            index: call,
                            id: &id,
                            name: &name,
                        },
                    );
                }
                StartBlock::Other => {}
            },
            Event::ContentBlockDelta { index, delta } => match delta {
                BlockDelta::TextDelta { text } => {
                    self.start(out)?;
                    self.writer()?.delta(out, 0, Delta::Text(&text));
                }
                BlockDelta::InputJsonDelta { partial_json } => {
                    let (_, call, sent) = self
                        .tools
                        .iter_mut()
                        .find(|(block, _, _)| *block == index)
                        .ok_or_else(|| Malformed("tool input for an unknown block".into()))?;
                    let call = *call;
                    if !partial_json.is_empty() {
                        *sent = true;
                        self.writer()?.delta(
                            out,
                            0,
                            Delta::ToolArgs {
                                index: call,
                                arguments: &partial_json,
                            },
                        );
                    }
                }
                BlockDelta::Other => {}
            },
            // A keep-alive stays one, so the caller's idle clock sees it.
            Event::Ping {} => out.extend_from_slice(b": ping\n\n"),
            // A tool call that took no arguments still has a JSON object for them ("{}", as
            // a whole answer has), never an empty string a caller cannot parse.
            Event::ContentBlockStop { index } => {
                if let Some((_, call, sent)) = self
                    .tools
                    .iter_mut()
                    .find(|(block, _, _)| Some(*block) == index)
                    && !*sent
                {
                    *sent = true;
                    let call = *call;
                    self.writer()?.delta(
                        out,
                        0,
                        Delta::ToolArgs {
                            index: call,
                            arguments: "{}",
                        },
                    );
                }
            }
            Event::Other => {}
            Event::MessageDelta { delta, usage: u } => {
                if let Some(u) = u {
                    merge(&mut self.usage, &u);
                }
                if let Some(stop) = delta.stop_reason.as_deref() {
                    self.start(out)?;
                    let reason = finish_reason(Some(stop));
                    let total = usage(&self.usage);
                    let w = self.writer()?;
                    w.delta(out, 0, Delta::Finish(reason));
                    if self.include_usage {
                        w.usage(out, &total);
                    }
                    self.finished = true;
                }
            }
            Event::MessageStop {} => {
                if !self.finished {
                    return Err(Malformed("message_stop without a stop reason".into()));
                }
                out.extend_from_slice(chat::DONE);
                self.done = true;
            }
            Event::Error { error } => {
                let message = if error.message.is_empty() {
                    format!("provider '{}' reported {}", self.provider, error.kind)
                } else {
                    error.message
                };
                chat::error_event(out, error_code(&error.kind), &message);
                self.done = true;
            }
        }
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<u8>) {
        // A stream that ended after its stop reason is complete (the gateway adds
        // `[DONE]`); one that ended before is not, and nothing here pretends otherwise.
    }
}
