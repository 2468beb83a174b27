// tests/server/test_server.mjs: end-to-end tests of `loam serve` over real HTTP on loopback,
// with plain fetch() and with the official `openai` npm client (a client no one here wrote).
//
// usage: node test_server.mjs LOAM_BINARY MODEL_DIR ADAPTER_DIR OPENAI_PACKAGE_DIR NAN_MODEL_DIR
// (NAN_MODEL_DIR: `tiny-model DIR --nan`, whose every logit is NaN: generation always fails)
// Prints one line per failed check and ends with "N passed, N failed".
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const [loam, modelDir0, adapterDir, openaiDir, nanModelDir] = process.argv.slice(2);
let modelDir = modelDir0;
const OpenAI = (await import(pathToFileURL(path.join(openaiDir, 'index.mjs')).href)).default;

let passed = 0, failed = 0;
function check(name, cond, detail = '') {
  if (cond) passed++;
  else { failed++; console.error(`FAIL ${name}${detail ? ': ' + detail : ''}`); }
}

// Starts a server; resolves to {proc, base, port} once it prints its listening line.
async function startServer(extra = []) {
  const args = ['serve', '-m', modelDir, '-a', `voice=${adapterDir}`, '-a', `voice2=${adapterDir}`,
                '--port', '0', '--name', 'base', ...extra];
  const proc = spawn(loam, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  const port = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('server did not start: ' + stderr)), 30000);
    proc.stderr.on('data', (d) => {
      stderr += d.toString();
      const m = stderr.match(/listening on http:\/\/[\d.]+:(\d+)/);
      if (m) { clearTimeout(t); resolve(Number(m[1])); }
    });
    proc.on('exit', (code) => { clearTimeout(t); reject(new Error(`server exited ${code}: ${stderr}`)); });
  });
  proc.exitCode_ = null;
  const exited = new Promise((resolve) => proc.on('exit', (code, sig) => resolve({ code, sig })));
  return { proc, port, base: `http://127.0.0.1:${port}`, exited, stderr: () => stderr };
}

