#!/usr/bin/env node
// Load benchmark for a running `fathom serve` (or any OpenAI-compatible server), driven by
// the official `openai` client: at each concurrency level, that many clients stream
// completions back to back; it reports aggregate output tokens/s and time-to-first-token
// percentiles.
//
//   node scripts/load_bench.mjs --url http://127.0.0.1:8080/v1 [--concurrency 1,8,32]
//        [--requests N] [--max-tokens 64] [--prompt-words 64] [--chat] [--api-key KEY] [--json]
//
// The `openai` package is taken from tests/server/node_modules (setup.sh installs it).
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));

async function loadOpenAI() {
  for (const from of [path.join(here, '..', 'tests', 'server', 'package.json'), import.meta.url]) {
    try {
      const p = createRequire(from).resolve('openai');
      return (await import(p)).default;
    } catch {}
  }
  console.error("load_bench: the 'openai' npm package is missing; run ./setup.sh (or npm install in tests/server)");
  process.exit(1);
}

const { values: opt } = parseArgs({
  options: {
    url: { type: 'string', default: 'http://127.0.0.1:8080/v1' },
    'api-key': { type: 'string', default: process.env.OPENAI_API_KEY ?? 'none' },
    model: { type: 'string' },
    concurrency: { type: 'string', default: '1,8,32' },
    requests: { type: 'string' },           // per level; default 2 x concurrency (at least 8)
    'max-tokens': { type: 'string', default: '64' },
    'prompt-words': { type: 'string', default: '64' },
    chat: { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  },
});
if (opt.help) {
  console.log('usage: node scripts/load_bench.mjs --url URL [--concurrency 1,8,32] [--requests N] ' +
    '[--max-tokens N] [--prompt-words N] [--chat] [--api-key KEY] [--model ID] [--json]');
  process.exit(0);
}

const OpenAI = await loadOpenAI();
const client = new OpenAI({ apiKey: opt['api-key'], baseURL: opt.url, maxRetries: 0, timeout: 600000 });
const model = opt.model ?? (await client.models.list()).data[0]?.id ?? 'default';
const maxTokens = Number(opt['max-tokens']);
const words = ['river', 'stone', 'quiet', 'market', 'signal', 'orbit', 'lantern', 'copper', 'meadow', 'engine'];

// Each request gets its own prompt (a distinct first line), so the prefix cache does not
// flatter the numbers.
function prompt(i) {
  const body = Array.from({ length: Number(opt['prompt-words']) }, (_, k) => words[(i * 7 + k * 3) % words.length]);
  return `Request ${i}. ${body.join(' ')}`;
}

async function one(i) {
  const t0 = performance.now();
  const common = { model, max_tokens: maxTokens, temperature: 0, stream: true, stream_options: { include_usage: true } };
  const stream = opt.chat
    ? await client.chat.completions.create({ ...common, messages: [{ role: 'user', content: prompt(i) }] })
    : await client.completions.create({ ...common, prompt: prompt(i) });
  let ttft = null, tokens = 0;
  for await (const ch of stream) {
    const c = ch.choices?.[0];
    const text = opt.chat ? (c?.delta?.content ?? '') + (c?.delta?.reasoning_content ?? '') : c?.text ?? '';
    if (ttft === null && text.length > 0) ttft = performance.now() - t0;
    if (ch.usage) tokens = ch.usage.completion_tokens;
  }
  return { ttft: ttft ?? performance.now() - t0, tokens, total: performance.now() - t0 };
}

function pct(sorted, p) {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}

async function level(conc, nreq, offset) {
  let next = 0;
  const results = [];
  const t0 = performance.now();
  await Promise.all(Array.from({ length: conc }, async () => {
    while (next < nreq) {
      const i = next++;
      results.push(await one(offset + i));
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  const ttfts = results.map((r) => r.ttft).sort((a, b) => a - b);
  const tokens = results.reduce((s, r) => s + r.tokens, 0);
  // Per-request decode speed: tokens after the first over the time after the first.
  const perReq = results.filter((r) => r.tokens > 1).map((r) => (r.tokens - 1) / ((r.total - r.ttft) / 1000));
  return {
    concurrency: conc,
    requests: results.length,
    output_tokens: tokens,
    wall_s: wall,
    output_tok_s: tokens / wall,
    ttft_p50_ms: pct(ttfts, 50),
    ttft_p99_ms: pct(ttfts, 99),
    per_request_tok_s: perReq.length ? perReq.reduce((a, b) => a + b, 0) / perReq.length : NaN,
  };
}

const levels = opt.concurrency.split(',').map(Number).filter((c) => c > 0);
await one(1e6);  // warm-up
const rows = [];
let offset = 0;
for (const c of levels) {
  const n = opt.requests ? Number(opt.requests) : Math.max(8, 2 * c);
  rows.push(await level(c, n, offset));
  offset += n;
}
if (opt.json) {
  console.log(JSON.stringify({ url: opt.url, model, max_tokens: maxTokens, prompt_words: Number(opt['prompt-words']),
    endpoint: opt.chat ? 'chat' : 'completions', levels: rows }, null, 2));
} else {
  console.log(`model ${model} at ${opt.url}: ${opt.chat ? 'chat' : 'completions'}, ` +
    `max_tokens ${maxTokens}, prompt ~${opt['prompt-words']} words, streaming`);
  console.log('concurrency  requests  out tokens  wall s   out tok/s  TTFT p50 ms  TTFT p99 ms  per-req tok/s');
  for (const r of rows) {
    console.log(`${String(r.concurrency).padStart(11)}  ${String(r.requests).padStart(8)}  ` +
      `${String(r.output_tokens).padStart(10)}  ${r.wall_s.toFixed(2).padStart(6)}  ${r.output_tok_s.toFixed(1).padStart(10)}  ` +
      `${r.ttft_p50_ms.toFixed(1).padStart(11)}  ${r.ttft_p99_ms.toFixed(1).padStart(11)}  ` +
      `${r.per_request_tok_s.toFixed(1).padStart(13)}`);
  }
}
