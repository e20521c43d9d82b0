// Drive a running Signalbox with the Vercel AI SDK (`ai` + `@ai-sdk/openai`).
//
// Usage: node vercel_ai.mjs BASE_URL GATEWAY_KEY CALLER_PROVIDER_KEY
// Routes expected (config in crates/server/tests/it/sdk.rs): route::chat, route::embed,
// route::speak, route::listen, route::draw, route::cut (every stream is cut after a few events),
// route::structured (its upstream answers JSON), the passthrough model byok::gpt-4.1 (caller's own
// key), and the bare model `echo-1` of a `mock` provider. `openai(model)` uses the Responses API and
// `openai.chat(model)` chat completions; the Rust side checks which path each call reached.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

import { createOpenAI } from '@ai-sdk/openai';
import {
  embed,
  experimental_generateSpeech as generateSpeech,
  experimental_transcribe as transcribe,
  generateImage,
  generateText,
  Output,
  streamText,
} from 'ai';
import { z } from 'zod';

import { checkWav, toneWav } from './sdkcheck.mjs';

const [base, key, callerKey] = process.argv.slice(2);
assert.ok(base && key && callerKey, 'usage: node vercel_ai.mjs BASE_URL GATEWAY_KEY CALLER_PROVIDER_KEY');
const version = (name) =>
  JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version;
console.log(`vercel-ai: ai ${version('ai')}, @ai-sdk/openai ${version('@ai-sdk/openai')} on node ${process.version}`);
const started = performance.now();

const openai = createOpenAI({ baseURL: `${base}/v1`, apiKey: key });

async function generate(model, prompt, label) {
  const r = await generateText({ model, prompt, maxRetries: 0 });
  assert.equal(r.text, `fake reply to: ${prompt}`, label);
  assert.equal(r.finishReason, 'stop', label);
  assert.ok(r.usage.inputTokens > 0 && r.usage.outputTokens > 0, `${label}: ${JSON.stringify(r.usage)}`);
  assert.equal(r.response.modelId, 'gpt-4o', label);
  assert.equal(r.response.headers['x-signalbox-route'], 'route:chat', label);
  return r;
}

async function stream(model, prompt, label) {
  const errors = [];
  const s = streamText({ model, prompt, maxRetries: 0, onError: ({ error }) => errors.push(error) });
  let text = '';
  let pieces = 0;
  for await (const delta of s.textStream) {
    text += delta;
    pieces++;
  }
  assert.deepEqual(errors, [], `${label}: stream errors`);
  assert.equal(text, `fake reply to: ${prompt}`, label);
  assert.ok(pieces > 1, `${label}: arrives in pieces (${pieces})`);
  assert.equal(await s.finishReason, 'stop', label);
  const usage = await s.usage;
  assert.ok(usage.inputTokens > 0 && usage.outputTokens > 0, `${label}: ${JSON.stringify(usage)}`);
  assert.equal((await s.response).modelId, 'gpt-4o', label);
}

// The default provider call: the Responses API.
await generate(openai('route::chat'), 'vercel responses generate', 'openai(model) generateText');
await stream(openai('route::chat'), 'vercel responses stream', 'openai(model) streamText');

// Chat completions.
await generate(openai.chat('route::chat'), 'vercel chat generate', 'openai.chat generateText');
await stream(openai.chat('route::chat'), 'vercel chat stream', 'openai.chat streamText');

// A bare model served by the built-in mock provider (passthrough; the mock needs no key).
{
  const r = await generateText({ model: openai.chat('echo-1'), prompt: 'Hi mock', maxRetries: 0 });
  assert.match(r.text, /Hello from the Signalbox mock model echo-1/);
  assert.equal(r.response.headers['x-signalbox-route'], 'passthrough:demo');
  const s = streamText({ model: openai('echo-1'), prompt: 'Hi mock stream', maxRetries: 0, onError: ({ error }) => { throw error; } });
  assert.match(await s.text, /Hello from the Signalbox mock model echo-1/);
}

// Structured output (a JSON schema) through both APIs; route::structured's upstream answers JSON.
for (const [label, model] of [
  ['openai(model)', openai('route::structured')],
  ['openai.chat(model)', openai.chat('route::structured')],
]) {
  const { output } = await generateText({
    model,
    prompt: 'weather in Paris as JSON',
    output: Output.object({ schema: z.object({ city: z.string(), temp_c: z.number() }) }),
    maxRetries: 0,
  });
  assert.deepEqual(output, { city: 'Paris', temp_c: 21 }, label);
}

// Embeddings through a route.
{
  const { embedding } = await embed({ model: openai.embedding('route::embed'), value: 'alpha', maxRetries: 0 });
  assert.ok(embedding.length > 0 && typeof embedding[0] === 'number');
}

// A stream cut after its first bytes: the SDK reports the gateway's error (on the Responses API an
// `event: error` in the Responses shape, on chat a `data: {"error":...}` event), and never
// finishes with 'stop'.
for (const [label, model] of [
  ['openai(model)', openai('route::cut')],
  ['openai.chat(model)', openai.chat('route::cut')],
]) {
  const errors = [];
  const s = streamText({ model, prompt: 'cut', maxRetries: 0, onError: ({ error }) => errors.push(error) });
  let text = '';
  for await (const delta of s.textStream) text += delta;
  const finish = await s.finishReason.catch((err) => `rejected: ${err}`);
  assert.ok(errors.length > 0, `${label}: no error reported for a cut stream (finish: ${finish}, text: ${text})`);
  const reported = JSON.stringify(errors.map((e) => e?.message ?? e));
  assert.match(reported, /interrupted/, `${label}`);
  assert.doesNotMatch(reported, /Type validation failed/, `${label}: the error event must parse`);
  assert.notEqual(finish, 'stop', `${label}: a cut stream must not finish as complete`);
}

// Passthrough with the caller's own key; the gateway key in x-signalbox-authorization.
{
  const own = createOpenAI({
    baseURL: `${base}/v1`,
    apiKey: callerKey,
    headers: { 'x-signalbox-authorization': `Bearer ${key}` },
  });
  for (const model of [own('byok::gpt-4.1'), own.chat('byok::gpt-4.1')]) {
    const r = await generateText({ model, prompt: 'vercel passthrough', maxRetries: 0 });
    assert.equal(r.text, 'fake reply to: vercel passthrough');
    assert.equal(r.response.headers['x-signalbox-route'], 'passthrough:byok');
  }
}

// Speech, transcription and images through routes.
{
  const speech = await generateSpeech({ model: openai.speech('route::speak'), text: 'Hello', outputFormat: 'wav', maxRetries: 0 });
  checkWav(Buffer.from(speech.audio.uint8Array));
  const wav = toneWav(0.25);
  const t = await transcribe({ model: openai.transcription('route::listen'), audio: wav, maxRetries: 0 });
  assert.equal(t.text, `fake transcript of audio.wav (${wav.length} bytes)`);
  const { image } = await generateImage({ model: openai.image('route::draw'), prompt: 'a green square', maxRetries: 0 });
  assert.deepEqual([...image.uint8Array.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
}

// An unknown model surfaces as the SDK's API error with the gateway's status and body.
{
  let caught = null;
  try {
    await generateText({ model: openai.chat('route::nope'), prompt: 'x', maxRetries: 0 });
  } catch (err) {
    caught = err;
  }
  assert.ok(caught, 'expected an error');
  assert.equal(caught.statusCode, 404, String(caught));
  assert.match(caught.responseBody, /model_not_found/);
}

console.log(`vercel-ai: all checks passed in ${((performance.now() - started) / 1000).toFixed(2)}s`);
