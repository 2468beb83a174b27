// tests/server/load.mjs: bounded load test and throughput probe of `loam serve`, on loopback,
// with plain fetch() (no npm dependency).
//
// usage: node load.mjs --loam BIN --model DIR --adapter DIR [options]
//   --requests N       requests in the measured run (default 500)
//   --clients N        concurrent clients (default 32)
//   --warmup N         requests in the warm-up round before the first memory reading
//                      (default: 2 × clients)
//   --parallel N --ctx N --max-queue N --threads N     passed to `loam serve`
//   --tokens LO,HI     max_tokens drawn uniformly from [LO, HI] (default 8,64)
//   --rss-bound-mib X  allowed growth of the server's VmRSS from after the warm-up to after the
//                      run (default 16; see below)
//   --tiny-queue N     then a second server with --parallel 2 --max-queue 0 takes N requests
//                      from 8 clients: 429s are expected there and counted apart
//   --throughput LIST  instead of the load test: aggregate generated tokens/s with LIST
//                      (e.g. 1,8,32) concurrent streams, each request max_tokens --gen
//                      (default 64) with ignore_eos, for --seconds S (default 20) per point
//   --seed N           the request mix is drawn from this seed (default 1)
//
// The load test. Every request is drawn from a seeded mix: chat or completions, streamed or not,
// n 1 or 2, max_tokens in [LO, HI], the base model or one of two adapter names, temperature 0
// or sampled, some with stop strings, some with logprobs, some clients that disconnect in the
// middle of a stream (after 1 to 3 chunks) and some that give up on a non-streamed request
// after 20 to 400 ms (while it is queued or generating). Each answer is checked in full (status
// 200, the OpenAI shape, n choices with indices 0..n-1, a finish_reason per choice, usage sums,
// no stop string in the text, SSE framing: one finish chunk per choice and [DONE] last).
// Then the server must settle: /metrics shows 0 active sequences and an empty queue, no error
// counted as 5xx, loam_heap_bytes (the library's own allocations) back to its value after the
// warm-up, VmRSS within the bound, and it exits 0 on SIGTERM with no sanitizer report.
//
// Why the RSS bound is not zero: glibc keeps freed memory in its per-thread arenas (up to
// 8 × cores of them, and libmicrohttpd runs one thread per connection, so which arena serves a
// request varies) and only returns whole pages at the top of a heap; thread stacks of finished
// connection threads stay cached. The warm-up round at full concurrency creates those arenas
// and stacks; afterwards the resident size moves by at most a few MiB in either direction.
// A leak of even 1 KiB per request would show as exact growth in loam_heap_bytes, which is
// required to be unchanged; the RSS bound catches leaks outside the library's allocator
// (libmicrohttpd, cJSON) at the scale of 16 MiB / 500 requests ≈ 32 KiB per request.
//
// Prints one line per failed check and ends with "N passed, N failed".
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

// ---- options ---------------------------------------------------------------------------------
const opt = {
  loam: null, model: null, adapter: null, requests: 500, clients: 32, warmup: -1,
  parallel: 8, ctx: 512, 'max-queue': 64, threads: 0, tokens: '8,64', 'rss-bound-mib': 16,
  'tiny-queue': 0, throughput: null, gen: 64, seconds: 20, seed: 1,
};
{
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const k = a[i].replace(/^--/, '');
    if (!(k in opt) || i + 1 >= a.length) { console.error(`load.mjs: bad option ${a[i]}`); process.exit(2); }
    const v = a[++i];
    opt[k] = typeof opt[k] === 'number' ? Number(v) : v;
  }
  if (!opt.loam || !opt.model || !opt.adapter) { console.error('load.mjs: --loam, --model and --adapter are required'); process.exit(2); }
  if (opt.warmup < 0) opt.warmup = 2 * opt.clients;
}
const [tokLo, tokHi] = opt.tokens.split(',').map(Number);

let passed = 0, failed = 0;
function check(name, cond, detail = '') {
  if (cond) passed++;
  else { failed++; console.error(`FAIL ${name}${detail ? ': ' + detail : ''}`); }
  return cond;
}

