//! `POST /v1/images/generations`.

use serde::{Deserialize, Serialize};

use crate::Behaviour;
use crate::handler::{Cx, Resp};
use crate::media;
use crate::util::{base64, fnv1a, unix_now};

const MAX_N: u64 = 10;
/// Side of the generated PNGs, whatever `size` asks for.
const PNG_SIDE: u32 = 8;
const DEFAULT_MODEL: &str = "dall-e-2";

#[derive(Deserialize)]
struct ImagesRequest {
    model: Option<String>,
    prompt: Option<String>,
    n: Option<u64>,
    size: Option<String>,
    response_format: Option<String>,
    quality: Option<String>,
    background: Option<String>,
    output_format: Option<String>,
}

#[derive(Serialize)]
struct ImagesResponse<'a> {
    created: u64,
    data: Vec<Image>,
    #[serde(skip_serializing_if = "Option::is_none")]
    background: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    output_format: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    quality: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ImageUsage>,
}

#[derive(Serialize)]
struct Image {
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    b64_json: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revised_prompt: Option<String>,
}

#[derive(Serialize)]
struct ImageUsage {
    input_tokens: u64,
    input_tokens_details: ImageInputDetails,
    output_tokens: u64,
    total_tokens: u64,
}

#[derive(Serialize)]
struct ImageInputDetails {
    text_tokens: u64,
    image_tokens: u64,
}

fn valid_size(size: &str) -> bool {
    if size == "auto" {
        return true;
    }
    size.split_once('x').is_some_and(|(w, h)| {
        [w, h]
            .iter()
            .all(|d| d.parse::<u32>().is_ok_and(|d| (1..=8192).contains(&d)))
    })
}

impl Cx<'_> {
    pub(crate) fn images(&self, body: &[u8], behaviour: &Behaviour) -> Resp {
        let req: ImagesRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(e) => return self.invalid_json(&e),
        };
        let Some(prompt) = req.prompt else {
            return self.missing("prompt");
        };
        let model = req.model.as_deref().unwrap_or(DEFAULT_MODEL);
        let n = req.n.unwrap_or(1);
        if !(1..=MAX_N).contains(&n) {
            return self.bad_request(
                &format!("Invalid 'n': {n}. Expected a value between 1 and {MAX_N}."),
                Some("n"),
                Some("invalid_value"),
            );
        }
        let size = req.size.as_deref().unwrap_or("1024x1024");
        if !valid_size(size) {
            return self.invalid_value(
                "size",
                size,
                &[
                    "256x256",
                    "512x512",
                    "1024x1024",
                    "1536x1024",
                    "1024x1536",
                    "auto",
                ],
            );
        }
        // gpt-image models always answer in base64, with usage and output settings.
        let gpt_image = model.starts_with("gpt-image");
        let b64 = match req.response_format.as_deref() {
            None | Some("url") => gpt_image,
            Some("b64_json") => true,
            Some(other) => {
                return self.invalid_value("response_format", other, &["url", "b64_json"]);
            }
        };

        let seed = fnv1a(prompt.as_bytes());
        let data = (0..n)
            .map(|i| {
                let id = seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                Image {
                    url: (!b64).then(|| format!("https://fake.local/img/img-{id:016x}.png")),
                    b64_json: b64.then(|| {
                        let [r, g, b, ..] = id.to_le_bytes();
                        base64(&media::png(PNG_SIDE, [r, g, b]))
                    }),
                    revised_prompt: (!gpt_image).then(|| prompt.clone()),
                }
            })
            .collect();
        let usage = gpt_image.then(|| {
            let text_tokens = (prompt.chars().count() as u64).div_ceil(4).max(1);
            let output_tokens = 272 * n;
            ImageUsage {
                input_tokens: text_tokens,
                input_tokens_details: ImageInputDetails {
                    text_tokens,
                    image_tokens: 0,
                },
                output_tokens,
                total_tokens: text_tokens + output_tokens,
            }
        });
        let out = ImagesResponse {
            created: unix_now(),
            data,
            background: gpt_image.then(|| req.background.as_deref().unwrap_or("opaque")),
            output_format: gpt_image.then(|| req.output_format.as_deref().unwrap_or("png")),
            quality: gpt_image.then(|| req.quality.as_deref().unwrap_or("high")),
            size: gpt_image.then_some(size),
            usage,
        };
        self.json_ok(serde_json::to_string(&out).unwrap_or_default(), behaviour)
    }
}
