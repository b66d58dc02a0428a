// The gateway's HTTP API driven by the official `openai` npm package (a client nobody here
// wrote), plus node's own http module for what the SDK hides (keep-alive, body limits, raw SSE).
// Run by tests/openai_client_test.cc against a real embedded gateway on a random-weight toy
// model: node openai_client_test.js BASE_URL IMAGE_PATH ORPHAN_URL GATEWAY_PID GUARDED_URL TOKEN
// (ORPHAN_URL: a gateway whose workers are not there; GATEWAY_PID: BASE_URL's process, which the
// last test sends SIGTERM; GUARDED_URL: a gateway with --auth_token_file holding TOKEN and a
// 1000-byte body limit.)
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const OpenAI = require('openai');

const [baseUrl, imagePath, orphanUrl, gatewayPid, guardedUrl, token] = process.argv.slice(2);
const client = new OpenAI({ baseURL: `${baseUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
const origin = new URL(baseUrl);

const { test, run } = require('./node_test_runner');

// POST `body` (a string or Buffer) with node's http module; resolves {status, headers, text, socketReused}.
function rawPost(path, body, agent) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: origin.hostname, port: origin.port, path, method: 'POST', agent,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (d) => { text += d; });
        response.on('end', () => resolve({ status: response.statusCode, headers: response.headers,
                                           text, socketReused: request.reusedSocket }));
      });
    request.on('error', reject);
    request.end(body);
  });
}

// POST with chunked transfer encoding (no Content-Length), `parts` written one after another.
function chunkedPost(path, parts, headers = {}) {
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: origin.hostname, port: origin.port, path, method: 'POST',
        headers: { 'content-type': 'application/json', ...headers } },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (d) => { text += d; });
        response.on('end', () => resolve({ status: response.statusCode, text }));
      });
    request.on('error', (e) => (e.code === 'EPIPE' || e.code === 'ECONNRESET'
      ? resolve({ status: 'reset', text: '' }) : reject(e)));
    for (const part of parts) request.write(part);
    request.end();
  });
}

// Writes `bytes` to a new connection in one write and collects what the server sends until it
// closes (a reset after the answer counts as a close); rejects if it has not closed in 5 s.
function rawExchange(url, bytes) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port });
    let text = '';
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`not closed: ${text}`)); }, 5000);
    const done = () => { clearTimeout(timer); resolve(text); };
    socket.on('connect', () => socket.write(bytes));
    socket.on('data', (d) => { text += d.toString('latin1'); });
    socket.on('end', done);
    socket.on('error', (e) => (e.code === 'ECONNRESET' || e.code === 'EPIPE' ? done() : reject(e)));
  });
}

const statusLines = (text) => text.match(/^HTTP\/1\.1 \d+/gm) || [];

async function tokenizeCount(messages) {
  const response = await rawPost('/tokenize', JSON.stringify({ messages }));
  assert.equal(response.status, 200, response.text);
  return JSON.parse(response.text).count;
}

const greedy = { temperature: 0, max_tokens: 6 };
let model;

test('models.list names the served model', async () => {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  assert.equal(models.length, 1);
  assert.equal(models[0].object, 'model');
  model = models[0].id;
  assert.ok(model.length > 0);
});

test('unary completion: content, finish_reason, usage', async () => {
  const messages = [{ role: 'system', content: 'Be brief.' },
                    { role: 'user', content: 'Tell me a story.' }];
  const completion = await client.chat.completions.create({ model, messages, ...greedy });
  assert.equal(completion.object, 'chat.completion');
  assert.match(completion.id, /^chatcmpl-/);
  assert.equal(completion.choices.length, 1);
  const choice = completion.choices[0];
  assert.equal(choice.message.role, 'assistant');
  assert.equal(typeof choice.message.content, 'string');
  assert.equal(choice.finish_reason, 'length');
  assert.equal(completion.usage.completion_tokens, 6);
  assert.equal(completion.usage.prompt_tokens, await tokenizeCount(messages));
  assert.equal(completion.usage.total_tokens, completion.usage.prompt_tokens + 6);
});

test('streamed completion equals the unary one, usage last, then [DONE]', async () => {
  const messages = [{ role: 'user', content: 'Count to ten.' }];
  const unary = await client.chat.completions.create({ model, messages, ...greedy });
  const stream = await client.chat.completions.create({
    model, messages, ...greedy, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.choices.length === 0) {
      usage = chunk.usage;
      continue;
    }
    assert.equal(usage, null, 'the usage chunk comes last');
    text += chunk.choices[0].delta.content ?? '';
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.ok(chunks >= 3);
  assert.equal(text, unary.choices[0].message.content);
  assert.equal(finish, 'length');
  assert.deepEqual(usage, unary.usage);
});

test('raw SSE framing: data lines and a final data: [DONE]', async () => {
  const response = await rawPost('/v1/chat/completions', JSON.stringify({
    messages: [{ role: 'user', content: 'Hi' }], ...greedy, stream: true }));
  assert.equal(response.status, 200);
  assert.match(response.headers['content-type'], /^text\/event-stream/);
  const events = response.text.split('\n\n').filter((e) => e.length > 0);
  assert.equal(events[events.length - 1], 'data: [DONE]');
  for (const event of events.slice(0, -1)) {
    if (event.startsWith(':')) continue;  // heartbeat comment
    assert.ok(event.startsWith('data: '), event);
    JSON.parse(event.slice(6));
  }
});

test('an image as a data URI is encoded with its image tokens', async () => {
  const dataUri = `data:image/png;base64,${fs.readFileSync(imagePath).toString('base64')}`;
  const messages = [{ role: 'user', content: [
    { type: 'text', text: 'Describe the image.' },
    { type: 'image_url', image_url: { url: dataUri } }] }];
  const completion = await client.chat.completions.create({ model, messages, ...greedy });
  const textOnly = await tokenizeCount([{ role: 'user', content: 'Describe the image.' }]);
  assert.equal(completion.usage.prompt_tokens, await tokenizeCount(messages));
  assert.ok(completion.usage.prompt_tokens > textOnly + 16, `${completion.usage.prompt_tokens}`);
  assert.equal(completion.usage.completion_tokens, 6);
});

test('logprobs: one per generated token, and top_logprobs is refused with a 400', async () => {
  const completion = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hi' }], ...greedy, logprobs: true });
  const content = completion.choices[0].logprobs.content;
  assert.equal(content.length, 6);
  assert.equal(content.map((t) => t.token).join(''), completion.choices[0].message.content);
  for (const t of content) {
    assert.ok(t.logprob <= 0);
    assert.deepEqual(Buffer.from(t.bytes).toString('utf8'), t.token);
  }
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'Hi' }],
                                     ...greedy, logprobs: true, top_logprobs: 2 }),
    (e) => e instanceof OpenAI.BadRequestError && /top_logprobs/.test(e.message));
});

test('unknown fields are ignored', async () => {
  const completion = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Hi' }], ...greedy,
    user: 'someone', metadata: { a: 'b' }, a_field_from_the_future: [1, 2] });
  assert.equal(completion.choices[0].finish_reason, 'length');
});

test('a final assistant message with prefix: true is continued', async () => {
  const messages = [{ role: 'user', content: 'Say hello.' },
                    { role: 'assistant', content: 'Hello', prefix: true }];
  const completion = await client.chat.completions.create({ model, messages, ...greedy });
  // The prefix has no </s>: the prompt is the chat plus the prefix's tokens.
  assert.equal(completion.usage.prompt_tokens, await tokenizeCount(messages));
  const closed = await tokenizeCount([messages[0], { role: 'assistant', content: 'Hello' },
                                      { role: 'user', content: 'x' }]);
  assert.ok(closed > completion.usage.prompt_tokens);
});

const weatherTool = {
  type: 'function',
  function: { name: 'get_weather', description: 'The weather in a city',
              parameters: { type: 'object', properties: { city: { type: 'string' } },
                            required: ['city'] } },
};

async function tokenizeWithTools(messages, tools) {
  const response = await rawPost('/tokenize', JSON.stringify({ messages, tools }));
  assert.equal(response.status, 200, response.text);
  return JSON.parse(response.text);
}

test('tools, an assistant tool call and its result reach the prompt', async () => {
  const messages = [
    { role: 'user', content: 'What is the weather in Paris?' },
    { role: 'assistant', content: null, tool_calls: [{ id: 'a1b2c3d4e', type: 'function',
      function: { name: 'get_weather', arguments: '{"city": "Paris"}' } }] },
    { role: 'tool', tool_call_id: 'a1b2c3d4e', content: '{"temperature": 20}' },
  ];
  const completion = await client.chat.completions.create({
    model, messages, tools: [weatherTool], tool_choice: 'auto', ...greedy });
  assert.ok(['length', 'stop', 'tool_calls'].includes(completion.choices[0].finish_reason));
  const withTools = await tokenizeWithTools(messages, [weatherTool]);
  assert.equal(completion.usage.prompt_tokens, withTools.count);
  // The ids mistral_common v3 writes: [AVAILABLE_TOOLS]=5 ... [/AVAILABLE_TOOLS]=6 before the
  // last user turn, [TOOL_CALLS]=9, [TOOL_RESULTS]=7 ... [/TOOL_RESULTS]=8.
  const t = withTools.tokens;
  assert.deepEqual([t[0], t[1]], [1, 5]);
  for (const id of [6, 3, 4, 9, 2, 7, 8]) assert.ok(t.includes(id), `token ${id}`);
  assert.equal(t[t.length - 1], 8);
  // tool_choice "none" leaves the tools out of the prompt.
  const none = await client.chat.completions.create({
    model, messages, tools: [weatherTool], tool_choice: 'none', ...greedy });
  assert.ok(none.usage.prompt_tokens < completion.usage.prompt_tokens);
  const streamed = await client.chat.completions.create({
    model, messages, tools: [weatherTool], ...greedy, stream: true });
  let chunks = 0;
  for await (const chunk of streamed) chunks++;
  assert.ok(chunks > 1);
});

test('tool errors: a forced tool choice, a bad call id, an unanswered call', async () => {
  const user = { role: 'user', content: 'Weather?' };
  await assert.rejects(
    client.chat.completions.create({ model, messages: [user], tools: [weatherTool],
                                     tool_choice: 'required' }),
    (e) => e instanceof OpenAI.BadRequestError && /tool_choice/.test(e.message));
  const call = (id) => ({ role: 'assistant', content: null, tool_calls: [{ id, type: 'function',
    function: { name: 'get_weather', arguments: '{}' } }] });
  await assert.rejects(
    client.chat.completions.create({ model, tools: [weatherTool], messages: [
      user, call('call_1'), { role: 'tool', tool_call_id: 'call_1', content: 'x' }] }),
    (e) => e instanceof OpenAI.BadRequestError && /tool call id/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model, tools: [weatherTool], messages: [
      user, call('a1b2c3d4e'), { role: 'user', content: 'and?' }] }),
    (e) => e instanceof OpenAI.BadRequestError && /differ in number/.test(e.message));
});

test('errors: OpenAI error objects and status codes', async () => {
  await assert.rejects(
    client.chat.completions.create({ model, messages: [], ...greedy }),
    (e) => e instanceof OpenAI.BadRequestError && e.status === 400 &&
           e.error.type === 'invalid_request_error');
  await assert.rejects(
    client.chat.completions.create({ model: 'not-this-one',
                                     messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], n: 2 }),
    (e) => e instanceof OpenAI.BadRequestError && /\bn\b/.test(e.message));
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: [
      { type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }] }] }),
    (e) => e instanceof OpenAI.BadRequestError);
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }],
                                     max_tokens: 1000000 }),
    (e) => e instanceof OpenAI.BadRequestError && /context/.test(e.message));
  const malformed = await rawPost('/v1/chat/completions', '{"messages": [');
  assert.equal(malformed.status, 400);
  assert.equal(JSON.parse(malformed.text).error.type, 'invalid_request_error');
  const tooLarge = await rawPost('/v1/chat/completions', 'x'.repeat(3 << 20));
  assert.equal(tooLarge.status, 413);
  assert.equal(JSON.parse(tooLarge.text).error.code, 'request_too_large');
  // Without a Content-Length the limit holds too: the server counts the chunks (and reads a
  // body this little past the limit to its end, so that the 413 arrives).
  const chunked = await chunkedPost('/v1/chat/completions',
                                    Array.from({ length: 6 }, () => 'x'.repeat(512 << 10)));
  assert.equal(chunked.status, 413);
  assert.equal(JSON.parse(chunked.text).error.code, 'request_too_large');
  // Past that (2 MB limit + 4 MiB) the server stops reading and closes: a 413 or a reset.
  const unbounded = await chunkedPost('/v1/chat/completions',
                                      Array.from({ length: 16 }, () => 'x'.repeat(512 << 10)));
  assert.ok([413, 'reset'].includes(unbounded.status), `${unbounded.status}`);
  // Under the limit, a chunked body is read as any other.
  const small = await chunkedPost('/tokenize', ['{"prompt": ', '"hello"}']);
  assert.equal(small.status, 200, small.text);
  // A header line beyond cpp-httplib's 8 KB is refused, not buffered.
  const hugeHeader = await chunkedPost('/v1/chat/completions', ['{}'], { 'x-big': 'y'.repeat(20000) });
  assert.ok(hugeHeader.status === 400 || hugeHeader.status === 'reset', `${hugeHeader.status}`);
});

// A refusal that leaves the body unread ends the connection: the unread body (here a whole
// request of its own) must never be served as the next request.
test('refusals before the body close the connection; nothing after is read', async () => {
  const smuggled = 'GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n';
  const overLimit = await rawExchange(baseUrl,
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${64 << 20}\r\n\r\n${smuggled}`);
  assert.deepEqual(statusLines(overLimit), ['HTTP/1.1 413'], overLimit);
  assert.match(overLimit, /request_too_large/);
  const malformed = await rawExchange(baseUrl,
    `GET /v1/models HTTP/1.1\r\nx-big: ${'y'.repeat(20000)}\r\n\r\n${smuggled}`);
  assert.ok(statusLines(malformed).length <= 1, malformed);
  assert.ok(!/"object":"list"/.test(malformed), malformed);
  // Without the token a body is read and dropped, never served (the client ends the connection).
  const unauthorized = await rawExchange(guardedUrl,
    `POST /tokenize HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}`);
  assert.deepEqual(statusLines(unauthorized), ['HTTP/1.1 401'], unauthorized);
  // A refusal after a whole request (an unknown path, or a body a little over the limit, read
  // to its end) keeps the connection for the next one.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const unknown = await rawRequest(baseUrl, 'GET', '/no/such/path', {}, undefined, agent);
  const models = await rawRequest(baseUrl, 'GET', '/v1/models', {}, undefined, agent);
  assert.deepEqual([unknown.status, models.status, models.socketReused], [404, 200, true]);
  const overBy = await rawPost('/tokenize', 'x'.repeat(5 << 19), agent);
  const next = await rawPost('/tokenize', JSON.stringify({ prompt: 'hello' }), agent);
  assert.deepEqual([overBy.status, next.status, next.socketReused], [413, 200, true]);
  agent.destroy();
});

