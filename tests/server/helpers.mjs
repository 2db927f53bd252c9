// Shared by the server tests: the model under test, starting and stopping `fathom serve`,
// raw HTTP for inputs the official client cannot send.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));

export async function loadOpenAI() {
  try {
    return (await import('openai')).default;
  } catch (e) {
    console.error(
      `The server tests need the 'openai' npm package in ${here}/node_modules.\n` +
        `Run ./setup.sh (or: cd tests/server && npm install) first.`);
    process.exit(1);
  }
}

export const binary = () => {
  const b = process.env.FATHOM_BINARY;
  if (!b || !fs.existsSync(b)) throw new Error(`FATHOM_BINARY (${b}) is not the fathom binary`);
  return b;
};

// The tiny random DeepSeek-V3 with the full 129,280-token vocabulary and the real tokenizer.
// Built once per build directory; a variant with a template whose generation prompt opens
// <think> (as DeepSeek-R1's does) shares its weights.
export function modelDir() {
  const dir = process.env.FATHOM_SERVER_MODEL;
  if (!dir) throw new Error('FATHOM_SERVER_MODEL is not set');
  return dir;
}

export function makeModel() {
  const dir = modelDir();
  // The stamp holds the config it was built from, so a changed config rebuilds the model.
  const config = fs.readFileSync(path.join(here, 'tiny-v3-full.config.json'), 'utf8');
  const stamp = path.join(dir, '.complete');
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === config) return dir;
  fs.rmSync(dir, { recursive: true, force: true });
  execFileSync(binary(), ['init-random', '--config', path.join(here, 'tiny-v3-full.config.json'), '--out', dir,
    '--seed', '7'], { stdio: 'inherit' });
  const tokDir = path.join(here, '..', 'data', 'tokenizers', 'deepseek-v3');
  fs.copyFileSync(path.join(tokDir, 'tokenizer.json'), path.join(dir, 'tokenizer.json'));
  fs.copyFileSync(path.join(tokDir, 'tokenizer_config.json'), path.join(dir, 'tokenizer_config.json'));

  const r1 = dir + '-r1';
  fs.rmSync(r1, { recursive: true, force: true });
  fs.mkdirSync(r1);
  for (const f of fs.readdirSync(dir)) {
    if (f !== 'tokenizer_config.json' && !f.startsWith('.')) fs.symlinkSync(path.join(dir, f), path.join(r1, f));
  }
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
  cfg.chat_template = cfg.chat_template.replace(
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜>'}}{% endif %}",
    "{% if add_generation_prompt and not ns.is_tool %}{{'<｜Assistant｜><think>\\n'}}{% endif %}");
  if (!cfg.chat_template.includes('<think>')) throw new Error('could not make the R1-style template');
  fs.writeFileSync(path.join(r1, 'tokenizer_config.json'), JSON.stringify(cfg));
  fs.writeFileSync(stamp, config);
  return dir;
}

// Starts `fathom serve` on a free port (`env` adds to its environment); resolves once it listens.
// `dir: null` leaves --model out, so the server runs the shipped default model.
export async function startServer(extra = [], { dir = modelDir(), timeoutMs = 60000, env = {} } = {}) {
  const args = ['serve', ...(dir === null ? [] : ['--model', dir]), '--host', '127.0.0.1', '--port', '0',
    '--threads', '2', ...extra];
  const proc = spawn(binary(), args, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${log}`)), timeoutMs);
    proc.stderr.on('data', (d) => {
      log += d.toString();
      const m = log.match(/listening on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${log}`));
    });
  });
  const base = `http://127.0.0.1:${port}`;
  return {
    proc,
    port,
    base,
    log: () => log,
    alive: () => proc.exitCode === null && proc.signalCode === null,
    rssKiB: () => {
      const s = fs.readFileSync(`/proc/${proc.pid}/status`, 'utf8');
      return Number(s.match(/VmRSS:\s+(\d+)/)[1]);
    },
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      const done = new Promise((r) => proc.once('exit', (code) => r(code)));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const code = await done;
      clearTimeout(t);
      return code;
    },
  };
}

// One raw HTTP exchange over a fresh socket: writes `chunks` (strings/Buffers, with an
// optional delay between them) and resolves with everything the server sent back.
export function rawRequest(port, chunks, { delayMs = 0, timeoutMs = 20000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    let data = '';
    const timer = setTimeout(() => {
      sock.destroy();
      resolve(data);
    }, timeoutMs);
    sock.on('data', (d) => (data += d.toString()));
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
    sock.on('connect', async () => {
      for (const c of chunks) {
        if (sock.destroyed) break;
        sock.write(c);
        if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
      }
    });
    sock.on('timeout', reject);
  });
}

export function httpPost(port, pathName, body, headers = {}) {
  const b = typeof body === 'string' ? body : JSON.stringify(body);
  return fetch(`http://127.0.0.1:${port}${pathName}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: b,
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function metric(text, name) {
  const m = text.match(new RegExp(`^${name} ([0-9.e+-]+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}
