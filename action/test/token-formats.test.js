'use strict';
// The action with installation tokens in both of GitHub's formats: classic (`ghs_` and 36 letters
// and digits, 40 characters) and stateless (`ghs_<APPID>_<JWT>`, about 520 characters, two dots, and
// `-` and `_` in its base64url segments), which GitHub mints by default since its 2026 rollout.
// main.js and post.js run as the runner runs them, with a stand-in CLI that hands out the token of
// the format under test (masked first, then written to GITHUB_OUTPUT, as the real CLI does), and a
// loopback GitHub that accepts exactly the tokens it issued at DELETE /installation/token. One test
// per format, each asserting the exact shape, so that each fails if its own format's handling breaks.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const support = require('./support.js');
const { execFileSync } = require('node:child_process');
const lib = require('../lib.js');

const ACTION = path.resolve(__dirname, '..');
const VERSION = 'v1.2.3';

let asset = null;
try {
  asset = lib.assetName(process.platform, process.arch);
} catch {
  asset = null;
}
const opts = { skip: !asset && `the action has no CLI build for ${process.platform}/${process.arch}` };

const CLI = `#!/bin/sh
# A stand-in for \`appcreds token\` in Actions: masks the token, prints it, writes the outputs.
set -eu
printf '::add-mask::%s\\n' "$FAKE_TOKEN"
printf 'token=%s\\ninstallation-id=4001\\napp-slug=my-app\\nexpires-at=2026-11-24T16:52:05Z\\n' "$FAKE_TOKEN" >> "$GITHUB_OUTPUT"
printf '%s\\n' "$FAKE_TOKEN"
`;

const base64url = (data) => Buffer.from(data).toString('base64url');

/** A classic token: `ghs_` and 36 letters and digits. */
function classicToken() {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `ghs_${Array.from(crypto.randomBytes(36), (b) => alphabet[b % alphabet.length]).join('')}`;
}

/** A stateless token for App `appId`, signed as a JWT, with both `-` and `_` in its JWT part. */
function statelessToken(appId) {
  const key = crypto.randomBytes(32);
  for (let attempt = 0; attempt < 1000; attempt++) {
    const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT', kid: 'appcreds-test' }));
    const now = Math.floor(Date.now() / 1000);
    const claims = base64url(JSON.stringify({
      aud: 'api.github.com', sub: 'installation:4001', app_id: appId, installation_id: 4001,
      permissions: { contents: 'read', metadata: 'read' }, repository_selection: 'selected', repository_ids: [40011, 40012],
      iat: now, nbf: now, exp: now + 3600, jti: crypto.randomBytes(16).toString('hex'),
    }));
    const signature = crypto.createHmac('sha256', key).update(`${header}.${claims}`).digest('base64url');
    const jwt = `${header}.${claims}.${signature}`;
    if (jwt.includes('-') && jwt.includes('_')) return `ghs_${appId}_${jwt}`;
  }
  throw new Error('no token with both - and _');
}

const SHAPES = {
  classic: (token) => /^ghs_[A-Za-z0-9]{36}$/.test(token),
  stateless: (token) => /^ghs_\d+_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(token) && token.length > 255,
};

const fileCommands = support.parseFileCommands;

let root;
let actionDir;
let server;
let baseUrl;
let archive;
/** The tokens GitHub would accept now (issued, not revoked). */
const live = new Set();
/** The Authorization header of every DELETE /installation/token. */
const revocations = [];

