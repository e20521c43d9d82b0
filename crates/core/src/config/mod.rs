//! Loading the config file: parse (`raw`), then validate into a [`Snapshot`] (`validate`).
//! The file, and later the admin API, go through the same validation.

pub mod catalog;
pub mod raw;
mod validate;

#[cfg(test)]
mod tests;

use crate::model::Snapshot;
use std::fmt;
use std::path::Path;

pub use catalog::{Catalog, CatalogCredential, CatalogObject, ObjectKind};
pub use validate::{ConfigSource, build_snapshot, is_loopback_host, valid_name, valid_plain_name};

/// One problem in a config, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigError {
    /// Dotted key path, e.g. `routes.summarize.targets[1]`.
    pub key: String,
    pub message: String,
    pub file: Option<String>,
    pub line: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{file}:{line}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Every problem found in one config; a config with any is rejected whole.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// A loaded config: the snapshot plus warnings worth logging.
#[derive(Debug)]
pub struct Loaded {
    pub snapshot: Snapshot,
    pub warnings: Vec<String>,
}

/// Read a config file's text; an unreadable file is a config error naming it.
pub fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            key: String::new(),
            message: format!("cannot read config file: {e}"),
            file: Some(path.display().to_string()),
            line: None,
        }])
    })
}

/// Read and validate a config file. `env` looks up environment variables.
pub fn load_file(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    version: u64,
) -> Result<Loaded, ConfigErrors> {
    let src = read_file(path)?;
    load_str(&src, Some(&path.display().to_string()), env, version)
}

/// Parse and validate config text.
pub fn load_str(
    src: &str,
    file: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    version: u64,
) -> Result<Loaded, ConfigErrors> {
    load_with_catalog(src, file, env, version, &Catalog::file_only())
}

/// Parse config text (may be empty) and validate it together with the store's catalog.
pub fn load_with_catalog(
    src: &str,
    file: Option<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    version: u64,
    catalog: &Catalog,
) -> Result<Loaded, ConfigErrors> {
    let raw = parse(src, file)?;
    let source = ConfigSource {
        text: Some(src),
        file,
    };
    build_snapshot(raw, &source, env, version, catalog)
}

/// Parse config text into its raw tables (unknown keys rejected), without validating.
pub fn parse(src: &str, file: Option<&str>) -> Result<raw::RawConfig, ConfigErrors> {
    let error = |e: &toml::de::Error, key: String| ConfigError {
        key,
        message: plain_words(e.message().trim()),
        file: file.map(str::to_string),
        line: e.span().map(|s| line_of(src, s.start)),
    };
    // A syntax error names the key on its line (`port = ` with no value, a duplicate key).
    toml::Deserializer::parse(src).map_err(|e| {
        let key = e
            .span()
            .map(|s| key_on_line(src, s.start))
            .unwrap_or_default();
        ConfigErrors(vec![error(&e, key)])
    })?;
    // The key at fault by its path (`providers.up.timeout_ms`), as validation errors name it.
    // An unknown key on a line of its own is blanked out (same length, so every offset and
    // line stays put) and the file parsed again: every unknown key is reported, not only the
    // first. Anything else stops there.
    let mut text = src.to_string();
    let mut errors = Vec::new();
    loop {
        let de = match toml::Deserializer::parse(&text) {
            Ok(de) => de,
            // Only after a blanked line: stop with what was found.
            Err(_) => return Err(ConfigErrors(errors)),
        };
        match serde_path_to_error::deserialize::<_, raw::RawConfig>(de) {
            Ok(raw) if errors.is_empty() => return Ok(raw),
            Ok(_) => {
                errors.sort_by_key(|e| e.line);
                return Err(ConfigErrors(errors));
            }
            Err(e) => {
                let key = e.path().to_string();
                let key = if key == "." { String::new() } else { key };
                errors.push(error(e.inner(), key));
                let unknown = e.inner().message().starts_with("unknown field");
                match e
                    .inner()
                    .span()
                    .and_then(|s| blank_key_line(&text, s.start))
                {
                    Some(blanked) if unknown && errors.len() < 50 => text = blanked,
                    _ => {
                        errors.sort_by_key(|e| e.line);
                        return Err(ConfigErrors(errors));
                    }
                }
            }
        }
    }
}

