// Tokenizers fathom writes (`fathom tokenizer-train`, and the shipped nano-R1's) load in
// Hugging Face's tokenizers.js and give the same ids as fathom on the same text, and decode
// back to it. The real DeepSeek-V3 tokenizer is the control: fathom matches HF's Rust
// tokenizers on it (tests/tokenizer), so the two must agree there too. (This lives beside
// the server tests because they share node and the npm packages setup.sh installs.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { binary } from './helpers.mjs';

let Tokenizer;
try {
  ({ Tokenizer } = await import('@huggingface/tokenizers'));
} catch (e) {
  console.error('This test needs the @huggingface/tokenizers npm package: run ./setup.sh first.');
  process.exit(1);
}

const src = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
let tmp;

before(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'fathom-tokjs-'));
});
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// Text that exercises the pre-tokenizer: letters, digits (split in threes), punctuation,
// whitespace runs, non-ASCII scripts, emoji, and the chat template's special tokens.
function texts(corpusLines) {
  const extra = [
    'Hello, world! 1234567 apples; 3.14159 and -42.',
    '  two spaces,\ttab, newline\n\nand\r\nCRLF   ',
    'ünïcödé Ελληνικά русский 中文字符 日本語のテキスト 한국어 😀👍🏽 مرحبا',
    "it's we'll they'RE I'd",
    '<｜begin▁of▁sentence｜><｜User｜>Compute: 7+8*(9-3)<｜Assistant｜><think>\n9-3=6; 7+8*6\n</think>\n\nAnswer: 55<｜end▁of▁sentence｜>',
    '',
  ];
  return [...corpusLines, ...extra];
}

function checkAgrees(dir, lines, what) {
  const tok = new Tokenizer(JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8')),
    JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')));
  const input = lines.map((t) => JSON.stringify(t)).join('\n') + '\n';
  const ours = execFileSync(binary(), ['tokenize', '--model', dir], { input, maxBuffer: 1 << 26 })
    .toString().trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(ours.length, lines.length, what);
  let multi = 0;
  lines.forEach((t, i) => {
    const ids = tok.encode(t, { add_special_tokens: false }).ids;
    assert.deepEqual(ours[i], ids, `${what}: ${JSON.stringify(t)}`);
    if (ids.length) assert.equal(tok.decode(ids), t, `${what}: decode of ${JSON.stringify(t)}`);  // tokenizers.js refuses []
    multi += ids.length < Buffer.byteLength(t);
  });
  // The comparison means something only if merges were applied.
  assert.ok(multi > lines.length / 2, `${what}: few texts used merges (${multi} of ${lines.length})`);
}

// Lines of fathom's own docs: prose, code and tables.
const docLines = () => ['README.md', 'docs/ARCHITECTURE.md', 'docs/nano-r1-task.md']
  .flatMap((f) => fs.readFileSync(path.join(src, f), 'utf8').split('\n'))
  .filter((l) => l.trim().length > 0);

test('a tokenizer trained by fathom tokenizer-train', () => {
  const corpus = path.join(tmp, 'corpus.txt');
  const lines = docLines();
  fs.writeFileSync(corpus, lines.join('\n') + '\n');
  const out = path.join(tmp, 'trained');
  execFileSync(binary(), ['tokenizer-train', '--data', corpus, '--vocab', '1200', '--out', out], { stdio: 'pipe' });
  checkAgrees(out, texts(lines.slice(0, 400)), 'trained');
});

test('the shipped nano-R1 tokenizer', () => {
  const problems = execFileSync(binary(), ['task', '--kind', 'text', '--n', '200', '--seed', '5'])
    .toString().trim().split('\n').map((l) => JSON.parse(l).text);
  checkAgrees(path.join(src, 'models', 'nano-r1'), texts(problems), 'nano-r1');
});

test('control: the DeepSeek-V3 tokenizer', () => {
  checkAgrees(path.join(src, 'tests', 'data', 'tokenizers', 'deepseek-v3'), texts(docLines().slice(0, 300)), 'deepseek-v3');
});
