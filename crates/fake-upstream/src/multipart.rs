//! A small, synchronous `multipart/form-data` parser (RFC 7578) over a fully
//! received body: enough for OpenAI's audio uploads and for inspecting
//! recorded requests.

/// One part of a `multipart/form-data` body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Part<'a> {
    /// The `name` of its `content-disposition`.
    pub(crate) name: String,
    /// The `filename` of its `content-disposition`, for file parts.
    pub(crate) filename: Option<String>,
    /// Its own `content-type`, if it has one.
    pub(crate) content_type: Option<String>,
    pub(crate) data: &'a [u8],
}

impl Part<'_> {
    /// The data as text (lossy UTF-8).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(self.data).into_owned()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Error {
    /// The content type is not `multipart/form-data` (or is missing).
    NotMultipart,
    /// `multipart/form-data` without a usable `boundary` parameter.
    NoBoundary,
    /// The body does not follow the boundary structure.
    Malformed,
}

/// The boundary of a `multipart/form-data` content type.
pub(crate) fn boundary(content_type: Option<&str>) -> Result<String, Error> {
    let ct = content_type.ok_or(Error::NotMultipart)?;
    let mut params = split_params(ct);
    let essence = params.next().unwrap_or_default();
    if !essence.trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err(Error::NotMultipart);
    }
    for p in params {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("boundary")
        {
            let b = unquote(v.trim());
            if b.is_empty() || b.len() > 200 {
                return Err(Error::NoBoundary);
            }
            return Ok(b);
        }
    }
    Err(Error::NoBoundary)
}

/// Every part of `body`, in order.
pub(crate) fn parse<'a>(
    content_type: Option<&str>,
    body: &'a [u8],
) -> Result<Vec<Part<'a>>, Error> {
    let boundary = boundary(content_type)?;
    let delim = format!("--{boundary}");
    let delim = delim.as_bytes();
    let next_delim = format!("\r\n--{boundary}");
    let next_delim = next_delim.as_bytes();

    // The first delimiter may start the body or follow a preamble line.
    let mut pos = if body.starts_with(delim) {
        delim.len()
    } else {
        find(body, next_delim).ok_or(Error::Malformed)? + next_delim.len()
    };
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding, then the line break ending the delimiter line.
        let pad = rest
            .iter()
            .take_while(|b| **b == b' ' || **b == b'\t')
            .count();
        let rest = &rest[pad..];
        let skip = if rest.starts_with(b"\r\n") {
            2
        } else if rest.starts_with(b"\n") {
            1
        } else {
            return Err(Error::Malformed);
        };
        let start = pos + pad + skip;
        let (headers, data_start) = match find(&body[start..], b"\r\n\r\n") {
            Some(i) => (&body[start..start + i], start + i + 4),
            // A part without headers (not valid form-data, but well-formed).
            None if body[start..].starts_with(b"\r\n") => (&body[start..start], start + 2),
            None => return Err(Error::Malformed),
        };
        let data_len = find(&body[data_start..], next_delim).ok_or(Error::Malformed)?;
        let data = &body[data_start..data_start + data_len];
        pos = data_start + data_len + next_delim.len();

        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data,
        };
        let headers = String::from_utf8_lossy(headers);
        for line in headers.split("\r\n") {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let k = k.trim();
            if k.eq_ignore_ascii_case("content-disposition") {
                for p in split_params(v).skip(1) {
                    let Some((pk, pv)) = p.split_once('=') else {
                        continue;
                    };
                    match pk.trim().to_ascii_lowercase().as_str() {
                        "name" => part.name = unquote(pv.trim()),
                        "filename" => part.filename = Some(unquote(pv.trim())),
                        _ => {}
                    }
                }
            } else if k.eq_ignore_ascii_case("content-type") {
                part.content_type = Some(v.trim().to_owned());
            }
        }
        parts.push(part);
    }
}

/// Position of the first `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let (&first, rest) = needle.split_first()?;
    let mut from = 0;
    while let Some(i) = haystack.get(from..)?.iter().position(|b| *b == first) {
        let at = from + i;
        if haystack.get(at + 1..at + needle.len())? == rest {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Splits a header value on `;` outside quoted strings.
fn split_params(s: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let s = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, c) in s.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' if quoted => escaped = true,
                '"' => quoted = !quoted,
                ';' if !quoted => {
                    rest = Some(&s[i + 1..]);
                    return Some(&s[..i]);
                }
                _ => {}
            }
        }
        rest = None;
        Some(s)
    })
}

/// A parameter value without its quotes and backslash escapes.
fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    #[test]
    fn parses_fields_and_files() {
        let body = b"preamble\r\n--XyZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a \\\"b\\\"; c.wav\"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n--X\r\n\r\n--XyZ--\r\nepilogue";
        let parts = parse(Some(CT), body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "model");
        assert_eq!(parts[0].text(), "whisper-1");
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[1].name, "file");
        assert_eq!(parts[1].filename.as_deref(), Some("a \"b\"; c.wav"));
        assert_eq!(parts[1].content_type.as_deref(), Some("audio/wav"));
        assert_eq!(parts[1].data, b"RIFF\r\n--X\r\n");
    }

    #[test]
    fn find_bytes() {
        assert_eq!(find(b"abcabd", b"abd"), Some(3));
        assert_eq!(find(b"abcab", b"abd"), None);
        assert_eq!(find(b"ab", b"abc"), None);
        assert_eq!(find(b"xx\r\n\r\n", b"\r\n\r\n"), Some(2));
        assert_eq!(find(b"abc", b""), None);
    }

    #[test]
    fn boundary_forms() {
        assert_eq!(
            boundary(Some("Multipart/Form-Data; charset=x; boundary=\"a;b\"")),
            Ok("a;b".to_owned())
        );
        assert_eq!(boundary(Some("application/json")), Err(Error::NotMultipart));
        assert_eq!(boundary(None), Err(Error::NotMultipart));
        assert_eq!(
            boundary(Some("multipart/form-data")),
            Err(Error::NoBoundary)
        );
        assert_eq!(
            boundary(Some("multipart/form-data; boundary=")),
            Err(Error::NoBoundary)
        );
    }

    #[test]
    fn rejects_broken_bodies() {
        assert_eq!(parse(Some(CT), b"nothing here"), Err(Error::Malformed));
        assert_eq!(
            parse(
                Some(CT),
                b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nno end"
            ),
            Err(Error::Malformed)
        );
        assert_eq!(parse(Some(CT), b"--XyZ--\r\n"), Ok(vec![]));
    }
}
