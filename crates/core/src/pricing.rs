//! The pricing table shipped with Signalbox: USD per million tokens for common models, used
//! when `[models.NAME]` sets no price. A price the config sets wins, field by field. A model
//! not listed here and not priced in the config has no cost (empty, never zero).
//!
//! Prices are list prices as published by each provider for standard (non-batch) use at the
//! time this table was written; override them in the config when yours differ.

use crate::model::Price;

/// (model, input, output, cached input)
const TABLE: &[(&str, f64, f64, Option<f64>)] = &[
    // OpenAI
    ("gpt-5", 1.25, 10.0, Some(0.125)),
    ("gpt-5-mini", 0.25, 2.0, Some(0.025)),
    ("gpt-5-nano", 0.05, 0.40, Some(0.005)),
    ("gpt-4.1", 2.0, 8.0, Some(0.50)),
    ("gpt-4.1-mini", 0.40, 1.60, Some(0.10)),
    ("gpt-4.1-nano", 0.10, 0.40, Some(0.025)),
    ("gpt-4o", 2.50, 10.0, Some(1.25)),
    ("gpt-4o-mini", 0.15, 0.60, Some(0.075)),
    ("o3", 2.0, 8.0, Some(0.50)),
    ("o3-mini", 1.10, 4.40, Some(0.55)),
    ("o4-mini", 1.10, 4.40, Some(0.275)),
    ("o1", 15.0, 60.0, Some(7.50)),
    ("gpt-3.5-turbo", 0.50, 1.50, None),
    ("text-embedding-3-small", 0.02, 0.0, None),
    ("text-embedding-3-large", 0.13, 0.0, None),
    ("text-embedding-ada-002", 0.10, 0.0, None),
    // Anthropic (cached input = cache read)
    ("claude-opus-4-5", 5.0, 25.0, Some(0.50)),
    ("claude-opus-4-1", 15.0, 75.0, Some(1.50)),
    ("claude-opus-4", 15.0, 75.0, Some(1.50)),
    ("claude-sonnet-4-5", 3.0, 15.0, Some(0.30)),
    ("claude-sonnet-4", 3.0, 15.0, Some(0.30)),
    ("claude-3-7-sonnet", 3.0, 15.0, Some(0.30)),
    ("claude-3-5-sonnet", 3.0, 15.0, Some(0.30)),
    ("claude-haiku-4-5", 1.0, 5.0, Some(0.10)),
    ("claude-3-5-haiku", 0.80, 4.0, Some(0.08)),
    ("claude-3-haiku", 0.25, 1.25, Some(0.03)),
    // Google (prompts up to 200k tokens)
    ("gemini-2.5-pro", 1.25, 10.0, Some(0.31)),
    ("gemini-2.5-flash", 0.30, 2.50, Some(0.075)),
    ("gemini-2.5-flash-lite", 0.10, 0.40, Some(0.025)),
    ("gemini-2.0-flash", 0.10, 0.40, Some(0.025)),
    ("gemini-2.0-flash-lite", 0.075, 0.30, None),
];

/// The shipped price of a model: an exact name, or a dated snapshot of one
/// (`gpt-4o-2024-08-06`, `claude-sonnet-4-20250514`, `...-latest`), longest name first.
pub fn builtin(model: &str) -> Option<Price> {
    let m = model.rsplit('/').next().unwrap_or(model);
    let mut best: Option<&(&str, f64, f64, Option<f64>)> = None;
    for row in TABLE {
        // A snapshot suffix is a date (`-20250514`, `-2024-08-06`) or `-latest`; a short
        // number is another model (`claude-opus-4-5` is not `claude-opus-4`).
        let hit = m == row.0
            || m.strip_prefix(row.0).is_some_and(|rest| {
                rest.strip_prefix('-')
                    .is_some_and(|s| s == "latest" || is_date(s))
            });
        if hit && best.is_none_or(|b| row.0.len() > b.0.len()) {
            best = Some(row);
        }
    }
    best.map(|r| Price {
        input: Some(r.1),
        output: Some(r.2),
        cached_input: r.3,
    })
}

/// `YYYYMMDD` or `YYYY-MM-DD`.
fn is_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    match b.len() {
        8 => digits(0..8),
        10 => digits(0..4) && b[4] == b'-' && digits(5..7) && b[7] == b'-' && digits(8..10),
        _ => false,
    }
}

/// The price of a model: the config's fields first, the shipped table for the rest.
pub fn resolve(configured: Option<Price>, model: &str) -> Price {
    let shipped = builtin(model).unwrap_or_default();
    let c = configured.unwrap_or_default();
    Price {
        input: c.input.or(shipped.input),
        output: c.output.or(shipped.output),
        cached_input: c.cached_input.or(shipped.cached_input),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dated_snapshots_find_their_model_and_never_a_shorter_one() {
        assert_eq!(builtin("gpt-4o-2024-08-06").unwrap().input, Some(2.50));
        assert_eq!(builtin("gpt-4o-mini").unwrap().input, Some(0.15));
        assert_eq!(builtin("gpt-4o-mini-2024-07-18").unwrap().input, Some(0.15));
        assert_eq!(
            builtin("claude-sonnet-4-20250514").unwrap().output,
            Some(15.0)
        );
        assert_eq!(
            builtin("claude-sonnet-4-5-20250929").unwrap().input,
            Some(3.0)
        );
        assert!(builtin("gpt-4o-audio-preview").is_none());
        assert_eq!(builtin("claude-opus-4-5").unwrap().input, Some(5.0));
        assert!(
            builtin("claude-opus-4-7").is_none(),
            "an unknown newer model stays unpriced"
        );
        assert!(builtin("llama3.1").is_none());
    }

    #[test]
    fn the_config_wins_field_by_field() {
        let p = resolve(
            Some(Price {
                input: Some(1.0),
                output: None,
                cached_input: None,
            }),
            "gpt-4o",
        );
        assert_eq!(
            (p.input, p.output, p.cached_input),
            (Some(1.0), Some(10.0), Some(1.25))
        );
    }
}
