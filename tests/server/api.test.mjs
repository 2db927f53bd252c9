// `fathom serve` through the official OpenAI client: chat and text completions, streamed and
// not, usage, stop strings, logprobs, reasoning_content, auth, errors, and a greedy answer
// equal to `fathom generate` for the same ids.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { loadOpenAI, makeModel, startServer, binary, modelDir, metric } from './helpers.mjs';

const OpenAI = await loadOpenAI();
let srv, client;

before(async () => {
  makeModel();
  srv = await startServer(['--api-key', 'sekrit', '--max-batch', '4', '--ctx', '512']);
  client = new OpenAI({ apiKey: 'sekrit', baseURL: `${srv.base}/v1`, maxRetries: 0, timeout: 60000 });
});

after(async () => {
  const code = await srv?.stop();
  assert.equal(code, 0, `server exit code ${code}:\n${srv?.log()}`);
});

const greedy = { temperature: 0 };
const user = (content) => [{ role: 'user', content }];

test('models, health and metrics', async () => {
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].id, modelDir().split('/').pop());
  const health = await fetch(`${srv.base}/health`);
  assert.equal(health.status, 200);
  const m = await (await fetch(`${srv.base}/metrics`, { headers: { authorization: 'Bearer sekrit' } })).text();
  for (const name of ['fathom_requests_total', 'fathom_generation_tokens_total', 'fathom_queue_depth',
    'fathom_kv_cache_usage_ratio', 'fathom_generation_tokens_per_second', 'fathom_prompt_tokens_total']) {
    assert.ok(!Number.isNaN(metric(m, name)), `metric ${name} missing:\n${m}`);
  }
});

test('auth: no key or a wrong key is 401', async () => {
  const bad = new OpenAI({ apiKey: 'wrong', baseURL: `${srv.base}/v1`, maxRetries: 0 });
  await assert.rejects(bad.models.list(), (e) => e.status === 401 && e.error?.code === 'invalid_api_key');
  const r = await fetch(`${srv.base}/v1/models`);
  assert.equal(r.status, 401);
  const body = await r.json();
  assert.equal(body.error.type, 'authentication_error');
});

test('chat completion, not streamed', async () => {
  const r = await client.chat.completions.create({ model: 'x', messages: user('Hello!'), max_tokens: 8, ...greedy });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  const u = r.usage;
  assert.ok(u.prompt_tokens > 3);
  assert.ok(u.completion_tokens >= 1 && u.completion_tokens <= 8);
  assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens);
  assert.equal(u.completion_tokens_details.reasoning_tokens, 0);
  assert.equal(u.prompt_cache_hit_tokens + u.prompt_cache_miss_tokens, u.prompt_tokens);
  if (c.finish_reason === 'length') assert.equal(u.completion_tokens, 8);
});

test('chat streamed equals chat not streamed; the usage chunk comes last', async () => {
  const req = { model: 'x', messages: user('Tell me a story'), max_tokens: 12, ...greedy, return_token_ids: true };
  const whole = await client.chat.completions.create(req);
  const stream = await client.chat.completions.create({ ...req, stream: true, stream_options: { include_usage: true } });
  let text = '', role = null, finish = null, usage = null, chunks = 0, ids = [];
  for await (const ch of stream) {
    ++chunks;
    if (ch.usage) {
      assert.equal(ch.choices.length, 0);
      usage = ch.usage;
      continue;
    }
    assert.equal(usage, null, 'usage chunk must be last');
    const c = ch.choices[0];
    if (c.delta.role) role = c.delta.role;
    text += c.delta.content ?? '';
    ids.push(...(c.token_ids ?? []));
    if (c.finish_reason) finish = c.finish_reason;
  }
  assert.equal(role, 'assistant');
  assert.equal(text, whole.choices[0].message.content);
  assert.deepEqual(ids, whole.choices[0].token_ids);
  assert.equal(finish, whole.choices[0].finish_reason);
  assert.ok(usage, 'no usage chunk');
  assert.equal(usage.completion_tokens, whole.usage.completion_tokens);
  assert.equal(usage.prompt_tokens, whole.usage.prompt_tokens);
  // The same prompt again hits the prefix cache.
  assert.ok(usage.prompt_cache_hit_tokens > 0, JSON.stringify(usage));
  assert.ok(chunks >= 3);
});

test('greedy completion from token ids equals `fathom generate`', async () => {
  const ids = [0, 3136, 14, 1354, 2960, 16, 2];
  const n = 16;
  const out = execFileSync(binary(), ['generate', '--model', modelDir(), '--ids', ids.join(','), '-n', String(n),
    '--threads', '2']).toString().trim().split(/\s+/).map(Number);
  const r = await client.completions.create({ model: 'x', prompt: ids, max_tokens: n, ...greedy, return_token_ids: true });
  const got = r.choices[0].token_ids;
  // The server also stops at end-of-sentence (id 1); `generate` does not.
  const eos = out.indexOf(1);
  assert.deepEqual(got, eos >= 0 ? out.slice(0, eos + 1) : out);
  assert.equal(r.usage.prompt_tokens, ids.length);
  assert.equal(r.usage.completion_tokens, got.length);
  assert.equal(r.choices[0].finish_reason, eos >= 0 ? 'stop' : 'length');
});

