"""Every endpoint through every layer, and the errors as the OpenAI Python SDK raises them.

Usage: python3 openai_python_layers.py BASE_URL GATEWAY_KEY CALLER_PROVIDER_KEY

For each endpoint: a named route, a bare model (a target no route uses: `target:NAME`), a
passthrough call `byok::MODEL` with the caller's own key in `Authorization` and the gateway key in
`x-signalbox-authorization`, the wrong-endpoint error and the unknown-model error. The Rust side
checks which key and model reached which upstream, and that no error sent anything upstream.
"""
import openai
from openai.types import CreateEmbeddingResponse, ImagesResponse
from openai.types.audio import Transcription, Translation
from openai.types.chat import ChatCompletion
from openai.types.responses import Response

from sdkcheck import check_wav, client, expect_error, start, tone_wav

base, key, extra, done = start("openai-python layers")
caller_key = extra[0]
managed = client(base, key)
own = client(base, caller_key, default_headers={"x-signalbox-authorization": f"Bearer {key}"})
WAV = tone_wav(0.1)


def chat(c, model):
    raw = c.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "layers"}]
    )
    r = raw.parse()
    assert isinstance(r, ChatCompletion) and r.choices[0].message.content == "fake reply to: layers", r
    return raw, r.model


def responses(c, model):
    raw = c.responses.with_raw_response.create(model=model, input="layers")
    r = raw.parse()
    assert isinstance(r, Response) and r.output_text == "fake reply to: layers", r
    return raw, r.model


def embeddings(c, model):
    raw = c.embeddings.with_raw_response.create(model=model, input="layers", encoding_format="float")
    r = raw.parse()
    assert isinstance(r, CreateEmbeddingResponse) and len(r.data[0].embedding) > 0, r
    return raw, r.model


def speech(c, model):
    raw = c.audio.speech.with_raw_response.create(
        model=model, input="layers", voice="alloy", response_format="wav"
    )
    check_wav(raw.parse().content)
    return raw, None


def transcriptions(c, model):
    raw = c.audio.transcriptions.with_raw_response.create(
        model=model, file=("layers.wav", WAV, "audio/wav")
    )
    r = raw.parse()
    assert isinstance(r, Transcription), type(r)
    assert r.text == f"fake transcript of layers.wav ({len(WAV)} bytes)", r.text
    return raw, None


def translations(c, model):
    raw = c.audio.translations.with_raw_response.create(
        model=model, file=("layers.wav", WAV, "audio/wav")
    )
    r = raw.parse()
    assert isinstance(r, Translation), type(r)
    assert r.text == f"fake translation of layers.wav ({len(WAV)} bytes)", r.text
    return raw, None


def images(c, model):
    raw = c.images.with_raw_response.generate(model=model, prompt="layers", response_format="b64_json")
    r = raw.parse()
    assert isinstance(r, ImagesResponse) and r.data[0].b64_json, r
    return raw, None


# endpoint: (call, route, bare model and its target, passthrough model, a route of another kind)
ENDPOINTS = {
    "chat": (chat, "chat", "gpt-4o-mini", "bare-chat", "gpt-4.1", "embed"),
    "responses": (responses, "chat", "gpt-4o-mini", "bare-chat", "gpt-4.1", "speak"),
    "embeddings": (embeddings, "embed", "text-embedding-3-large", "bare-embed", "text-embedding-ada-002", "chat"),
    "speech": (speech, "speak", "tts-1-hd", "bare-speak", "gpt-4o-mini-tts", "draw"),
    "transcriptions": (transcriptions, "listen", "gpt-4o-transcribe", "bare-listen", "gpt-4o-mini-transcribe", "chat"),
    "translations": (translations, "listen", "gpt-4o-transcribe", "bare-listen", "gpt-4o-mini-transcribe", "speak"),
    "images": (images, "draw", "dall-e-2", "bare-draw", "gpt-image-1", "listen"),
}
KIND = {
    "chat": ("chat", "POST /v1/chat/completions"),
    "embed": ("embeddings", "POST /v1/embeddings"),
    "speak": ("audio_speech", "POST /v1/audio/speech"),
    "listen": ("audio_transcription", "POST /v1/audio/transcriptions"),
    "draw": ("image_generation", "POST /v1/images/generations"),
}
# A bare model of another endpoint kind, for the 404 hint.
OTHER_BARE = {
    "chat": ("text-embedding-3-large", "embeddings"),
    "responses": ("dall-e-2", "image_generation"),
    "embeddings": ("gpt-4o-mini", "chat"),
    "speech": ("gpt-4o-transcribe", "audio_transcription"),
    "transcriptions": ("tts-1-hd", "audio_speech"),
    "translations": ("gpt-4o-mini", "chat"),
    "images": ("text-embedding-3-large", "embeddings"),
}