test('keep-alive: a second request reuses the connection', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const body = JSON.stringify({ prompt: 'hello' });
  const first = await rawPost('/tokenize', body, agent);
  const second = await rawPost('/tokenize', body, agent);
  assert.equal(first.status, 200);
  assert.equal(second.status, 200);
  assert.equal(second.socketReused, true);
  agent.destroy();
});

test('tokenize and detokenize round-trip (vLLM shapes)', async () => {
  const tokenized = JSON.parse((await rawPost('/tokenize', JSON.stringify({ prompt: 'Hello world' }))).text);
  assert.equal(tokenized.count, tokenized.tokens.length);
  assert.ok(tokenized.max_model_len > 0);
  assert.equal(tokenized.tokens[0], 1);  // <s>
  const detokenized = JSON.parse(
    (await rawPost('/detokenize', JSON.stringify({ tokens: tokenized.tokens }))).text);
  assert.equal(detokenized.prompt, 'Hello world');
});

// The gateway runs with --max_concurrent_requests=1: while a long stream holds the only slot a
// second completion is 429; aborting the stream (closing the connection) cancels its generation
// and frees the slot, so a completion right after succeeds.
test('429 while busy; a client that disconnects mid-stream frees its completion', async () => {
  const controller = new AbortController();
  const stream = await client.chat.completions.create(
    { model, messages: [{ role: 'user', content: 'Go on forever.' }], temperature: 0,
      max_tokens: 20000, stream: true },
    { signal: controller.signal });
  const iterator = stream[Symbol.asyncIterator]();
  await iterator.next();
  await iterator.next();
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], ...greedy }),
    (e) => e instanceof OpenAI.RateLimitError && e.status === 429);
  controller.abort();
  try {
    while (!(await iterator.next()).done) { /* what was buffered before the abort */ }
  } catch (e) {
    assert.ok(e instanceof OpenAI.APIUserAbortError, `${e}`);
  }
  const started = Date.now();
  for (;;) {
    try {
      await client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], ...greedy });
      break;
    } catch (e) {
      assert.ok(e instanceof OpenAI.RateLimitError, `${e}`);
      // 20000 tokens would take minutes on the toy model: freeing within seconds is the cancel.
      assert.ok(Date.now() - started < 10000, 'the aborted stream still holds its slot');
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});