// ---- the server ------------------------------------------------------------------------------
async function startServer(extra) {
  const args = ['serve', '-m', opt.model, '-a', `voice=${opt.adapter}`, '-a', `pirate=${opt.adapter}`,
                '--port', '0', '--name', 'base', ...extra];
  if (opt.threads > 0) args.push('-t', String(opt.threads));
  const proc = spawn(opt.loam, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d.toString(); });
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  const port = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server did not start: ' + stderr)), 120000);
    const poll = setInterval(() => {
      const m = stderr.match(/listening on http:\/\/[\d.]+:(\d+)/);
      if (m) { clearTimeout(t); clearInterval(poll); resolve(Number(m[1])); }
    }, 20);
    proc.on('exit', (code) => { clearTimeout(t); clearInterval(poll); reject(new Error(`server exited ${code}: ${stderr}`)); });
  });
  return { proc, base: `http://127.0.0.1:${port}`, exited, stderr: () => stderr };
}

function rssKiB(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
  return m ? Number(m[1]) : NaN;
}

async function metrics(base) {
  const text = await (await fetch(base + '/metrics')).text();
  const get = (name) => Number(text.match(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm'))?.[1]);
  return {
    active: get('loam_active_sequences'), queued: get('loam_queue_depth'),
    heap: get('loam_heap_bytes'), generated: get('loam_generated_tokens_total'),
    err5xx: Number(text.match(/^loam_request_errors_total\{class="5xx"\} (\d+)$/m)?.[1]),
    text,
  };
}

// Waits until no sequence is active or queued (disconnects are noticed within ~100 ms and
// cancelled at the next engine step) and the library heap has stopped moving (connection
// threads release their job and request buffers just after the engine is done with them):
// five equal readings 50 ms apart. Returns the last metrics.
async function settle(base, seconds = 20) {
  let m = null, same = 0, heap = NaN;
  for (let t = 0; t < seconds * 20 && same < 5; t++) {
    m = await metrics(base);
    same = m.active === 0 && m.queued === 0 && m.heap === heap ? same + 1 : 0;
    heap = m.heap;
    await sleep(50);
  }
  return m;
}

// ---- the request mix -------------------------------------------------------------------------
function rng(seed) { // mulberry32
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const WORDS = ('the of and to in that he shall unto for his a lord they be is him not them it with all ' +
  'thou thy was which my me said but ye have from this will there as are when so were were king ' +
  'post write morning garden river light bread stone water journey people city field voice').split(' ');
const STOPS = ['e', 'th', '.', '\n', ' the', 'a'];

function makeRequest(r, i) {
  const pick = (xs) => xs[Math.floor(r() * xs.length)];
  const words = (lo, hi) => Array.from({ length: lo + Math.floor(r() * (hi - lo + 1)) }, () => pick(WORDS)).join(' ');
  const chat = r() < 0.6;
  const stream = r() < 0.5;
  const body = {
    max_tokens: tokLo + Math.floor(r() * (tokHi - tokLo + 1)),
    n: r() < 0.25 ? 2 : 1,
  };
  const model = pick(['base', 'voice', 'pirate', null]);
  if (model) body.model = model;
  const temp = pick([0, 0.7, 1.0]);
  body.temperature = temp;
  if (temp > 0 && r() < 0.5) body.seed = Math.floor(r() * 1e6);
  if (r() < 0.25) body.stop = r() < 0.5 ? pick(STOPS) : [pick(STOPS), pick(STOPS)];
  if (r() < 0.1) { body.logprobs = true; body.top_logprobs = 2; }
  if (stream) { body.stream = true; if (r() < 0.5) body.stream_options = { include_usage: true }; }
  const long = r() < 0.15; // long prompts go through chunked prefill beside running streams
  if (chat) {
    const msgs = [];
    if (r() < 0.3) msgs.push({ role: 'system', content: words(3, 10) });
    msgs.push({ role: 'user', content: long ? words(30, 70) : words(2, 20) });
    body.messages = msgs;
  } else {
    body.prompt = long ? words(30, 70) : words(1, 15);
  }
  // clients that leave: mid-stream after 1..3 chunks, or a non-streamed request after a delay
  let leave = null;
  if (stream && r() < 0.1) {
    leave = { afterChunks: 1 + Math.floor(r() * 3) };
    body.max_tokens = 4 * tokHi; // long enough to be running when the client goes
    body.ignore_eos = true;
  }
  else if (!stream && r() < 0.05) leave = { afterMs: 20 + Math.floor(r() * 380) };
  return { i, route: chat ? '/v1/chat/completions' : '/v1/completions', chat, body, leave };
}

// Stop strings must not appear in the text (the engine cuts before a match).
function stopsOf(body) { return body.stop === undefined ? [] : [].concat(body.stop); }

function checkFull(q, json) {
  const b = q.body, errs = [];
  if (json?.object !== (q.chat ? 'chat.completion' : 'text_completion')) errs.push('object');
  const ch = json?.choices;
  if (!Array.isArray(ch) || ch.length !== b.n) { errs.push('choices'); return errs; }
  let total = 0;
  ch.forEach((c, k) => {
    if (c.index !== k) errs.push('index');
    if (!['stop', 'length'].includes(c.finish_reason)) errs.push(`finish_reason ${c.finish_reason}`);
    const text = q.chat ? c.message?.content : c.text;
    if (typeof text !== 'string') errs.push('text');
    else for (const s of stopsOf(b)) if (text.includes(s)) errs.push(`stop ${JSON.stringify(s)} in text`);
    if (q.chat && c.message?.role !== 'assistant') errs.push('role');
    if (b.logprobs) {
      const n = q.chat ? c.logprobs?.content?.length : c.logprobs?.tokens?.length;
      if (typeof n !== 'number') errs.push('logprobs');
      else total += n;
    }
  });
  const u = json.usage;
  if (!u || u.total_tokens !== u.prompt_tokens + u.completion_tokens || u.prompt_tokens <= 0 ||
      u.completion_tokens > b.n * b.max_tokens || u.completion_tokens < 0) errs.push(`usage ${JSON.stringify(u)}`);
  if (b.logprobs && u && total !== u.completion_tokens) errs.push(`logprobs entries ${total} != ${u.completion_tokens}`);
  return errs;
}

function checkStream(q, text) {
  const b = q.body, errs = [];
  const blocks = text.split('\n\n');
  if (blocks.pop() !== '') errs.push('unterminated event');
  let done = false, usage = null;
  const finishes = new Array(b.n).fill(0), texts = new Array(b.n).fill(''), ids = new Set();
  for (const block of blocks) {
    if (!block.startsWith('data: ')) { errs.push(`bad line ${JSON.stringify(block.slice(0, 40))}`); continue; }
    const data = block.slice(6);
    if (done) errs.push('event after [DONE]');
    if (data === '[DONE]') { done = true; continue; }
    let ev;
    try { ev = JSON.parse(data); } catch { errs.push('bad JSON'); continue; }
    if (ev.error) { errs.push(`error event ${JSON.stringify(ev.error).slice(0, 100)}`); continue; }
    ids.add(ev.id);
    if (ev.usage) { usage = ev.usage; continue; }
    for (const c of ev.choices ?? []) {
      if (!(c.index >= 0 && c.index < b.n)) { errs.push(`index ${c.index}`); continue; }
      if (finishes[c.index]) errs.push('delta after finish');
      texts[c.index] += (q.chat ? c.delta?.content : c.text) ?? '';
      if (c.finish_reason) {
        finishes[c.index]++;
        if (!['stop', 'length'].includes(c.finish_reason)) errs.push(`finish_reason ${c.finish_reason}`);
      }
    }
  }
  if (!done) errs.push('no [DONE]');
  if (ids.size !== 1) errs.push(`${ids.size} ids`);
  if (finishes.some((f) => f !== 1)) errs.push(`finish chunks ${finishes}`);
  for (const t of texts) for (const s of stopsOf(b)) if (t.includes(s)) errs.push(`stop ${JSON.stringify(s)} in text`);
  const wantUsage = b.stream_options?.include_usage === true;
  if (wantUsage !== (usage !== null)) errs.push('usage chunk');
  if (usage && (usage.completion_tokens > b.n * b.max_tokens || usage.total_tokens !== usage.prompt_tokens + usage.completion_tokens))
    errs.push(`usage ${JSON.stringify(usage)}`);
  return { errs, tokens: usage?.completion_tokens ?? 0 };
}

// Runs one request. Returns {kind: 'ok'|'left'|'busy'|'fail', detail, tokens}.
async function runOne(base, q, allowBusy) {
  const ac = new AbortController();
  let timer = null;
  if (q.leave?.afterMs) timer = setTimeout(() => ac.abort(), q.leave.afterMs);
  try {
    const res = await fetch(base + q.route, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(q.body), signal: ac.signal,
    });
    if (res.status === 429 && allowBusy) {
      const text = await res.text();
      const ok = res.headers.get('retry-after') !== null && JSON.parse(text)?.error?.code === 'queue_full';
      return ok ? { kind: 'busy' } : { kind: 'fail', detail: `429 without Retry-After/queue_full: ${text.slice(0, 200)}` };
    }
    if (res.status !== 200) return { kind: 'fail', detail: `status ${res.status}: ${(await res.text()).slice(0, 200)}` };
    if (q.body.stream && q.leave?.afterChunks) {
      const reader = res.body.getReader();
      for (let k = 0; k < q.leave.afterChunks; k++) {
        const { done } = await reader.read();
        if (done) break;
      }
      ac.abort();
      return { kind: 'left' };
    }
    const text = await res.text();
    if (q.body.stream) {
      const { errs, tokens } = checkStream(q, text);
      return errs.length ? { kind: 'fail', detail: errs.slice(0, 4).join('; ') } : { kind: 'ok', tokens };
    }
    let json = null;
    try { json = JSON.parse(text); } catch { return { kind: 'fail', detail: 'body is not JSON' }; }
    const errs = checkFull(q, json);
    return errs.length ? { kind: 'fail', detail: errs.slice(0, 4).join('; ') + ' ' + text.slice(0, 200) }
      : { kind: 'ok', tokens: json.usage.completion_tokens };
  } catch (e) {
    if (ac.signal.aborted && q.leave) return { kind: 'left' };
    return { kind: 'fail', detail: `${e.name}: ${e.message} ${e.cause ? String(e.cause) : ''}` };
  } finally {
    if (timer) clearTimeout(timer);
  }
}

// Runs the requests from `clients` concurrent clients; returns counts and failures.
async function runMix(base, reqs, clients, allowBusy) {
  let next = 0;
  const out = { ok: 0, left: 0, busy: 0, fail: 0, tokens: 0, failures: [] };
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < reqs.length) {
      const q = reqs[next++];
      const r = await runOne(base, q, allowBusy);
      out[r.kind]++;
      out.tokens += r.tokens ?? 0;
      if (r.kind === 'fail') out.failures.push(`#${q.i} ${q.route} ${JSON.stringify(q.body).slice(0, 160)}: ${r.detail}`);
    }
  }));
  out.seconds = (performance.now() - t0) / 1000;
  return out;
}

