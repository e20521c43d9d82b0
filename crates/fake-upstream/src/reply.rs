//! What the fake answers, whatever the wire format: the reply text or a tool
//! call, cut by stop sequences and max tokens, and the token counts.
//!
//! Each format reduces its request to a [`Turn`]; [`Shared::answer`] applies
//! the rules below and the format writes the [`Reply`] in its own shape.
//!
//! - The conversation ends with the user, tools are declared and tool choice
//!   is not "none": one call of the forced tool (else the first declared),
//!   with arguments `{"input":"<last user text>"}`.
//! - It ends with tool results: `"fake reply to tool result: <their text>"`.
//! - Otherwise the configured reply, or `"fake reply to: <last user text>"`,
//!   or `"fake reply"` without a user message.
//!
//! Echoed text is cut to [`MAX_ECHO_CHARS`] characters. A text reply is then
//! cut before the earliest stop sequence it contains, and then to `max_tokens`
//! whitespace-separated words. Tool calls are never cut.

use std::borrow::Cow;

use crate::Shared;
use crate::util::push_json_str;

/// Echoed user text (and tool results) is cut to this many characters.
pub(crate) const MAX_ECHO_CHARS: usize = 256;

/// How the conversation ends, as the reply rules see it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ending<'a> {
    /// The last message is the user's and carries no tool result.
    User,
    /// The last message carries tool results: their content as text.
    ToolResult(Cow<'a, str>),
    /// Anything else: the assistant's turn, or no message at all.
    Other,
}

/// One request, reduced to what the reply rules need.
#[derive(Debug)]
pub(crate) struct Turn<'a> {
    /// Characters of every message and system prompt (for the prompt tokens).
    pub(crate) prompt_chars: usize,
    /// The text of the last user message, wherever it stands.
    pub(crate) last_user: Option<Cow<'a, str>>,
    pub(crate) ending: Ending<'a>,
    /// The tool to call if the conversation ends with the user: the forced
    /// one or the first declared; `None` without tools or with choice "none".
    pub(crate) tool: Option<&'a str>,
    pub(crate) stop: Vec<&'a str>,
    pub(crate) max_tokens: Option<u64>,
}

impl Turn<'_> {
    pub(crate) fn new() -> Self {
        Self {
            prompt_chars: 0,
            last_user: None,
            ending: Ending::Other,
            tool: None,
            stop: Vec::new(),
            max_tokens: None,
        }
    }
}

/// Why a text reply ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The whole reply.
    Stop,
    /// Cut before this stop sequence.
    StopSequence(String),
    /// Cut to `max_tokens` words.
    MaxTokens,
}

#[derive(Debug)]
pub(crate) enum Answer<'a> {
    Text {
        text: Cow<'a, str>,
        finish: Finish,
    },
    Call {
        name: &'a str,
        /// `{"input":"<last user text>"}`: the arguments as a JSON object.
        arguments: String,
    },
}

/// Token counts. `prompt` is the uncached count; formats that include cached
/// tokens in their prompt count add `cache_read` to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) prompt: u64,
    pub(crate) completion: u64,
    pub(crate) cache_read: u64,
    pub(crate) cache_write: u64,
}

#[derive(Debug)]
pub(crate) struct Reply<'a> {
    pub(crate) answer: Answer<'a>,
    pub(crate) usage: Usage,
}

/// `text` cut to [`MAX_ECHO_CHARS`] characters.
fn echo(text: &str) -> &str {
    let cut = text
        .char_indices()
        .nth(MAX_ECHO_CHARS)
        .map_or(text.len(), |(i, _)| i);
    &text[..cut]
}

/// Whitespace-separated words, the fake's unit of completion tokens.
pub(crate) fn words(text: &str) -> u64 {
    text.split_whitespace().count() as u64
}

/// Byte length of the first `n` words of `text`, if it has more than `n`.
fn first_words_len(text: &str, n: u64) -> Option<usize> {
    let mut it = text.split_whitespace();
    let mut end = 0;
    for _ in 0..n {
        let w = it.next()?;
        end = w.as_ptr() as usize - text.as_ptr() as usize + w.len();
    }
    it.next().map(|_| end)
}

