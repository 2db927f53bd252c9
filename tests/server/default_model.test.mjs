// `fathom serve` with no --model serves the shipped nano-R1 (models/nano-r1): an unmodified
// OpenAI client gets its reasoning in reasoning_content and the answer in content.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { loadOpenAI, startServer } from './helpers.mjs';

const OpenAI = await loadOpenAI();
let srv, client;

before(async () => {
  srv = await startServer([], { dir: null });
  client = new OpenAI({ apiKey: 'none', baseURL: `${srv.base}/v1`, maxRetries: 0, timeout: 60000 });
});

after(async () => {
  const code = await srv?.stop();
  assert.equal(code, 0, `server exit code ${code}:\n${srv?.log()}`);
});

test('the default model is nano-R1', async () => {
  const models = await client.models.list();
  assert.equal(models.data.length, 1);
  assert.equal(models.data[0].id, 'nano-r1');
});

test('it reasons, then answers', async () => {
  // 2*(3+4)-5 = 2*7-5 = 14-5 = 9.
  const r = await client.chat.completions.create({
    model: 'nano-r1', temperature: 0, max_tokens: 200,
    messages: [{ role: 'user', content: 'Compute: 2*(3+4)-5' }],
  });
  const m = r.choices[0].message;
  assert.equal(r.choices[0].finish_reason, 'stop');
  assert.match(m.reasoning_content, /3\+4=7/);
  assert.equal(m.content.trim(), 'Answer: 9');
});