async function shutdown(s, name) {
  s.proc.kill('SIGTERM');
  const ex = await Promise.race([s.exited, sleep(30000).then(() => ({ code: 'timeout' }))]);
  check(`${name}: exit 0 on SIGTERM`, ex.code === 0, JSON.stringify(ex) + ' ' + s.stderr().slice(-2000));
  check(`${name}: no sanitizer report`, !/Sanitizer|runtime error/.test(s.stderr()), s.stderr().slice(0, 3000));
  if (ex.code === 'timeout') s.proc.kill('SIGKILL');
}

// ---- the load test ---------------------------------------------------------------------------
async function loadTest() {
  const s = await startServer(['--parallel', String(opt.parallel), '--ctx', String(opt.ctx),
                               '--max-queue', String(opt['max-queue'])]);
  try {
    const r = rng(opt.seed);
    const warm = Array.from({ length: opt.warmup }, (_, i) => makeRequest(r, i));
    const reqs = Array.from({ length: opt.requests }, (_, i) => makeRequest(r, i));
    const w = await runMix(s.base, warm, opt.clients, false);
    check('warm-up: no failures', w.fail === 0, w.failures.slice(0, 5).join('\n  '));
    const m0 = await settle(s.base);
    check('warm-up: settles', m0.active === 0 && m0.queued === 0, `active ${m0.active} queued ${m0.queued}`);
    const rss0 = rssKiB(s.proc.pid);

    const run = await runMix(s.base, reqs, opt.clients, false);
    const kinds = { chat: 0, completions: 0, stream: 0, n2: 0, stop: 0, logprobs: 0, leaveStream: 0, leaveWait: 0 };
    for (const q of reqs) {
      kinds[q.chat ? 'chat' : 'completions']++;
      if (q.body.stream) kinds.stream++;
      if (q.body.n === 2) kinds.n2++;
      if (q.body.stop !== undefined) kinds.stop++;
      if (q.body.logprobs) kinds.logprobs++;
      if (q.leave?.afterChunks) kinds.leaveStream++;
      if (q.leave?.afterMs) kinds.leaveWait++;
    }
    console.log(`run: ${opt.requests} requests from ${opt.clients} clients in ${run.seconds.toFixed(1)} s: ` +
                `${run.ok} answered, ${run.left} left early (by design), ${run.busy} busy, ${run.fail} failed; ` +
                `${run.tokens} tokens in checked answers (${(run.tokens / run.seconds).toFixed(1)} tok/s)`);
    console.log(`mix: ${JSON.stringify(kinds)}`);
    check('run: no failures', run.fail === 0, `${run.fail} failed:\n  ` + run.failures.slice(0, 10).join('\n  '));
    check('run: every request answered or left by design', run.ok + run.left === opt.requests && run.busy === 0,
          JSON.stringify({ ok: run.ok, left: run.left, busy: run.busy }));
    const m1 = await settle(s.base);
    check('after: 0 active sequences', m1.active === 0, `active ${m1.active}`);
    check('after: queue depth 0', m1.queued === 0, `queued ${m1.queued}`);
    check('after: no 5xx', m1.err5xx === 0, `5xx ${m1.err5xx}`);
    check('after: library heap back to its warm-up size', m1.heap === m0.heap, `warm-up ${m0.heap} B, after ${m1.heap} B`);
    const rss1 = rssKiB(s.proc.pid);
    const growMiB = (rss1 - rss0) / 1024;
    console.log(`memory: VmRSS ${(rss0 / 1024).toFixed(1)} MiB after warm-up, ${(rss1 / 1024).toFixed(1)} MiB after the run ` +
                `(${growMiB >= 0 ? '+' : ''}${growMiB.toFixed(1)} MiB, bound ${opt['rss-bound-mib']} MiB); ` +
                `loam_heap_bytes ${m0.heap} -> ${m1.heap}`);
    check('after: VmRSS growth within bound', growMiB <= opt['rss-bound-mib'], `${growMiB.toFixed(1)} MiB`);
    // the server still answers normally
    const h = await fetch(s.base + '/health');
    check('after: health', h.status === 200 && (await h.json()).status === 'ok');
  } catch (e) {
    check('load run', false, String(e.stack || e));
  }
  await shutdown(s, 'load server');

  if (opt['tiny-queue'] > 0) {
    // a deliberately tiny queue: 8 clients on 2 slots and no queue, so most get 429
    const t = await startServer(['--parallel', '2', '--ctx', String(opt.ctx), '--max-queue', '0']);
    try {
      const r = rng(opt.seed + 1);
      const reqs = Array.from({ length: opt['tiny-queue'] }, (_, i) => makeRequest(r, i));
      // n=2 here often gets one choice queued and the other refused: the 429 path that withdraws
      // the queued choice runs under load too
      const run = await runMix(t.base, reqs, 8, true);
      console.log(`tiny queue: ${reqs.length} requests from 8 clients on 2 slots, no queue: ${run.ok} answered, ` +
                  `${run.busy} got 429 (counted apart), ${run.left} left early, ${run.fail} failed`);
      check('tiny queue: no failures besides 429', run.fail === 0, run.failures.slice(0, 10).join('\n  '));
      check('tiny queue: 429s happened', run.busy > 0);
      check('tiny queue: some answered', run.ok > 0);
      const m = await settle(t.base);
      check('tiny queue: settles', m.active === 0 && m.queued === 0, `active ${m.active} queued ${m.queued}`);
      check('tiny queue: no 5xx', m.err5xx === 0, `5xx ${m.err5xx}`);
    } catch (e) {
      check('tiny queue run', false, String(e.stack || e));
    }
    await shutdown(t, 'tiny-queue server');
  }
}