// Any request with node's http module: resolves {status, headers, text}; 'reset' if the server
// closed the connection under the request.
function rawRequest(url, method, path, headers = {}, body = undefined, agent = undefined) {
  const target = new URL(url);
  return new Promise((resolve, reject) => {
    const request = http.request(
      { host: target.hostname, port: target.port, path, method, headers, agent },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (d) => { text += d; });
        response.on('end', () => resolve({ status: response.statusCode, headers: response.headers,
                                           text, socketReused: request.reusedSocket }));
      });
    request.on('error', (e) => (e.code === 'EPIPE' || e.code === 'ECONNRESET'
      ? resolve({ status: 'reset', headers: {}, text: '' }) : reject(e)));
    request.end(body);
  });
}

// The guarded gateway runs with --auth_token_file: every request but /health needs
// "Authorization: Bearer <token>" (the official client sends its apiKey so).
test('--auth_token_file: 401 with WWW-Authenticate: Bearer without the token, /health open', async () => {
  const chat = JSON.stringify({ model, messages: [{ role: 'user', content: 'x' }], ...greedy });
  const json = { 'content-type': 'application/json' };
  const refusals = [
    ['GET', '/v1/models', {}],
    ['POST', '/v1/chat/completions', json],
    ['POST', '/v1/chat/completions', { ...json, authorization: 'Bearer not-the-token' }],
    ['POST', '/v1/chat/completions', { ...json, authorization: `Basic ${token}` }],
    ['POST', '/tokenize', { ...json, authorization: `Bearer ${token}x` }],
    ['GET', '/no/such/path', {}],  // 401, not 404: no token, no map of the server
  ];
  for (const [method, path, headers] of refusals) {
    const response = await rawRequest(guardedUrl, method, path, headers,
                                      method === 'POST' ? chat : undefined);
    const where = `${method} ${path} ${JSON.stringify(headers)}`;
    assert.equal(response.status, 401, where);
    assert.equal(response.headers['www-authenticate'], 'Bearer', where);
    const error = JSON.parse(response.text).error;
    assert.equal(error.code, 'invalid_api_key', where);
    assert.ok(!response.text.includes('not-the-token') && !response.text.includes(token), where);
  }
  const health = await rawRequest(guardedUrl, 'GET', '/health');
  assert.equal(health.status, 200);

  // The token is checked before the body is used: a body over the 1000-byte limit is 401, not
  // 413, and so is one of a megabyte (read and dropped, so that the 401 is not lost to a reset).
  // On a keep-alive connection the body does not turn into a next request.
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  for (const size of [3000, 1 << 20]) {
    const big = JSON.stringify({ messages: [{ role: 'user', content: 'y'.repeat(size) }] });
    const refused = await rawRequest(guardedUrl, 'POST', '/v1/chat/completions',
                                     { ...json, 'content-length': Buffer.byteLength(big) }, big, agent);
    assert.equal(refused.status, 401, `${size}`);
    const after = await rawRequest(guardedUrl, 'GET', '/health', {}, undefined, agent);
    assert.equal(after.status, 200);
  }
  agent.destroy();
  // With the token the same body is read and refused for its size.
  const big = JSON.stringify({ messages: [{ role: 'user', content: 'y'.repeat(3000) }] });
  const tooLarge = await rawRequest(guardedUrl, 'POST', '/v1/chat/completions',
                                    { ...json, authorization: `Bearer ${token}` }, big);
  assert.equal(tooLarge.status, 413);
});