/// Cuts `text` before the earliest stop sequence, then to `max_tokens` words.
fn limit<'a>(text: Cow<'a, str>, stop: &[&str], max_tokens: Option<u64>) -> (Cow<'a, str>, Finish) {
    let mut end = text.len();
    let mut finish = Finish::Stop;
    let earliest = stop
        .iter()
        .filter(|s| !s.is_empty())
        .filter_map(|s| text.find(s).map(|i| (i, *s)))
        .min_by_key(|(i, _)| *i);
    if let Some((i, s)) = earliest {
        end = i;
        finish = Finish::StopSequence(s.to_owned());
    }
    if let Some(n) = max_tokens.and_then(|max| first_words_len(&text[..end], max)) {
        end = n;
        finish = Finish::MaxTokens;
    }
    let text = match text {
        Cow::Borrowed(s) => Cow::Borrowed(&s[..end]),
        Cow::Owned(mut s) => {
            s.truncate(end);
            Cow::Owned(s)
        }
    };
    (text, finish)
}

impl Shared {
    /// The plain text reply: the configured one, or an echo of `last_user`.
    pub(crate) fn reply_text<'a>(&'a self, last_user: Option<&str>) -> Cow<'a, str> {
        match (&self.reply, last_user) {
            (Some(r), _) => Cow::Borrowed(r.as_str()),
            (None, Some(msg)) => Cow::Owned(format!("fake reply to: {}", echo(msg))),
            (None, None) => Cow::Borrowed("fake reply"),
        }
    }

    /// Applies the reply rules (see the module docs) to `turn`.
    pub(crate) fn answer<'a>(&'a self, turn: Turn<'a>) -> Reply<'a> {
        let mut usage = Usage {
            prompt: turn.prompt_chars.div_ceil(4).max(1) as u64,
            completion: 0,
            cache_read: self.cache_read,
            cache_write: self.cache_write,
        };
        let last_user = turn.last_user.as_deref();
        if let (Ending::User, Some(name)) = (&turn.ending, turn.tool) {
            let input = echo(last_user.unwrap_or_default());
            let mut arguments = String::with_capacity(input.len() + 16);
            arguments.push_str("{\"input\":");
            push_json_str(&mut arguments, input);
            arguments.push('}');
            usage.completion = words(&arguments);
            return Reply {
                answer: Answer::Call { name, arguments },
                usage,
            };
        }
        let text = match &turn.ending {
            Ending::ToolResult(result) => {
                Cow::Owned(format!("fake reply to tool result: {}", echo(result)))
            }
            _ => self.reply_text(last_user),
        };
        let (text, finish) = limit(text, &turn.stop, turn.max_tokens);
        usage.completion = words(&text);
        Reply {
            answer: Answer::Text { text, finish },
            usage,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_cuts_at_the_earliest_stop_then_to_max_words() {
        let t = |s: &'static str| Cow::Borrowed(s);
        assert_eq!(
            limit(t("one two three"), &[], None),
            (t("one two three"), Finish::Stop)
        );
        assert_eq!(
            limit(t("one two three"), &["three", "two", ""], None),
            (t("one "), Finish::StopSequence("two".into()))
        );
        assert_eq!(
            limit(t("one  two three"), &[], Some(2)),
            (t("one  two"), Finish::MaxTokens)
        );
        assert_eq!(
            limit(t("one two"), &[], Some(2)),
            (t("one two"), Finish::Stop)
        );
        assert_eq!(
            limit(t("a b c d"), &["d"], Some(2)),
            (t("a b"), Finish::MaxTokens)
        );
        assert_eq!(
            limit(Cow::Owned("x y".into()), &[], Some(0)),
            (t(""), Finish::MaxTokens)
        );
    }

    #[test]
    fn echo_cuts_on_a_char_boundary() {
        let long = "é".repeat(300);
        assert_eq!(echo(&long).chars().count(), MAX_ECHO_CHARS);
        assert_eq!(echo("short"), "short");
    }
}