async function post(base, route, body, headers = {}) {
  const r = await fetch(base + route, {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await r.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: r.status, headers: r.headers, text, json };
}

function isOpenAIError(res, status, param) {
  return res.status === status && res.json && res.json.error &&
    typeof res.json.error.message === 'string' && typeof res.json.error.type === 'string' &&
    (param === undefined || res.json.error.param === param);
}

// Reads an SSE response: returns {events: [parsed JSON], done: bool}.
async function readSSE(res) {
  const text = await res.text();
  const events = [];
  let done = false;
  for (const block of text.split('\n\n')) {
    const line = block.trim();
    if (!line.startsWith('data: ')) continue;
    const data = line.slice(6);
    if (data === '[DONE]') { done = true; continue; }
    events.push(JSON.parse(data));
  }
  return { events, done };
}

const chatBody = (extra = {}) => ({
  model: 'voice', messages: [{ role: 'user', content: 'Write a post.' }],
  max_tokens: 24, temperature: 0, ...extra,
});

// ---- main server: key required, small context --------------------------------------------
const s = await startServer(['--api-key', 'sekrit', '--parallel', '4', '--ctx', '256']);
const auth = { Authorization: 'Bearer sekrit' };
try {
  // health, models, auth
  let r = await fetch(s.base + '/health');
  check('health', r.status === 200 && (await r.json()).status === 'ok');
  r = await fetch(s.base + '/v1/models');
  check('models needs key', r.status === 401);
  r = await fetch(s.base + '/v1/models', { headers: { Authorization: 'Bearer wrong' } });
  check('models wrong key', r.status === 401);
  r = await fetch(s.base + '/v1/models', { headers: auth });
  const models = await r.json();
  const ids = models.data.map((m) => m.id).sort();
  check('models lists base and adapters', r.status === 200 && JSON.stringify(ids) === '["base","voice","voice2"]', JSON.stringify(ids));
  r = await fetch(s.base + '/v1/nothing', { headers: auth });
  check('unknown route 404', r.status === 404 && (await r.json()).error !== undefined);

  // non-streamed chat
  const a = await post(s.base, '/v1/chat/completions', chatBody(), auth);
  check('chat 200', a.status === 200, a.text.slice(0, 300));
  const msg = a.json?.choices?.[0]?.message;
  check('chat shape', a.json?.object === 'chat.completion' && msg?.role === 'assistant' &&
        typeof msg?.content === 'string' && ['stop', 'length'].includes(a.json.choices[0].finish_reason), a.text.slice(0, 300));
  check('chat usage', a.json?.usage?.prompt_tokens > 0 && a.json.usage.completion_tokens > 0 &&
        a.json.usage.total_tokens === a.json.usage.prompt_tokens + a.json.usage.completion_tokens);
  check('chat model echoed', a.json?.model === 'voice');

  // greedy is deterministic; the base model differs from the adapter
  const a2 = await post(s.base, '/v1/chat/completions', chatBody(), auth);
  check('greedy repeatable', a2.json?.choices?.[0]?.message?.content === msg?.content);
  const b = await post(s.base, '/v1/chat/completions', chatBody({ model: 'base' }), auth);
  check('base model answers', b.status === 200);
  const b2 = await post(s.base, '/v1/chat/completions', chatBody({ model: undefined }), auth);
  check('no model = base', b2.json?.choices?.[0]?.message?.content === b.json?.choices?.[0]?.message?.content);

  // streamed chat equals non-streamed text
  let sr = await fetch(s.base + '/v1/chat/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...auth },
    body: JSON.stringify(chatBody({ stream: true, stream_options: { include_usage: true } })),
  });
  check('stream content-type', sr.headers.get('content-type')?.startsWith('text/event-stream'));
  let sse = await readSSE(sr);
  const streamed = sse.events.filter((e) => e.choices?.length).map((e) => e.choices[0].delta?.content ?? '').join('');
  check('stream ends with [DONE]', sse.done);
  check('stream text = non-stream text', streamed === msg?.content, JSON.stringify([streamed, msg?.content]));
  check('stream first delta has role', sse.events[0]?.choices?.[0]?.delta?.role === 'assistant');
  const fin = sse.events.filter((e) => e.choices?.[0]?.finish_reason);
  check('stream finish chunk', fin.length === 1);
  const usageChunk = sse.events.find((e) => e.usage);
  check('stream usage chunk', usageChunk && usageChunk.choices.length === 0 && usageChunk.usage.completion_tokens === a.json?.usage?.completion_tokens);

  // completions
  const c = await post(s.base, '/v1/completions', { model: 'voice', prompt: 'The', max_tokens: 10, temperature: 0 }, auth);
  check('completions 200', c.status === 200 && c.json?.object === 'text_completion' && typeof c.json?.choices?.[0]?.text === 'string', c.text.slice(0, 300));
  sr = await fetch(s.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...auth },
    body: JSON.stringify({ model: 'voice', prompt: 'The', max_tokens: 10, temperature: 0, stream: true }),
  });
  sse = await readSSE(sr);
  check('completions stream', sse.done && sse.events.map((e) => e.choices?.[0]?.text ?? '').join('') === c.json?.choices?.[0]?.text);

  // n > 1 with a seed: distinct choices, reproducible
  const nb = chatBody({ n: 3, temperature: 1.0, seed: 7, max_tokens: 16 });
  const n1 = await post(s.base, '/v1/chat/completions', nb, auth);
  check('n=3 choices', n1.json?.choices?.length === 3 && n1.json.choices.map((x) => x.index).join() === '0,1,2');
  const n2 = await post(s.base, '/v1/chat/completions', nb, auth);
  check('same seed same texts', JSON.stringify(n1.json?.choices?.map((x) => x.message.content)) === JSON.stringify(n2.json?.choices?.map((x) => x.message.content)));

  // same seed alone vs in a batch with others
  const seeded = chatBody({ temperature: 0.9, seed: 1234, max_tokens: 20 });
  const alone = await post(s.base, '/v1/chat/completions', seeded, auth);
  const crowd = await Promise.all([
    post(s.base, '/v1/chat/completions', seeded, auth),
    post(s.base, '/v1/chat/completions', chatBody({ model: 'base', temperature: 1, max_tokens: 20 }), auth),
    post(s.base, '/v1/completions', { model: 'voice2', prompt: 'Hello there', max_tokens: 20, temperature: 1 }, auth),
    post(s.base, '/v1/chat/completions', chatBody({ model: 'voice2', temperature: 1, max_tokens: 20 }), auth),
  ]);
  check('seed: batch = alone', crowd[0].json?.choices?.[0]?.message?.content === alone.json?.choices?.[0]?.message?.content,
        JSON.stringify([crowd[0].json?.choices?.[0]?.message?.content, alone.json?.choices?.[0]?.message?.content]));
  check('mixed adapters in one batch', crowd.every((x) => x.status === 200));

  // XTC (mlx-lm's xtc_probability / xtc_threshold): seeded requests repeat, alone or together
  const xb = chatBody({ temperature: 0.9, seed: 99, max_tokens: 20, xtc_probability: 1.0, xtc_threshold: 0.1 });
  const [x1, x2] = await Promise.all([post(s.base, '/v1/chat/completions', xb, auth), post(s.base, '/v1/chat/completions', xb, auth)]);
  check('xtc 200', x1.status === 200 && x2.status === 200, `${x1.status} ${x2.status}`);
  check('xtc: same seed same text', x1.json?.choices?.[0]?.message?.content === x2.json?.choices?.[0]?.message?.content);
  check('xtc threshold out of range 400', isOpenAIError(await post(s.base, '/v1/chat/completions', chatBody({ xtc_threshold: 0.75 }), auth), 400, 'xtc_threshold'));

  // stop strings: cut the greedy text at a substring of it
  const full = msg?.content ?? '';
  if (full.length >= 6) {
    const stop = full.slice(3, 6);
    const st = await post(s.base, '/v1/chat/completions', chatBody({ stop: [stop] }), auth);
    const got = st.json?.choices?.[0]?.message?.content;
    check('stop string cuts', got === full.slice(0, full.indexOf(stop)) && st.json.choices[0].finish_reason === 'stop', JSON.stringify([got, stop, full]));
    sr = await fetch(s.base + '/v1/chat/completions', {
      method: 'POST', headers: { 'Content-Type': 'application/json', ...auth },
      body: JSON.stringify(chatBody({ stop: stop, stream: true })),
    });
    sse = await readSSE(sr);
    const sgot = sse.events.map((e) => e.choices?.[0]?.delta?.content ?? '').join('');
    check('stop string cuts (stream)', sgot === got, JSON.stringify([sgot, got]));
  } else {
    check('greedy text long enough for the stop test', false, JSON.stringify(full));
  }

  // logprobs
  const lp = await post(s.base, '/v1/chat/completions', chatBody({ logprobs: true, top_logprobs: 3, max_tokens: 5 }), auth);
  const lpc = lp.json?.choices?.[0]?.logprobs?.content;
  check('logprobs', Array.isArray(lpc) && lpc.length === lp.json.usage.completion_tokens && lpc.every((t) => t.logprob <= 0 && t.top_logprobs.length === 3 && t.top_logprobs[0].logprob >= t.top_logprobs[2].logprob), lp.text.slice(0, 300));

  // errors, each OpenAI-shaped with the right status
  check('malformed JSON 400', isOpenAIError(await post(s.base, '/v1/chat/completions', '{"messages": [', auth), 400));
  check('wrong type 400', isOpenAIError(await post(s.base, '/v1/chat/completions', chatBody({ temperature: 'hot' }), auth), 400, 'temperature'));
  check('out of range 400', isOpenAIError(await post(s.base, '/v1/chat/completions', chatBody({ top_p: 7 }), auth), 400, 'top_p'));
  check('n out of range 400', isOpenAIError(await post(s.base, '/v1/chat/completions', chatBody({ n: 0 }), auth), 400, 'n'));
  check('unknown model 400', isOpenAIError(await post(s.base, '/v1/chat/completions', chatBody({ model: 'nope' }), auth), 400, 'model'));
  check('missing messages 400', isOpenAIError(await post(s.base, '/v1/chat/completions', { model: 'voice' }, auth), 400, 'messages'));
  const long = 'word '.repeat(2000);
  const tl = await post(s.base, '/v1/completions', { prompt: long, max_tokens: 5 }, auth);
  check('prompt too long 400', isOpenAIError(tl, 400) && tl.json.error.code === 'context_length_exceeded', tl.text.slice(0, 200));
  check('missing key 401', isOpenAIError(await post(s.base, '/v1/chat/completions', chatBody()), 401));
  const big = JSON.stringify(chatBody({ messages: [{ role: 'user', content: 'x'.repeat(5 << 20) }] }));
  check('body too large 413', isOpenAIError(await post(s.base, '/v1/chat/completions', big, auth), 413));

  // client disconnect mid-stream frees the slot
  const ac = new AbortController();
  const dr = await fetch(s.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json', ...auth }, signal: ac.signal,
    body: JSON.stringify({ model: 'voice', prompt: 'The', max_tokens: 200, temperature: 1, stream: true }),
  });
  const reader = dr.body.getReader();
  await reader.read();
  ac.abort();
  let active = -1;
  for (let i = 0; i < 100; i++) {
    await sleep(50);
    const m = await (await fetch(s.base + '/metrics')).text();
    active = Number(m.match(/^loam_active_sequences (\d+)/m)?.[1]);
    if (active === 0) break;
  }
  check('disconnect frees the slot', active === 0, `active=${active}`);
  const metrics = await (await fetch(s.base + '/metrics')).text();
  check('metrics', /loam_requests_total\{route="chat_completions"\} \d+/.test(metrics) && /loam_generated_tokens_total \d+/.test(metrics) && /loam_time_to_first_token_seconds_count \d+/.test(metrics));

  // the official openai client
  const client = new OpenAI({ apiKey: 'sekrit', baseURL: s.base + '/v1', maxRetries: 0 });
  const oc = await client.chat.completions.create({ model: 'voice', messages: [{ role: 'user', content: 'Write a post.' }], max_tokens: 24, temperature: 0 });
  check('openai: chat', oc.choices[0].message.content === msg?.content, JSON.stringify(oc.choices[0]));
  const ocs = await client.chat.completions.create({ model: 'voice', messages: [{ role: 'user', content: 'Write a post.' }], max_tokens: 24, temperature: 0, stream: true });
  let acc = '';
  for await (const chunk of ocs) acc += chunk.choices[0]?.delta?.content ?? '';
  check('openai: chat stream', acc === msg?.content, JSON.stringify([acc, msg?.content]));
  const ocp = await client.completions.create({ model: 'voice', prompt: 'The', max_tokens: 10, temperature: 0 });
  check('openai: completions', ocp.choices[0].text === c.json?.choices?.[0]?.text);
  const ocps = await client.completions.create({ model: 'voice', prompt: 'The', max_tokens: 10, temperature: 0, stream: true });
  acc = '';
  for await (const chunk of ocps) acc += chunk.choices[0]?.text ?? '';
  check('openai: completions stream', acc === c.json?.choices?.[0]?.text);
  const ml = await client.models.list();
  check('openai: models', ml.data.length === 3);
  try {
    await client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    check('openai: error raised', false);
  } catch (e) {
    check('openai: error raised', e.status === 400 && /not served/.test(e.message), String(e));
  }

  // graceful shutdown with a request in flight: it finishes, the server exits 0
  const inflight = post(s.base, '/v1/completions', { model: 'voice', prompt: 'The', max_tokens: 40, temperature: 1, ignore_eos: true }, auth);
  await sleep(100);
  s.proc.kill('SIGTERM');
  const fin2 = await inflight;
  const ex = await s.exited;
  check('shutdown finishes in-flight', fin2.status === 200, fin2.text.slice(0, 200));
  check('shutdown exit 0', ex.code === 0, JSON.stringify(ex));
} catch (e) {
  check('main server run', false, String(e.stack || e));
  s.proc.kill('SIGKILL');
}

