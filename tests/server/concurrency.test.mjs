// 32 simultaneous streaming requests through one running batch (more requests than slots, so
// some queue), a quarter of them aborted midway. Every finished greedy answer must equal the
// same request run alone (no crossed or lost tokens), aborted ones must be a prefix of it,
// their slots must be freed, and the server's memory must return to its idle level.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { loadOpenAI, makeModel, startServer, sleep, metric } from './helpers.mjs';

const OpenAI = await loadOpenAI();
let srv, client;

before(async () => {
  makeModel();
  srv = await startServer(['--max-batch', '12', '--ctx', '256', '--queue', '64']);
  client = new OpenAI({ apiKey: 'none', baseURL: `${srv.base}/v1`, maxRetries: 0, timeout: 120000 });
});

after(async () => {
  const code = await srv?.stop();
  assert.equal(code, 0, `server exit code ${code}:\n${srv?.log()}`);
});

// Request i: chat or text, prompts of different lengths, some sharing a prefix (so the prefix
// cache is exercised), different lengths of completion.
function request(i) {
  const max_tokens = 12 + (i * 7) % 21;
  const base = { model: 'x', temperature: 0, max_tokens, return_token_ids: true };
  if (i % 2 === 0) {
    const messages = [{ role: 'system', content: 'You are terse.' },
      { role: 'user', content: `Question ${i % 6}: ${'why '.repeat(1 + (i % 5))}?` }];
    return { kind: 'chat', body: { ...base, messages } };
  }
  return { kind: 'text', body: { ...base, prompt: `Item ${i}: ` + 'lorem ipsum '.repeat(1 + (i % 9)) } };
}

async function runStreamed(i, abortAfter) {
  const { kind, body } = request(i);
  const api = kind === 'chat' ? client.chat.completions : client.completions;
  const stream = await api.create({ ...body, stream: true });
  let text = '', ids = [], finish = null, aborted = false;
  try {
    for await (const ch of stream) {
      const c = ch.choices[0];
      if (!c) continue;
      text += (kind === 'chat' ? c.delta?.content : c.text) ?? '';
      ids.push(...(c.token_ids ?? []));
      if (c.finish_reason) finish = c.finish_reason;
      if (abortAfter && ids.length >= abortAfter) {
        aborted = true;
        stream.controller.abort();
        break;
      }
    }
  } catch (e) {
    if (!aborted) throw e;
  }
  return { text, ids, finish, aborted };
}

async function runAlone(i) {
  const { kind, body } = request(i);
  const api = kind === 'chat' ? client.chat.completions : client.completions;
  const r = await api.create(body);
  const c = r.choices[0];
  return { text: kind === 'chat' ? c.message.content : c.text, ids: c.token_ids, finish: c.finish_reason };
}

async function waitIdle() {
  for (let k = 0; k < 200; ++k) {
    const m = await (await fetch(`${srv.base}/metrics`)).text();
    if (metric(m, 'fathom_running_sequences') === 0 && metric(m, 'fathom_queue_depth') === 0) return m;
    await sleep(50);
  }
  throw new Error('the server did not go idle');
}

test('32 concurrent streams equal the same requests run alone; aborted ones free their slots', { timeout: 150000 },
  async () => {
    // Warm up (thread pools, allocator arenas, connection threads) and take the idle level.
    await Promise.all(Array.from({ length: 32 }, (_, i) => runStreamed(i, 0)));
    await waitIdle();
    await sleep(1000);
    const idleRss = srv.rssKiB();

    const N = 32;
    const abortAt = (i) => (i % 4 === 3 ? 2 + (i % 5) : 0);
    const results = await Promise.all(Array.from({ length: N }, (_, i) => runStreamed(i, abortAt(i))));
    const m = await waitIdle();
    const nAborted = results.filter((r) => r.aborted).length;
    assert.equal(nAborted, N / 4);
    assert.ok(metric(m, 'fathom_client_disconnects_total') >= nAborted, m);
    assert.equal(metric(m, 'fathom_kv_cache_used_tokens'), 0);

    for (let i = 0; i < N; ++i) {
      const alone = await runAlone(i);
      const got = results[i];
      if (got.aborted) {
        assert.deepEqual(got.ids, alone.ids.slice(0, got.ids.length), `aborted request ${i}: tokens differ`);
      } else {
        assert.deepEqual(got.ids, alone.ids, `request ${i}: tokens differ from the request run alone`);
        assert.equal(got.text, alone.text, `request ${i}: text differs`);
        assert.equal(got.finish, alone.finish);
      }
    }

    await waitIdle();
    await sleep(1000);
    const afterRss = srv.rssKiB();
    const tolerance = 8 * 1024;
    console.log(`# RSS idle ${idleRss} KiB, after ${afterRss} KiB`);
    // AddressSanitizer keeps freed blocks in quarantine by design, so RSS cannot return to
    // idle under it; leaks there are LeakSanitizer's job at exit.
    if (!process.env.ASAN_OPTIONS) {
      assert.ok(afterRss <= idleRss + tolerance,
        `RSS grew from ${idleRss} KiB idle to ${afterRss} KiB after the load (tolerance ${tolerance} KiB)`);
    }
  });

test('past the queue limit the server answers 429', { timeout: 60000 }, async () => {
  // The first request must still hold the only slot when the third arrives: 4000 tokens take
  // seconds even on a fast machine, where 200 could finish within the wait below.
  const small = await startServer(['--max-batch', '1', '--queue', '1', '--ctx', '4096']);
  try {
    const c = new OpenAI({ apiKey: 'none', baseURL: `${small.base}/v1`, maxRetries: 0 });
    const body = { model: 'x', prompt: 'busy', max_tokens: 4000, temperature: 0 };
    const first = c.completions.create({ ...body, stream: true });
    const s1 = await first;
    const it = s1[Symbol.asyncIterator]();
    await it.next();  // the only slot is now taken
    const second = c.completions.create({ ...body, max_tokens: 8 });  // queued
    await sleep(200);
    await assert.rejects(c.completions.create(body), (e) => e.status === 429 && e.error?.type === 'rate_limit_error');
    s1.controller.abort();
    const r2 = await second;  // the queued one gets the slot once the first is cancelled
    assert.ok(r2.choices[0].text.length > 0);
  } finally {
    await small.stop();
  }
});
