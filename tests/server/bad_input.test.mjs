// Hostile and broken clients: malformed JSON, wrong types, huge bodies, garbage HTTP, a slow
// client, disconnects mid-stream, many idle connections. The server answers each with the
// right status in OpenAI's error shape, keeps serving, and never crashes.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { loadOpenAI, makeModel, startServer, rawRequest, httpPost, sleep, metric } from './helpers.mjs';

const OpenAI = await loadOpenAI();
let srv, client;

before(async () => {
  makeModel();
  srv = await startServer(['--max-batch', '4', '--ctx', '256', '--max-body', '1048576', '--read-timeout', '1.5',
    '--header-timeout', '1.5']);
  client = new OpenAI({ apiKey: 'none', baseURL: `${srv.base}/v1`, maxRetries: 0, timeout: 30000 });
});

after(async () => {
  assert.ok(srv.alive(), `the server died:\n${srv.log()}`);
  const code = await srv.stop();
  assert.equal(code, 0, `server exit code ${code}:\n${srv.log()}`);
});

async function stillServing() {
  assert.ok(srv.alive(), `the server died:\n${srv.log()}`);
  const r = await client.completions.create({ model: 'x', prompt: 'ok?', max_tokens: 3, temperature: 0 });
  assert.equal(r.choices.length, 1);
}

async function expectError(res, status, param) {
  assert.equal(res.status, status);
  const body = await res.json();
  assert.equal(typeof body.error.message, 'string');
  assert.ok('type' in body.error && 'param' in body.error && 'code' in body.error);
  if (param !== undefined) assert.equal(body.error.param, param);
  return body.error;
}

test('malformed JSON and wrong types are 400', async () => {
  const chat = '/v1/chat/completions';
  await expectError(await httpPost(srv.port, chat, '{"model": "x", "messages": ['), 400);
  await expectError(await httpPost(srv.port, chat, 'not json at all'), 400);
  await expectError(await httpPost(srv.port, chat, ''), 400);
  await expectError(await httpPost(srv.port, chat, '[1,2,3]'), 400);
  await expectError(await httpPost(srv.port, chat, '"\xff\xfe"'), 400);
  await expectError(await httpPost(srv.port, chat, '['.repeat(100000) + ']'.repeat(100000)), 400);
  await expectError(await httpPost(srv.port, chat, { messages: [{ role: 'user', content: { a: 1 } }] }), 400,
    'messages[0].content');
  await expectError(await httpPost(srv.port, chat, { messages: [{ role: 'user', content: 'x' }], max_tokens: -5 }),
    400, 'max_tokens');
  await expectError(await httpPost(srv.port, chat, { messages: [{ role: 'user', content: 'x' }], top_k: 'many' }),
    400, 'top_k');
  await expectError(await httpPost(srv.port, chat, { messages: [{ role: 'user', content: 'x' }], stop: [1, 2] }),
    400, 'stop');
  await expectError(await httpPost(srv.port, '/v1/completions', { prompt: [5, 99999999] }), 400, 'prompt');
  await expectError(await httpPost(srv.port, '/v1/completions', { prompt: [] }), 400, 'prompt');
  await expectError(await httpPost(srv.port, '/v1/completions', { prompt: null }), 400, 'prompt');
  const r = await fetch(`${srv.base}/v1/completions`);  // GET on a POST route
  assert.equal(r.status, 405);
  await stillServing();
});

test('bodies over the limit are 413 without being read', async () => {
  const big = JSON.stringify({ prompt: 'x'.repeat(2 << 20) });
  const res = await rawRequest(srv.port, [
    `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${big.length}\r\n\r\n`,
    big]);
  assert.match(res, /^HTTP\/1\.1 413 /);
  assert.match(res, /exceeds the limit/);
  // A claimed length far beyond the limit, with no body at all.
  const res2 = await rawRequest(srv.port, ['POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n']);
  assert.match(res2, /^HTTP\/1\.1 413 /);
  await stillServing();
});