// ---- queue full: one slot, no queue -> 429 with Retry-After --------------------------------
const q = await startServer(['--parallel', '1', '--max-queue', '0']);
try {
  // the first request holds the only slot until this test lets go of it: a stream that would
  // run for thousands of tokens, read a little, then dropped (fast or slow machine alike)
  const ac = new AbortController();
  const first = await fetch(q.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, signal: ac.signal,
    body: JSON.stringify({ prompt: 'The', max_tokens: 3000, temperature: 1, ignore_eos: true, stream: true }),
  });
  const fr = first.body.getReader();
  await fr.read();
  const qm = async () => Number((await (await fetch(q.base + '/metrics')).text()).match(/^loam_active_sequences (\d+)$/m)?.[1]);
  const promptTokens = async () => Number((await (await fetch(q.base + '/metrics')).text()).match(/^loam_prompt_tokens_total (\d+)$/m)?.[1]);
  check('first request running', first.status === 200 && (await qm()) === 1);
  const pt0 = await promptTokens();
  const second = await post(q.base, '/v1/completions', { prompt: 'The', max_tokens: 5 });
  check('queue full 429', isOpenAIError(second, 429) && second.headers.get('retry-after') !== null, second.text.slice(0, 200));
  check('a refused request adds no prompt tokens', (await promptTokens()) === pt0);
  const more = await fr.read();
  check('first request unaffected', !more.done && !new TextDecoder().decode(more.value).includes('"error"'));
  ac.abort();
  let active = -1;
  for (let i = 0; i < 200 && active !== 0; i++) { await sleep(20); active = await qm(); }
  const third = await post(q.base, '/v1/completions', { prompt: 'The', max_tokens: 5 });
  check('slot free again', active === 0 && third.status === 200, `active ${active} status ${third.status}`);
} catch (e) {
  check('queue server run', false, String(e.stack || e) + (e.cause ? ' cause: ' + String(e.cause.stack || e.cause) : ''));
}
q.proc.kill('SIGINT');
const qe = await q.exited;
check('SIGINT exit 0', qe.code === 0, JSON.stringify(qe));

