// Requests, connections and credentials that could take the server down or lock others out:
// prompts far beyond the context, floods of idle sockets, API keys kept off the command line.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { makeModel, startServer, rawRequest, httpPost, sleep } from './helpers.mjs';

const KEY = 'k3y-from-a-file';
const ENV_KEY = 'k3y-from-the-environment';
let big, small, few;  // the servers under test
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fathom-hardening-'));

before(async () => {
  makeModel();
  const keyFile = path.join(tmp, 'key');
  fs.writeFileSync(keyFile, `${KEY}\n`, { mode: 0o600 });
  // Room for large bodies, a context of 8192 tokens, the key in a file.
  big = await startServer(['--ctx', '8192', '--max-batch', '2', '--max-body', String(32 << 20),
    '--api-key-file', keyFile]);
  // Defaults for the body limit and the connections; a short head timeout; no key.
  small = await startServer(['--ctx', '256', '--max-batch', '2', '--header-timeout', '1']);
  // Four connections and 1000 bytes of bodies at most; the key from the environment.
  few = await startServer(['--ctx', '256', '--max-batch', '2', '--max-connections', '4', '--read-timeout', '20',
    '--max-body', '1000', '--max-body-total', '1000'],
    { env: { FATHOM_API_KEY: ENV_KEY } });
});

after(async () => {
  for (const s of [big, small, few]) {
    if (!s) continue;
    assert.ok(s.alive(), `the server died:\n${s.log()}`);
    assert.equal(await s.stop(), 0, s.log());
  }
  fs.rmSync(tmp, { recursive: true, force: true });
});

async function complete(srv, key, extra = {}) {
  const headers = key ? { authorization: `Bearer ${key}` } : {};
  const t0 = Date.now();
  const res = await httpPost(srv.port, '/v1/completions', { prompt: 'ok?', max_tokens: 2, temperature: 0, ...extra },
    headers);
  const body = await res.json();
  return { status: res.status, body, ms: Date.now() - t0 };
}

// Runs `fn` while sampling the server's resident memory; resolves with fn's result, the peak
// growth and the growth left afterwards, in bytes.
async function withPeakRss(srv, fn) {
  const base = srv.rssKiB();
  let peak = base;
  const timer = setInterval(() => { peak = Math.max(peak, srv.rssKiB()); }, 2);
  try {
    const result = await fn();
    peak = Math.max(peak, srv.rssKiB());
    return { result, growth: (peak - base) * 1024, left: (srv.rssKiB() - base) * 1024 };
  } finally {
    clearInterval(timer);
  }
}

const mib = (b) => `${(b / 2 ** 20).toFixed(1)} MiB`;

async function refused(srv, route, body) {
  const t0 = Date.now();
  const res = await httpPost(srv.port, route, body, { authorization: `Bearer ${KEY}` });
  const json = await res.json();
  assert.equal(res.status, 400, JSON.stringify(json));
  assert.equal(json.error.code, 'context_length_exceeded');
  return { json, ms: Date.now() - t0 };
}

// Tokenizing a whole prompt took some 75 times its size. A text prompt too long by its bytes
// is refused before its JSON is parsed (the body alone: under 2x); one that passes that bound
// is parsed (the body, the parser's copy, the prompt: under 5x).
// AddressSanitizer keeps freed blocks in quarantine and pads every allocation, so memory
// figures mean nothing under it; the limits themselves are still checked there.
function checkMemory({ growth, left }, size, factor) {
  if (process.env.ASAN_OPTIONS) return;
  assert.ok(growth < factor * size, `memory grew by ${mib(growth)} for ${mib(size)}`);
  assert.ok(left < Math.max(size, 8 << 20), `memory stayed ${mib(left)} higher after ${mib(size)}`);
}

test('a prompt far beyond the context is refused before it is tokenized', async () => {
  // 8 MB of text in one line: beyond any 8192 tokens by its length alone.
  const huge = 'lorem ipsum dolor sit amet '.repeat(300000);
  const one = await withPeakRss(big, () => refused(big, '/v1/completions', { prompt: huge, max_tokens: 1 }));
  assert.match(one.result.json.error.message, /at least \d+ tokens/);
  assert.ok(one.result.ms < 1000, `refused after ${one.result.ms} ms`);
  checkMemory(one, huge.length, 2);
  // 1 MB over many lines: short enough to pass the length bound, counted in windows instead.
  const long = 'the quick brown fox jumps over the lazy dog\n'.repeat(22000);
  for (const [route, body] of [['/v1/completions', { prompt: long, max_tokens: 1 }],
    ['/v1/chat/completions', { messages: [{ role: 'user', content: long }] }]]) {
    const r = await withPeakRss(big, () => refused(big, route, body));
    assert.ok(r.result.ms < 1500, `${route}: refused after ${r.result.ms} ms`);
    checkMemory(r, long.length, 5);
  }
  // Eight at once.
  const eight = await withPeakRss(big, () => Promise.all(Array.from({ length: 8 }, () =>
    refused(big, '/v1/completions', { prompt: huge, max_tokens: 1 }))));
  checkMemory(eight, 8 * huge.length, 2);
  // A prompt that fits is still tokenized exactly and served.
  const fits = 'the quick brown fox jumps over the lazy dog\n'.repeat(700);  // ~6300 tokens
  const ok = await complete(big, KEY, { prompt: fits });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.ok(ok.body.usage.prompt_tokens > 4000 && ok.body.usage.prompt_tokens < 8192, JSON.stringify(ok.body.usage));
});

