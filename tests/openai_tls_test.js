// HTTPS on the gateway's HTTP port, from the gRPC port's --tls_cert/--tls_key (and
// --tls_client_ca), driven by the official `openai` npm package and node's https module.
// Run by tests/openai_client_test.cc with NODE_EXTRA_CA_CERTS naming the test CA:
// node openai_tls_test.js TLS_URL TOKEN MTLS_URL CLIENT_CERT CLIENT_KEY
// (TLS_URL: https, with --auth_token_file holding TOKEN; MTLS_URL: https that requires a client
// certificate signed by the test CA, which CLIENT_CERT is.)
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const OpenAI = require('openai');

const [tlsUrl, token, mtlsUrl, clientCert, clientKey] = process.argv.slice(2);

// GET `path` with node's http or https module: resolves {status, text}, or {error: code} when the
// connection or the handshake fails.
function get(module, url, path, options = {}) {
  const target = new URL(url);
  return new Promise((resolve) => {
    const request = module.request(
      { host: target.hostname, port: target.port, path, method: 'GET', ...options },
      (response) => {
        let text = '';
        response.setEncoding('utf8');
        response.on('data', (d) => { text += d; });
        response.on('end', () => resolve({ status: response.statusCode, text }));
      });
    request.on('error', (e) => resolve({ error: e.code || String(e) }));
    request.end();
  });
}

const { test, run } = require('./node_test_runner');

test('the official client over HTTPS, with the bearer token', async () => {
  const client = new OpenAI({ baseURL: `${tlsUrl}/v1`, apiKey: token, maxRetries: 0 });
  const models = [];
  for await (const m of client.models.list()) models.push(m.id);
  assert.equal(models.length, 1);
  const completion = await client.chat.completions.create(
    { model: models[0], messages: [{ role: 'user', content: 'Hi' }], temperature: 0, max_tokens: 4 });
  assert.ok(completion.usage.completion_tokens > 0);
  const anonymous = new OpenAI({ baseURL: `${tlsUrl}/v1`, apiKey: 'nope', maxRetries: 0 });
  await assert.rejects(anonymous.models.list(), (e) => e instanceof OpenAI.AuthenticationError);
});

test('plain HTTP to the HTTPS port gets no answer', async () => {
  const plain = await get(http, tlsUrl.replace('https:', 'http:'), '/health');
  assert.ok(plain.error !== undefined || plain.status === 400, JSON.stringify(plain));
  assert.equal((await get(https, tlsUrl, '/health')).status, 200);
});

test('--tls_client_ca: no client certificate, no HTTPS; the CA-signed one is served', async () => {
  const without = await get(https, mtlsUrl, '/health');
  assert.ok(without.error !== undefined, JSON.stringify(without));
  const withCert = await get(https, mtlsUrl, '/health',
                             { cert: fs.readFileSync(clientCert), key: fs.readFileSync(clientKey) });
  assert.equal(withCert.status, 200, JSON.stringify(withCert));
  const models = await get(https, mtlsUrl, '/v1/models',
                           { cert: fs.readFileSync(clientCert), key: fs.readFileSync(clientKey) });
  assert.equal(models.status, 200, JSON.stringify(models));
});

run();