// ---- shutdown with requests running and queued, grace 0 ------------------------------------
// Two slots, a queue of one. Running: a long non-streamed request and a long stream; queued:
// one more. A request for n=3 gets its first choice queued and the second refused: 429, and the
// queued choice is withdrawn. Then SIGTERM with no grace: every unfinished request ends with an
// error (503 shutting_down, or an error event in the stream), never a cut-short 200.
const g = await startServer(['--parallel', '2', '--max-queue', '1', '--ctx', '16384', '--grace', '0']);
try {
  const long = { prompt: 'The', max_tokens: 16000, temperature: 1, ignore_eos: true };
  const gm = async () => {
    const t = await (await fetch(g.base + '/metrics')).text();
    return { active: Number(t.match(/^loam_active_sequences (\d+)/m)?.[1]), queued: Number(t.match(/^loam_queue_depth (\d+)/m)?.[1]) };
  };
  const running = post(g.base, '/v1/completions', long);
  const sres = await fetch(g.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ ...long, stream: true }),
  });
  const sreader = sres.body.getReader();
  const dec = new TextDecoder();
  let stext = dec.decode((await sreader.read()).value ?? new Uint8Array(), { stream: true });
  let m = await gm();
  for (let i = 0; i < 100 && m.active < 2; i++) { await sleep(20); m = await gm(); }
  check('shutdown: two running', m.active === 2 && m.queued === 0, JSON.stringify(m));
  const partial = await post(g.base, '/v1/completions', { prompt: 'The', max_tokens: 5, n: 3 });
  check('n=3 on a full queue: 429', isOpenAIError(partial, 429) && partial.headers.get('retry-after') === '1', partial.text.slice(0, 200));
  m = await gm();
  check('n=3 refused: its queued choice withdrawn', m.active === 2 && m.queued === 0, JSON.stringify(m));
  const queued = post(g.base, '/v1/completions', { prompt: 'The', max_tokens: 5 });
  for (let i = 0; i < 100 && m.queued < 1; i++) { await sleep(20); m = await gm(); }
  check('shutdown: one queued', m.active === 2 && m.queued === 1, JSON.stringify(m));
  g.proc.kill('SIGTERM');
  const [ra, rq] = await Promise.all([running, queued]);
  for (;;) {
    const { done, value } = await sreader.read();
    if (done) break;
    stext += dec.decode(value, { stream: true });
  }
  check('shutdown: running request gets 503', isOpenAIError(ra, 503) && ra.json.error.code === 'shutting_down', `${ra.status} ${ra.text.slice(0, 200)}`);
  check('shutdown: queued request gets 503', isOpenAIError(rq, 503) && rq.json.error.code === 'shutting_down', `${rq.status} ${rq.text.slice(0, 200)}`);
  const evs = stext.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
  const errEv = evs.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d)).filter((e) => e.error);
  check('shutdown: stream ends with an error event, then [DONE]', errEv.length === 1 && errEv[0].error.code === 'shutting_down' && evs[evs.length - 1] === '[DONE]',
        stext.slice(-300));
  check('shutdown: stream has no finish_reason', !/"finish_reason":"(stop|length)"/.test(stext));
  const ge = await g.exited;
  check('shutdown with grace 0: exit 0', ge.code === 0, JSON.stringify(ge));
} catch (e) {
  check('shutdown server run', false, String(e.stack || e));
  g.proc.kill('SIGKILL');
}
// ---- generation that fails: NaN logits ------------------------------------------------------
// Every request fails at its first token. Non-streamed: 500 naming the failure; streamed (n=2):
// one error event, then [DONE], and no finish chunk; the openai client raises it; no slot stays
// taken.
modelDir = nanModelDir;
const f = await startServer(['--parallel', '2']);
try {
  const fa = await post(f.base, '/v1/chat/completions', chatBody({ model: 'base' }));
  check('failure: 500', isOpenAIError(fa, 500) && /generation failed/.test(fa.json.error.message), `${fa.status} ${fa.text.slice(0, 200)}`);
  const fs = await fetch(f.base + '/v1/completions', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ prompt: 'The', max_tokens: 5, n: 2, stream: true }),
  });
  const ftext = await fs.text();
  const fev = ftext.split('\n\n').filter((b) => b.startsWith('data: ')).map((b) => b.slice(6));
  const ferr = fev.filter((d) => d !== '[DONE]').map((d) => JSON.parse(d)).filter((e) => e.error);
  check('failure (stream, n=2): one error event, then [DONE]', fs.status === 200 && ferr.length === 1 &&
        /generation failed/.test(ferr[0].error.message) && fev[fev.length - 1] === '[DONE]', ftext.slice(0, 300));
  check('failure (stream): no finish_reason', !/"finish_reason":"(stop|length)"/.test(ftext));
  const fc = new OpenAI({ apiKey: 'x', baseURL: f.base + '/v1', maxRetries: 0 });
  try {
    const st = await fc.chat.completions.create({ model: 'voice', messages: [{ role: 'user', content: 'x' }], max_tokens: 5, stream: true });
    for await (const chunk of st) void chunk;
    check('failure: openai client raises the stream error', false);
  } catch (e) {
    check('failure: openai client raises the stream error', /generation failed/.test(String(e.message)), String(e));
  }
  const fm = await (await fetch(f.base + '/metrics')).text();
  check('failure: no slot left taken', /^loam_active_sequences 0$/m.test(fm) && /^loam_queue_depth 0$/m.test(fm));
} catch (e) {
  check('failure server run', false, String(e.stack || e));
}
f.proc.kill('SIGTERM');
const fe = await f.exited;
check('failure server: exit 0', fe.code === 0, JSON.stringify(fe));

for (const [name, srv] of [['main', s], ['queue', q], ['shutdown', g], ['failure', f]])
  check(`${name} server: no sanitizer report`, !/Sanitizer|runtime error/.test(srv.stderr()), srv.stderr().slice(0, 3000));

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