test('the body limit is sized to the context by default', async () => {
  // A 256-token context needs nothing near 2 MB.
  const body = JSON.stringify({ prompt: 'x'.repeat(2 << 20) });
  const res = await rawRequest(small.port, [
    `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
    body]);
  assert.match(res, /^HTTP\/1\.1 413 /);
  assert.equal((await complete(small)).status, 200);
});

function openIdle(port, n) {
  return Promise.all(Array.from({ length: n }, () => new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => resolve(s));
    s.on('error', () => resolve(s));
  })));
}

test('300 idle sockets do not keep a client from being served', async () => {
  const socks = await openIdle(small.port, 300);
  try {
    const r = await complete(small);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.ms < 1000, `served after ${r.ms} ms`);
  } finally {
    for (const s of socks) s.destroy();
  }
});

test('a connection that sends no request head in time is closed', async () => {
  const t0 = Date.now();
  const closedAfter = await new Promise((resolve) => {
    const s = net.connect(small.port, '127.0.0.1');
    s.on('error', () => {});
    s.on('close', () => resolve(Date.now() - t0));
  });
  assert.ok(closedAfter >= 800 && closedAfter < 4000, `closed after ${closedAfter} ms`);
});

// Opens a connection that sends a head and part of its body, so it is busy being read.
function stalledUpload(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => {
      s.write('POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"pro');
      setTimeout(() => resolve(s), 50);
    });
    s.on('error', () => {});
  });
}

test('when every connection is busy sending a body, a new one gets 503 (server_error)', async () => {
  const busy = [];
  for (let i = 0; i < 4; ++i) busy.push(await stalledUpload(few.port));
  try {
    const res = await rawRequest(few.port, ['GET /health HTTP/1.1\r\n\r\n'], { timeoutMs: 5000 });
    assert.match(res, /^HTTP\/1\.1 503 /);
    assert.match(res, /\r\nRetry-After: /);
    const err = JSON.parse(res.slice(res.indexOf('\r\n\r\n') + 4)).error;
    assert.equal(err.type, 'server_error');
  } finally {
    for (const s of busy) s.destroy();
  }
  await sleep(200);
});

test('beyond the connection limit the idlest connection makes room', async () => {
  const busy = [await stalledUpload(few.port), await stalledUpload(few.port)];
  const idle = await openIdle(few.port, 40);
  try {
    const r = await complete(few, ENV_KEY);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.ms < 1000, `served after ${r.ms} ms`);
  } finally {
    for (const s of [...busy, ...idle]) s.destroy();
  }
  await sleep(200);
  assert.equal((await complete(few, ENV_KEY)).status, 200);
});

test('bodies stalled for a second make room too', async () => {
  const stalled = [];
  for (let i = 0; i < 4; ++i) stalled.push(await stalledUpload(few.port));
  try {
    await sleep(1200);
    const r = await complete(few, ENV_KEY);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.ok(r.ms < 1000, `served after ${r.ms} ms`);
  } finally {
    for (const s of stalled) s.destroy();
  }
  await sleep(200);
});

test('request bodies in flight are capped in total', async () => {
  const held = await stalledUpload(few.port);  // holds 100 bytes
  try {
    const res = await rawRequest(few.port, ['POST /v1/completions HTTP/1.1\r\nContent-Length: 950\r\n\r\n'],
      { timeoutMs: 5000 });
    assert.match(res, /^HTTP\/1\.1 503 /);
    assert.match(res, /too many request bodies/);
  } finally {
    held.destroy();
  }
  await sleep(200);
  assert.equal((await complete(few, ENV_KEY)).status, 200);
});

test('the API key comes from a file or the environment, never the command line', async () => {
  for (const [srv, key] of [[big, KEY], [few, ENV_KEY]]) {
    const cmdline = fs.readFileSync(`/proc/${srv.proc.pid}/cmdline`, 'utf8');
    assert.ok(!cmdline.includes(key), cmdline);
    assert.equal((await complete(srv, key)).status, 200);
    const wrong = await complete(srv, key + 'x');
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error.type, 'authentication_error');
    assert.equal((await complete(srv)).status, 401);
  }
});

test('the auth scheme is case-insensitive', async () => {
  for (const scheme of ['bearer', 'BEARER', 'bEaReR']) {
    const res = await httpPost(big.port, '/v1/completions', { prompt: 'ok?', max_tokens: 1 },
      { authorization: `${scheme} ${KEY}` });
    assert.equal(res.status, 200, scheme);
  }
  const res = await httpPost(big.port, '/v1/completions', { prompt: 'ok?', max_tokens: 1 },
    { authorization: `Basic ${KEY}` });
  assert.equal(res.status, 401);
});

test('without a key the server listens on this machine only and says so', () => {
  assert.match(small.log(), /no API key; listening on this machine only/);
  assert.doesNotMatch(big.log(), /no API key/);
});