test('text completion streamed equals not streamed', async () => {
  const req = { model: 'x', prompt: 'The quick brown fox', max_tokens: 10, ...greedy };
  const whole = await client.completions.create(req);
  assert.equal(whole.object, 'text_completion');
  let text = '', finish = null;
  for await (const ch of await client.completions.create({ ...req, stream: true })) {
    text += ch.choices[0]?.text ?? '';
    if (ch.choices[0]?.finish_reason) finish = ch.choices[0].finish_reason;
  }
  assert.equal(text, whole.choices[0].text);
  assert.equal(finish, whole.choices[0].finish_reason);
});

test('stop strings cut the text and are never emitted', async () => {
  const req = { model: 'x', prompt: 'Once upon a time', max_tokens: 24, ...greedy };
  const full = (await client.completions.create(req)).choices[0].text;
  assert.ok(full.length >= 6, `completion too short to test stops: ${JSON.stringify(full)}`);
  // A stop string from the middle of the greedy text: the answer is the text before it.
  const mid = Math.floor(full.length / 2);
  const stop = full.slice(mid, mid + 3);
  const expect = full.slice(0, full.indexOf(stop));
  const r = await client.completions.create({ ...req, stop: [stop, 'never-appears'] });
  assert.equal(r.choices[0].text, expect);
  assert.equal(r.choices[0].finish_reason, 'stop');
  let streamed = '';
  for await (const ch of await client.completions.create({ ...req, stop, stream: true })) {
    streamed += ch.choices[0]?.text ?? '';
    assert.ok(!streamed.includes(stop));
  }
  assert.equal(streamed, expect);
});

test('logprobs', async () => {
  const r = await client.chat.completions.create({ model: 'x', messages: user('hi'), max_tokens: 4, ...greedy,
    logprobs: true, top_logprobs: 3 });
  const lp = r.choices[0].logprobs.content;
  assert.equal(lp.length, r.usage.completion_tokens);
  for (const e of lp) {
    assert.ok(e.logprob <= 0);
    assert.equal(e.top_logprobs.length, 3);
    // Greedy: the chosen token is the most likely one.
    assert.equal(e.logprob, e.top_logprobs[0].logprob);
  }
  const c = await client.completions.create({ model: 'x', prompt: 'abc', max_tokens: 3, ...greedy, logprobs: 2 });
  assert.equal(c.choices[0].logprobs.tokens.length, 3);
  assert.equal(Object.keys(c.choices[0].logprobs.top_logprobs[0]).length, 2);
});

test('seeded sampling is reproducible', async () => {
  const req = { model: 'x', prompt: 'Sampling', max_tokens: 12, temperature: 1.0, top_p: 0.9, top_k: 50, seed: 42,
    return_token_ids: true };
  const a = await client.completions.create(req);
  const b = await client.completions.create(req);
  assert.deepEqual(a.choices[0].token_ids, b.choices[0].token_ids);
});

test('R1 semantics: a generation prompt that opens <think> puts the text in reasoning_content', async () => {
  const r1 = await startServer(['--max-batch', '2', '--ctx', '256'], { dir: modelDir() + '-r1' });
  try {
    const c = new OpenAI({ apiKey: 'none', baseURL: `${r1.base}/v1`, maxRetries: 0 });
    const msgs = [{ role: 'user', content: 'q1' }, { role: 'assistant', content: 'a1', reasoning_content: 'ignored' },
      { role: 'user', content: 'q2' }];
    const r = await c.chat.completions.create({ model: 'x', messages: msgs, max_tokens: 6, ...greedy });
    const m = r.choices[0].message;
    assert.ok(m.reasoning_content.length > 0);
    assert.equal(m.content, '');
    assert.equal(r.usage.completion_tokens_details.reasoning_tokens, r.usage.completion_tokens);
    let reasoning = '', content = '';
    for await (const ch of await c.chat.completions.create({ model: 'x', messages: msgs, max_tokens: 6, ...greedy,
      stream: true })) {
      reasoning += ch.choices[0]?.delta?.reasoning_content ?? '';
      content += ch.choices[0]?.delta?.content ?? '';
    }
    assert.equal(reasoning, m.reasoning_content);
    assert.equal(content, '');
  } finally {
    await r1.stop();
  }
});

test('errors have the OpenAI shape and name the field', async () => {
  const cases = [
    [{ model: 'x', messages: user('hi'), n: 2 }, 'n'],
    [{ model: 'x', messages: user('hi'), temperature: 'hot' }, 'temperature'],
    [{ model: 'x', messages: user('hi'), tools: [{ type: 'function', function: { name: 'f' } }] }, 'tools'],
    [{ model: 'x', messages: user('hi'), response_format: { type: 'json_object' } }, 'response_format'],
    [{ model: 'x', messages: 'hi' }, 'messages'],
  ];
  for (const [body, param] of cases) {
    await assert.rejects(client.chat.completions.create(body), (e) => {
      assert.equal(e.status, 400);
      assert.equal(e.error.param, param);
      assert.equal(e.error.type, 'invalid_request_error');
      return true;
    });
  }
  // A prompt longer than the context: the message gives both lengths.
  const long = Array.from({ length: 600 }, (_, i) => 100 + i);
  await assert.rejects(client.completions.create({ model: 'x', prompt: long, max_tokens: 1 }), (e) => {
    assert.equal(e.status, 400);
    assert.match(e.message, /600 tokens/);
    assert.match(e.message, /512/);
    return true;
  });
  const r = await fetch(`${srv.base}/v1/nothing`, { headers: { authorization: 'Bearer sekrit' } });
  assert.equal(r.status, 404);
  assert.ok((await r.json()).error.message);
});