test('--auth_token_file: the official client with the token as apiKey; a wrong one is AuthenticationError', async () => {
  const wrong = new OpenAI({ baseURL: `${guardedUrl}/v1`, apiKey: 'not-the-token', maxRetries: 0 });
  await assert.rejects(
    wrong.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], ...greedy }),
    (e) => e instanceof OpenAI.AuthenticationError && e.status === 401 &&
           !e.message.includes('not-the-token'));
  const guarded = new OpenAI({ baseURL: `${guardedUrl}/v1`, apiKey: token, maxRetries: 0 });
  const models = [];
  for await (const m of guarded.models.list()) models.push(m.id);
  assert.deepEqual(models, [model]);
  const completion = await guarded.chat.completions.create(
    { model, messages: [{ role: 'user', content: 'Hi' }], ...greedy });
  assert.equal(completion.choices.length, 1);
  assert.ok(completion.usage.completion_tokens > 0);
  const stream = await guarded.chat.completions.create(
    { model, messages: [{ role: 'user', content: 'Hi' }], ...greedy, stream: true });
  let text = '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  assert.equal(text, completion.choices[0].message.content);
});

// Errors about the system reach the client as a fixed sentence with the request id (its own
// X-Request-Id, echoed back): no worker address, no gRPC text.
test('a worker failure is a public error: no addresses, the request id', async () => {
  const response = await rawRequest(
    orphanUrl, 'POST', '/v1/chat/completions',
    { 'content-type': 'application/json', 'x-request-id': 'trace-42' },
    JSON.stringify({ messages: [{ role: 'user', content: 'x' }], ...greedy }));
  assert.equal(response.status, 503, response.text);
  assert.equal(response.headers['x-request-id'], 'trace-42');
  const { message } = JSON.parse(response.text).error;
  assert.match(message, /request id trace-42/);
  for (const leak of ['127.0.0.1', 'ipv4', ':1', 'worker', 'connect']) {
    assert.ok(!message.includes(leak), `${leak} in ${message}`);
  }
});