// ---- throughput ------------------------------------------------------------------------------
async function throughput() {
  const points = opt.throughput.split(',').map(Number);
  const s = await startServer(['--parallel', String(opt.parallel), '--ctx', String(opt.ctx),
                               '--max-queue', String(opt['max-queue'])]);
  const r = rng(opt.seed);
  const body = () => ({
    model: ['base', 'voice', 'pirate'][Math.floor(r() * 3)], prompt: 'The ' + WORDS[Math.floor(r() * WORDS.length)],
    max_tokens: opt.gen, temperature: 0.8, ignore_eos: true, stream: true, stream_options: { include_usage: true },
  });
  const one = async () => {
    const t0 = performance.now();
    const res = await fetch(s.base + '/v1/completions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body()) });
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let text = '', ttft = null;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (ttft === null) ttft = performance.now() - t0;
      text += dec.decode(value, { stream: true });
    }
    const u = text.match(/"completion_tokens":(\d+)/);
    return { status: res.status, tokens: u ? Number(u[1]) : 0, ttft };
  };
  const rows = [];
  try {
    await Promise.all(Array.from({ length: Math.max(...points) }, one)); // warm-up
    for (const c of points) {
      let tokens = 0, n = 0, bad = 0, ttftSum = 0;
      const t0 = performance.now(), until = t0 + opt.seconds * 1000;
      await Promise.all(Array.from({ length: c }, async () => {
        while (performance.now() < until) {
          const x = await one();
          if (x.status !== 200 || x.tokens !== opt.gen) bad++;
          tokens += x.tokens; n++; ttftSum += x.ttft ?? 0;
        }
      }));
      const sec = (performance.now() - t0) / 1000;
      rows.push({ streams: c, requests: n, tokens, seconds: sec, tps: tokens / sec, ttft: ttftSum / n / 1000 });
      console.log(`${c} streams: ${n} requests, ${tokens} tokens in ${sec.toFixed(1)} s = ${(tokens / sec).toFixed(1)} tok/s aggregate, ` +
                  `${(tokens / sec / c).toFixed(1)} tok/s per stream, mean time to first byte ${(ttftSum / n).toFixed(0)} ms`);
      check(`${c} streams: every request 200 with ${opt.gen} tokens`, bad === 0, `${bad} bad`);
    }
  } catch (e) {
    check('throughput run', false, String(e.stack || e));
  }
  await shutdown(s, 'throughput server');
  console.log('| concurrent streams | requests | generated tokens | seconds | aggregate tok/s | per stream tok/s | mean first byte |');
  console.log('|---|---|---|---|---|---|---|');
  for (const x of rows)
    console.log(`| ${x.streams} | ${x.requests} | ${x.tokens} | ${x.seconds.toFixed(1)} | ${x.tps.toFixed(1)} | ${(x.tps / x.streams).toFixed(1)} | ${(x.ttft * 1000).toFixed(0)} ms |`);
}

if (opt.throughput) await throughput();
else await loadTest();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