def headers_of(raw):
    return {k.lower(): v for k, v in raw.headers.items()}


for endpoint, (call, route, bare, target, byok_model, other) in ENDPOINTS.items():
    where = f"[{endpoint}]"

    # 1. a named route, with the gateway's own credential
    raw, model = call(managed, f"route::{route}")
    h = headers_of(raw)
    assert h["x-signalbox-route"] == f"route:{route}", (where, h)
    assert h["x-signalbox-provider"] == "house", (where, h)
    assert h["x-signalbox-attempts"] == "1", (where, h)
    assert h.get("x-request-id"), (where, h)
    assert model is None or "::" not in model, (where, model)

    # 2. a bare model: the implicit route of a target no route uses
    raw, model = call(managed, bare)
    h = headers_of(raw)
    assert h["x-signalbox-route"] == f"target:{target}", (where, h)
    assert h["x-signalbox-model"] == bare, (where, h)
    assert model in (None, bare), (where, model)

    # 3. passthrough with the caller's own provider key
    raw, model = call(own, f"byok::{byok_model}")
    h = headers_of(raw)
    assert h["x-signalbox-route"] == "passthrough:byok", (where, h)
    assert h["x-signalbox-provider"] == "byok", (where, h)
    assert model in (None, byok_model), (where, model)

    # 4. a route of another kind: 400 wrong_endpoint naming the right endpoint
    kind, path = KIND[other]
    err = expect_error(
        openai.BadRequestError,
        lambda: call(managed, f"route::{other}"),
        code="wrong_endpoint",
        status=400,
        contains=f"route '{other}' serves {kind}: {path}",
    )
    assert err.param == "model" and err.type, (where, err.body)

    # 5. unknown models: 404 model_not_found, with a hint when the name exists elsewhere
    expect_error(
        openai.NotFoundError,
        lambda: call(managed, "no-such-model"),
        code="model_not_found",
        status=404,
        contains="no-such-model",
    )
    expect_error(
        openai.NotFoundError,
        lambda: call(managed, "route::nope"),
        code="model_not_found",
        contains="route 'nope' does not exist",
    )
    expect_error(
        openai.NotFoundError,
        lambda: call(own, "byok::no-such-model"),
        code="model_not_found",
        contains="provider 'byok' does not list model 'no-such-model'",
    )
    other_model, other_kind = OTHER_BARE[endpoint]
    expect_error(
        openai.NotFoundError,
        lambda: call(managed, other_model),
        code="model_not_found",
        contains=f"model '{other_model}' serves {other_kind}",
    )

# Passthrough with the caller's key but no gateway key: that key is taken as the gateway key.
no_gateway_key = client(base, caller_key)
expect_error(
    openai.AuthenticationError, lambda: chat(no_gateway_key, "byok::gpt-4.1"), code="auth", status=401
)
# The gateway key alone on a caller_key passthrough provider: 401 auth, nothing sent upstream.
expect_error(openai.AuthenticationError, lambda: chat(managed, "byok::gpt-4.1"), code="auth", status=401)

# A project header that is not the key's project: 403 forbidden.
elsewhere = client(base, key, default_headers={"x-signalbox-project-id": "elsewhere"})
expect_error(
    openai.PermissionDeniedError, lambda: chat(elsewhere, "route::chat"), code="forbidden", status=403
)

done()