/// `text` with the line holding `offset` turned into spaces, when that line is a whole
/// `key = value` of its own (a table header, or a value running over more lines, is not).
fn blank_key_line(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[start..end];
    let whole = !line.trim_start().starts_with('[')
        && line.contains('=')
        && line.parse::<toml::Table>().is_ok_and(|t| t.len() == 1);
    whole.then(|| {
        let mut out = text.to_string();
        out.replace_range(start..end, &" ".repeat(line.len()));
        out
    })
}

/// The key written on the line holding `offset`: a table header's name, or what stands before
/// `=`; empty when the line has neither.
fn key_on_line(src: &str, offset: usize) -> String {
    let offset = offset.min(src.len());
    let start = src[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = src[offset..].find('\n').map_or(src.len(), |i| offset + i);
    let line = src[start..end].trim();
    if let Some(header) = line.strip_prefix('[') {
        return header
            .trim_start_matches('[')
            .split(']')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
    }
    match line.split_once('=') {
        Some((k, _)) if !k.trim().is_empty() && !k.contains('{') => k.trim().to_string(),
        _ => String::new(),
    }
}

/// A parser message in the config's words: the types it expected are tables and lists, not
/// the gateway's own type names (`expected struct RawTimeouts`).
fn plain_words(message: &str) -> String {
    let mut out = message.to_string();
    for (from, to) in [("struct Raw", "a table "), ("enum Raw", "one of ")] {
        while let Some(i) = out.find(from) {
            let end = out[i + from.len()..]
                .find(|c: char| !c.is_ascii_alphanumeric())
                .map_or(out.len(), |e| i + from.len() + e);
            let name = out[i + from.len()..end].to_string();
            out.replace_range(i..end, &format!("{to}({name})"));
        }
    }
    out
}

pub(crate) fn line_of(src: &str, offset: usize) -> usize {
    src.as_bytes()[..offset.min(src.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// One step of a key path.
#[derive(Debug, Clone)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// Display a key path as TOML would name it: `routes.x.targets[1]`, quoting keys with dots.
pub(crate) fn display_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                if k.is_empty() || k.contains(['.', ' ', '"']) {
                    out.push_str(&format!("{k:?}"));
                } else {
                    out.push_str(k);
                }
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The line of a dotted key (`store.url`) in TOML source, for messages about it outside the
/// validator.
pub fn line_of_key(src: &str, dotted: &str) -> Option<usize> {
    let path: Vec<Seg> = dotted.split('.').map(|k| Seg::Key(k.to_string())).collect();
    locate(src, &path)
}

/// Find the line of a key path in TOML source: the deepest part of it that exists.
pub(crate) fn locate(src: &str, path: &[Seg]) -> Option<usize> {
    use toml::de::{DeTable, DeValue};
    let doc = DeTable::parse(src).ok()?;
    let mut best: Option<usize> = None;
    let mut current: Option<&DeValue<'_>> = None;
    for seg in path {
        match seg {
            Seg::Key(name) => {
                let table = match current {
                    None => doc.get_ref(),
                    Some(DeValue::Table(t)) => t,
                    Some(_) => break,
                };
                let Some((k, v)) = table
                    .iter()
                    .find(|(k, _)| k.get_ref().as_ref() == name.as_str())
                else {
                    break;
                };
                best = Some(k.span().start);
                current = Some(v.get_ref());
            }
            Seg::Index(i) => {
                let Some(DeValue::Array(arr)) = current else {
                    break;
                };
                let Some(item) = arr.get(*i) else { break };
                best = Some(item.span().start);
                current = Some(item.get_ref());
            }
        }
    }
    best.map(|o| line_of(src, o))
}
