// Drive a running Signalbox with the official OpenAI Node SDK (`openai` on npm).
//
// Usage: node openai_node.mjs BASE_URL GATEWAY_KEY CALLER_PROVIDER_KEY
// Routes expected (config in crates/server/tests/it/sdk.rs): route::chat, route::embed,
// route::speak, route::listen, route::draw, route::cut (every stream is cut after a few events) and
// route::flaky (an upstream that always answers 503, with a gateway plan of 1 + 2 retries). The Rust side checks what reached the upstreams.
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import OpenAI, { BadRequestError, InternalServerError, NotFoundError, toFile } from 'openai';
import { VERSION } from 'openai/version';

import { expectError, checkWav, toneWav } from './sdkcheck.mjs';

const [base, key, callerKey] = process.argv.slice(2);
assert.ok(base && key && callerKey, 'usage: node openai_node.mjs BASE_URL GATEWAY_KEY CALLER_PROVIDER_KEY');
console.log(`openai-node ${VERSION} on node ${process.version}`);
const started = performance.now();

const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0, timeout: 20_000 });
const msgs = (text) => [{ role: 'user', content: text }];

// ---- chat: plain, with the gateway's headers -------------------------------------------------
{
  const { data, response } = await client.chat.completions
    .create({ model: 'route::chat', messages: msgs('node plain') })
    .withResponse();
  assert.equal(data.choices[0].message.content, 'fake reply to: node plain');
  assert.equal(data.choices[0].finish_reason, 'stop');
  assert.equal(data.model, 'gpt-4o');
  assert.ok(data.usage.total_tokens > 0);
  assert.equal(response.headers.get('x-signalbox-route'), 'route:chat');
  assert.ok(response.headers.get('x-request-id'));
}