test.before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'appcreds-token-formats-'));
  fs.mkdirSync(path.join(root, 'build'));
  fs.writeFileSync(path.join(root, 'build', 'appcreds'), CLI, { mode: 0o755 });
  execFileSync('tar', ['-czf', path.join(root, 'cli.tar.gz'), '-C', path.join(root, 'build'), 'appcreds']);
  archive = fs.readFileSync(path.join(root, 'cli.tar.gz'));
  // The action's scripts as committed; the CLI's digest comes from the input sha256.
  actionDir = path.join(root, 'action');
  fs.mkdirSync(actionDir);
  for (const f of ['lib.js', 'main.js', 'post.js']) fs.copyFileSync(path.join(ACTION, f), path.join(actionDir, f));
  fs.writeFileSync(path.join(actionDir, 'digests.json'), '{}\n');
  server = http.createServer((req, res) => {
    if (req.method === 'DELETE' && req.url === '/installation/token') {
      const authorization = req.headers.authorization || '';
      revocations.push(authorization);
      const token = authorization.startsWith('Bearer ') ? authorization.slice('Bearer '.length) : '';
      const known = live.delete(token);
      res.writeHead(known ? 204 : 401, { 'content-type': 'application/json' });
      res.end(known ? '' : JSON.stringify({ message: 'Bad credentials' }));
    } else if (req.method === 'GET' && req.url === `/octo/appcreds/releases/download/${VERSION}/${asset}`) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(archive);
    } else {
      res.writeHead(404).end('Not Found');
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${server.address().port}`;
});

test.after(async () => {
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(root, { recursive: true, force: true });
});

const runNode = (script, env) => support.runNode(actionDir, script, env);

/**
 * One job with `token`: main.js gets it from the stand-in CLI, post.js revokes it; then a second
 * post finds it revoked. Returns what the job saw.
 */
async function job(name, token) {
  const dir = path.join(root, name);
  const files = { output: path.join(dir, 'output'), state: path.join(dir, 'state'), temp: path.join(dir, 'temp') };
  fs.mkdirSync(files.temp, { recursive: true });
  fs.writeFileSync(files.output, '');
  fs.writeFileSync(files.state, '');
  const env = {
    PATH: process.env.PATH,
    GITHUB_ACTIONS: 'true',
    GITHUB_ACTION_REPOSITORY: 'octo/appcreds',
    GITHUB_ACTION_REF: VERSION,
    GITHUB_OUTPUT: files.output,
    GITHUB_STATE: files.state,
    GITHUB_API_URL: baseUrl,
    RUNNER_TEMP: files.temp,
    APPCREDS_RELEASE_BASE_URL: baseUrl,
    FAKE_TOKEN: token,
    'INPUT_APP-ID': '123456',
    INPUT_OWNER: 'octo-org',
    INPUT_OIDC: 'true',
    'INPUT_SKIP-REVOKE': 'false',
    INPUT_SHA256: crypto.createHash('sha256').update(archive).digest('hex'),
  };
  live.add(token);
  const main = await runNode('main.js', env);
  assert.equal(main.code, 0, main.stdout + main.stderr);
  const outputs = fileCommands(fs.readFileSync(files.output, 'utf8'));
  const state = fileCommands(fs.readFileSync(files.state, 'utf8'));
  const stateEnv = Object.fromEntries(Object.entries(state).map(([k, v]) => [`STATE_${k}`, v]));
  const revoked = revocations.length;
  const post = await runNode('post.js', { ...env, ...stateEnv });
  const calls = revocations.slice(revoked);
  const again = await runNode('post.js', { ...env, ...stateEnv });
  return { main, outputs, state, post, calls, again };
}

/** What every format must get: the exact token in the outputs and the state, masked before it shows, revoked with itself. */
function assertHandled(seen, token) {
  const { main, outputs, state, post, calls, again } = seen;
  assert.equal(main.stdout.indexOf(token), main.stdout.indexOf(`::add-mask::${token}`) + '::add-mask::'.length, 'masked before it shows');
  assert.deepEqual(main.stdout.split('\n').filter((l) => l.includes(token)), [`::add-mask::${token}`, token]);
  assert.ok(!main.stderr.includes(token));
  assert.deepEqual(outputs, { token, 'installation-id': '4001', 'app-slug': 'my-app', 'expires-at': '2026-11-24T16:52:05Z' });
  assert.equal(state.token, token, 'the state keeps the token whole, for post');
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(calls, [`Bearer ${token}`], 'revoked with the token itself');
  assert.match(post.stdout, /^the token is revoked$/m);
  assert.ok(!live.has(token), 'GitHub took it back');
  assert.equal(again.code, 0);
  assert.match(again.stdout, /^::warning::GitHub does not accept the token \(already revoked or expired\)$/m);
  for (const out of [post.stdout, post.stderr, again.stdout, again.stderr]) {
    for (const piece of token.split(/[._]/).filter((p) => p.length > 8)) assert.ok(!out.includes(piece), 'post never shows the token, nor a part of it');
  }
  assert.equal(lib.redact(`failed for ${token}.`, token), 'failed for ***.');
}

test('a classic token: outputs, state, masking and revocation, exactly', opts, async () => {
  const token = classicToken();
  assert.ok(SHAPES.classic(token) && !SHAPES.stateless(token), token);
  const seen = await job('classic', token);
  assertHandled(seen, token);
  assert.ok(SHAPES.classic(seen.outputs.token) && SHAPES.classic(seen.state.token));
  assert.equal(seen.outputs.token.length, 40);
});

test('a stateless token: outputs, state, masking and revocation, exactly', opts, async () => {
  const token = statelessToken(123456);
  assert.ok(SHAPES.stateless(token) && !SHAPES.classic(token), token);
  assert.ok(token.length > 450 && token.length < 700, `about 520 characters: ${token.length}`);
  const seen = await job('stateless', token);
  assertHandled(seen, token);
  assert.ok(SHAPES.stateless(seen.outputs.token) && SHAPES.stateless(seen.state.token));
  assert.equal(seen.outputs.token.split('.').length, 3);
});