test('garbage HTTP is refused or dropped, never a crash', async () => {
  const cases = [
    'GARBAGE\r\n\r\n',
    '\x00\x01\x02\x03\r\n\r\n',
    'POST /v1/completions HTTP/9.9\r\n\r\n',
    'POST /v1/completions HTTP/1.1\r\nContent-Length: abc\r\n\r\n',
    'POST /v1/completions HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
    'POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n',
    'GET /' + 'a'.repeat(100000) + ' HTTP/1.1\r\n\r\n',
    'GET /health HTTP/1.1\r\nX: ' + 'b'.repeat(100000) + '\r\n\r\n',
  ];
  for (const c of cases) {
    const res = await rawRequest(srv.port, [c], { timeoutMs: 5000 });
    // 4xx, or 505 for a request in another major HTTP version.
    assert.match(res, /^HTTP\/1\.1 (4\d\d|505) /, `for ${JSON.stringify(c.slice(0, 60))}: ${res.slice(0, 100)}`);
  }
  await stillServing();
});

test('pipelined requests on one connection are both answered', async () => {
  const body = JSON.stringify({ prompt: [1, 2, 3], max_tokens: 2, temperature: 0 });
  const one = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const close = `GET /health HTTP/1.1\r\nConnection: close\r\n\r\n`;
  const res = await rawRequest(srv.port, [one + one + close]);
  assert.equal(res.match(/HTTP\/1\.1 200 /g)?.length, 3, res);
});

test('a slow client is dropped while others are served', async () => {
  const start = Date.now();
  // Trickles a request head one byte every 200 ms: longer than the 1.5 s head timeout.
  const head = 'POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n';
  const slow = rawRequest(srv.port, head.split(''), { delayMs: 200, timeoutMs: 20000 });
  // And one that sends its head but never its body.
  const stalled = rawRequest(srv.port, ['POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{"pro'],
    { timeoutMs: 20000 });
  await sleep(300);
  await stillServing();
  const [a, b] = await Promise.all([slow, stalled]);
  // The trickler gets a 408, or a closed connection if its own writes failed first.
  assert.ok(a === '' || /^HTTP\/1\.1 408 /.test(a), a.slice(0, 100));
  assert.match(b, /^HTTP\/1\.1 408 /);
  assert.ok(Date.now() - start < 15000);
  await stillServing();
});

test('clients that disconnect mid-stream are cancelled and their slots freed', async () => {
  const before = await (await fetch(`${srv.base}/metrics`)).text();
  const body = JSON.stringify({ prompt: 'A long story:', max_tokens: 200, temperature: 0, stream: true });
  const req = `POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const conns = [];
  for (let i = 0; i < 6; ++i) {  // more than the 4 slots: two wait in the queue
    conns.push(new Promise((resolve) => {
      const s = net.connect(srv.port, '127.0.0.1', () => s.write(req));
      let got = '';
      s.on('data', (d) => {
        got += d.toString();
        if (got.includes('data: ') || i >= 4) {
          s.destroy();  // mid-stream (or while queued)
          resolve();
        }
      });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    }));
  }
  await Promise.all(conns);
  // Also: a non-streaming request whose client leaves before the answer.
  const nb = JSON.stringify({ prompt: 'x', max_tokens: 200, temperature: 0 });
  const s = net.connect(srv.port, '127.0.0.1', () =>
    s.write(`POST /v1/completions HTTP/1.1\r\nContent-Length: ${nb.length}\r\n\r\n${nb}`));
  await sleep(50);
  s.destroy();

  let m;
  for (let k = 0; k < 100; ++k) {
    m = await (await fetch(`${srv.base}/metrics`)).text();
    if (metric(m, 'fathom_running_sequences') === 0 && metric(m, 'fathom_queue_depth') === 0) break;
    await sleep(50);
  }
  assert.equal(metric(m, 'fathom_running_sequences'), 0, m);
  assert.equal(metric(m, 'fathom_queue_depth'), 0, m);
  // Cancelled long before their 200 tokens: far fewer tokens than 7 full answers.
  const gen = metric(m, 'fathom_generation_tokens_total') - metric(before, 'fathom_generation_tokens_total');
  assert.ok(gen < 200, `generated ${gen} tokens for clients that left`);
  assert.ok(metric(m, 'fathom_client_disconnects_total') >= 5, m);
  await stillServing();
});

test('many idle connections do not block the server', async () => {
  const socks = await Promise.all(Array.from({ length: 64 }, () => new Promise((resolve) => {
    const s = net.connect(srv.port, '127.0.0.1', () => resolve(s));
    s.on('error', () => resolve(s));
  })));
  await stillServing();
  for (const s of socks) s.destroy();
  await stillServing();
});