test('503 when no worker can be reached', async () => {
  const orphan = new OpenAI({ baseURL: `${orphanUrl}/v1`, apiKey: 'unused', maxRetries: 0 });
  await assert.rejects(
    orphan.chat.completions.create({ messages: [{ role: 'user', content: 'x' }], ...greedy }),
    (e) => e instanceof OpenAI.InternalServerError && e.status === 503 &&
           e.error.code === 'service_unavailable');
});

// Last: SIGTERM with a stream in flight. /health turns 503 and new completions are refused at
// once; the stream runs on through --shutdown_grace (2 s) and is then cancelled (an error event).
test('SIGTERM drains: health 503, new completions 503, the running stream cancelled after the grace', async () => {
  const stream = await client.chat.completions.create({
    model, messages: [{ role: 'user', content: 'Go on forever.' }], temperature: 0,
    max_tokens: 20000, stream: true });
  const iterator = stream[Symbol.asyncIterator]();
  await iterator.next();
  await iterator.next();
  const signalled = Date.now();
  process.kill(Number(gatewayPid), 'SIGTERM');
  for (;;) {
    const health = await fetch(`${baseUrl}/health`);
    if (health.status === 503) break;
    assert.equal(health.status, 200);
    assert.ok(Date.now() - signalled < 2000, 'health still 200 after SIGTERM');
    await new Promise((r) => setTimeout(r, 20));
  }
  await assert.rejects(
    client.chat.completions.create({ model, messages: [{ role: 'user', content: 'x' }], ...greedy }),
    (e) => e instanceof OpenAI.InternalServerError && e.status === 503);
  let chunks = 0;
  await assert.rejects(async () => {
    while (!(await iterator.next()).done) chunks++;
  }, (e) => e instanceof OpenAI.APIError);
  const elapsed = Date.now() - signalled;
  assert.ok(chunks > 0, 'the stream went on during the grace');
  assert.ok(elapsed >= 1500 && elapsed < 8000, `cancelled after ${elapsed} ms`);
});

run();