// ---- chat: streaming with include_usage, and the stream() helper -------------------------------
{
  const stream = await client.chat.completions.create({
    model: 'route::chat',
    messages: msgs('node stream'),
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage = null;
  let finish = null;
  for await (const chunk of stream) {
    if (chunk.choices.length) {
      text += chunk.choices[0].delta.content ?? '';
      finish = chunk.choices[0].finish_reason ?? finish;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, 'fake reply to: node stream');
  assert.equal(finish, 'stop');
  assert.ok(usage && usage.total_tokens > 0, 'the usage chunk arrives');

  const helper = client.chat.completions.stream({ model: 'route::chat', messages: msgs('node helper') });
  let deltas = '';
  helper.on('content', (delta) => (deltas += delta));
  const final = await helper.finalChatCompletion();
  assert.equal(final.choices[0].message.content, 'fake reply to: node helper');
  assert.equal(deltas, 'fake reply to: node helper');
}

// ---- Responses API: plain, stream: true, and the stream() helper -------------------------------
{
  const r = await client.responses.create({ model: 'route::chat', input: 'node responses' });
  assert.equal(r.object, 'response');
  assert.equal(r.status, 'completed');
  assert.equal(r.output_text, 'fake reply to: node responses');
  assert.equal(r.model, 'gpt-4o');

  const events = [];
  for await (const ev of await client.responses.create({
    model: 'route::chat',
    input: 'node responses stream',
    stream: true,
  })) {
    events.push(ev);
  }
  assert.equal(events[0].type, 'response.created');
  assert.equal(events.at(-1).type, 'response.completed');
  const text = events
    .filter((e) => e.type === 'response.output_text.delta')
    .map((e) => e.delta)
    .join('');
  assert.equal(text, 'fake reply to: node responses stream');

  const helper = client.responses.stream({ model: 'route::chat', input: 'node responses helper' });
  let deltas = '';
  helper.on('response.output_text.delta', (e) => (deltas += e.delta));
  const final = await helper.finalResponse();
  // (this SDK's finalResponse() has no `output_text` unless it parsed a text format)
  assert.equal(final.status, 'completed');
  assert.equal(final.output[0].content[0].text, 'fake reply to: node responses helper');
  assert.equal(deltas, 'fake reply to: node responses helper');
}

// ---- embeddings: the SDK's default (base64, decoded by the SDK) and float ----------------------
{
  const byDefault = await client.embeddings.create({ model: 'route::embed', input: ['alpha', 'beta'] });
  const float = await client.embeddings.create({
    model: 'route::embed',
    input: ['alpha', 'beta'],
    encoding_format: 'float',
  });
  assert.equal(float.data.length, 2);
  assert.equal(float.model, 'text-embedding-3-small');
  const a = byDefault.data[0].embedding;
  const b = float.data[0].embedding;
  assert.ok(Array.isArray(a) && Array.isArray(b) && b.length > 0);
  assert.equal(a.length, b.length);
  a.forEach((x, i) => assert.ok(Math.abs(x - b[i]) < 1e-6, 'same vector either way'));
}

// ---- speech: a WAV written to a file and checked ----------------------------------------------
const dir = mkdtempSync(join(tmpdir(), 'signalbox-node-'));
{
  const res = await client.audio.speech.create({
    model: 'route::speak',
    voice: 'alloy',
    input: 'Hello from node',
    response_format: 'wav',
  });
  assert.equal(res.headers.get('content-type'), 'audio/wav');
  const path = join(dir, 'speech.wav');
  writeFileSync(path, Buffer.from(await res.arrayBuffer()));
  checkWav(readFileSync(path));
}

// ---- transcription and translation: a WAV made here, uploaded two ways ------------------------
{
  const wav = toneWav(0.25);
  checkWav(wav);
  const path = join(dir, 'tone.wav');
  writeFileSync(path, wav);

  const json = await client.audio.transcriptions.create({
    model: 'route::listen',
    file: await toFile(wav, 'tone.wav', { type: 'audio/wav' }),
    response_format: 'json',
  });
  assert.equal(json.text, `fake transcript of tone.wav (${wav.length} bytes)`);

  const text = await client.audio.transcriptions.create({
    model: 'route::listen',
    file: createReadStream(path),
    response_format: 'text',
  });
  assert.equal(typeof text, 'string');
  assert.equal(text.trim(), `fake transcript of tone.wav (${wav.length} bytes)`);

  const tr = await client.audio.translations.create({
    model: 'route::listen',
    file: await toFile(wav, 'clip.wav', { type: 'audio/wav' }),
  });
  assert.equal(tr.text, `fake translation of clip.wav (${wav.length} bytes)`);
}

// ---- images: url and b64_json -----------------------------------------------------------------
{
  const url = await client.images.generate({ model: 'route::draw', prompt: 'a blue square', response_format: 'url' });
  assert.match(url.data[0].url, /^https:\/\//);
  const b64 = await client.images.generate({
    model: 'route::draw',
    prompt: 'a blue square',
    response_format: 'b64_json',
  });
  const png = Buffer.from(b64.data[0].b64_json, 'base64');
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
}

// ---- a stream cut after its first bytes rejects, never ends as a complete answer ---------------
async function expectInterrupted(label, iterate) {
  let events = 0;
  try {
    for await (const _ of await iterate()) events++;
  } catch (err) {
    assert.ok(err instanceof OpenAI.APIError, `${label}: ${err}`);
    assert.equal(err.code, 'stream_interrupted', `${label}: ${err}`);
    assert.ok(events > 0, `${label}: events before the cut arrive first`);
    return;
  }
  assert.fail(`${label}: a cut stream ended cleanly after ${events} events`);
}
await expectInterrupted('chat', () =>
  client.chat.completions.create({ model: 'route::cut', messages: msgs('cut'), stream: true }),
);
await expectInterrupted('responses', () =>
  client.responses.create({ model: 'route::cut', input: 'cut', stream: true }),
);
{
  const helper = client.responses.stream({ model: 'route::cut', input: 'cut helper' });
  await assert.rejects(helper.finalResponse(), (err) => err.code === 'stream_interrupted' || assert.fail(String(err)));
}

// ---- models list ------------------------------------------------------------------------------
{
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  for (const r of ['chat', 'embed', 'speak', 'listen', 'draw', 'flaky', 'cut']) {
    assert.ok(ids.includes(`route::${r}`), `route::${r} in ${ids}`);
  }
}

{
  const one = await client.models.retrieve('route::speak');
  assert.equal(one.id, 'route::speak');
  assert.equal(one.endpoint, 'audio_speech');
}

// ---- passthrough with the caller's own key, the gateway key in x-signalbox-authorization ------
{
  const own = new OpenAI({
    baseURL: `${base}/v1`,
    apiKey: callerKey,
    defaultHeaders: { 'x-signalbox-authorization': `Bearer ${key}` },
    maxRetries: 0,
  });
  const { data, response } = await own.chat.completions
    .create({ model: 'byok::gpt-4.1', messages: msgs('node passthrough') })
    .withResponse();
  assert.equal(data.choices[0].message.content, 'fake reply to: node passthrough');
  assert.equal(response.headers.get('x-signalbox-route'), 'passthrough:byok');
  const e = await own.embeddings.create({ model: 'byok::text-embedding-ada-002', input: 'x' });
  assert.ok(e.data[0].embedding.length > 0);
}

// ---- errors, typed, with the gateway's codes --------------------------------------------------
await expectError(NotFoundError, () => client.chat.completions.create({ model: 'route::nope', messages: msgs('x') }), {
  status: 404,
  code: 'model_not_found',
});
await expectError(NotFoundError, () => client.embeddings.create({ model: 'no-such-model', input: 'x' }), {
  status: 404,
  code: 'model_not_found',
});
await expectError(
  BadRequestError,
  () => client.chat.completions.create({ model: 'route::embed', messages: msgs('x') }),
  { status: 400, code: 'wrong_endpoint', contains: 'POST /v1/embeddings' },
);
await expectError(
  BadRequestError,
  () => client.images.generate({ model: 'route::speak', prompt: 'x' }),
  { status: 400, code: 'wrong_endpoint', contains: 'POST /v1/audio/speech' },
);

// ---- no retry on top of the gateway's plan: maxRetries 2, yet the upstream sees 3 attempts -----
{
  const retrying = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 2, timeout: 20_000 });
  const err = await expectError(
    InternalServerError,
    () => retrying.chat.completions.create({ model: 'route::flaky', messages: msgs('x') }),
    { status: 503, code: 'overloaded' },
  );
  assert.equal(err.headers.get('x-should-retry'), 'false');
  assert.equal(err.headers.get('x-signalbox-attempts'), '3');
}

console.log(`openai-node: all checks passed in ${((performance.now() - started) / 1000).toFixed(2)}s`);
