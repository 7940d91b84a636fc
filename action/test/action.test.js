'use strict';
// The whole action with real parts: main.js and post.js run as the runner runs them (node, inputs
// in INPUT_*, GITHUB_OUTPUT / GITHUB_STATE files, RUNNER_TEMP), downloading a real tar.gz and its
// .sha256 from a loopback HTTP server (through a redirect, as GitHub's release downloads go). The
// archive holds a stand-in `appcreds`: a shell script that records its arguments and environment
// and answers as the CLI does in Actions (::add-mask::, the four outputs).

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { execFileSync, spawn } = require('node:child_process');
const lib = require('../lib.js');

const ACTION = path.resolve(__dirname, '..');
const REPO = 'octo/appcreds';
const TOKEN = 'ghs_TESTtoken0123456789abcdefghijklmnop';
const supported = process.platform === 'linux' && ['x64', 'arm64'].includes(process.arch);
const ASSET = supported ? lib.assetName(process.platform, process.arch) : 'unsupported';

const FAKE_CLI = `#!/bin/sh
# A stand-in for the appcreds CLI: records its arguments and environment, answers like the real one.
set -eu
cmd=
for a in "$@"; do
  case "$a" in token|revoke) cmd=$a; break ;; esac
done
: > "$FAKE_RECORD_DIR/$cmd.argv"
for a in "$@"; do printf '%s\\n' "$a" >> "$FAKE_RECORD_DIR/$cmd.argv"; done
env > "$FAKE_RECORD_DIR/$cmd.env"
case "$cmd" in
token)
  if [ "\${FAKE_TOKEN_EXIT:-0}" != 0 ]; then echo "appcreds: refused: no access rule allows this" >&2; exit "$FAKE_TOKEN_EXIT"; fi
  if [ "\${GITHUB_ACTIONS:-}" = true ]; then
    printf '::add-mask::%s\\n' "$FAKE_TOKEN"
    printf 'token=%s\\ninstallation-id=4001\\napp-slug=my-app\\nexpires-at=2026-11-24T16:52:05Z\\n' "$FAKE_TOKEN" >> "$GITHUB_OUTPUT"
  fi
  printf '%s\\n' "$FAKE_TOKEN" ;;
revoke)
  [ -n "\${APPCREDS_TOKEN:-}" ] || { echo "appcreds: --token-env: APPCREDS_TOKEN is not set" >&2; exit 2; }
  if [ "\${FAKE_REVOKE_EXIT:-0}" != 0 ]; then echo "appcreds: GitHub does not accept this token" >&2; exit "$FAKE_REVOKE_EXIT"; fi
  echo revoked ;;
*) exit 2 ;;
esac
`;

/** The multi-line and name=value forms of GITHUB_STATE / GITHUB_OUTPUT, parsed. */
function parseFileCommands(text) {
  const values = {};
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^=<]+)<<(.+)$/.exec(lines[i]);
    if (heredoc) {
      const end = lines.indexOf(heredoc[2], i + 1);
      assert.ok(end > i, `the delimiter of ${heredoc[1]} is closed`);
      values[heredoc[1]] = lines.slice(i + 1, end).join('\n');
      i = end;
    } else if (lines[i].includes('=')) {
      values[lines[i].slice(0, lines[i].indexOf('='))] = lines[i].slice(lines[i].indexOf('=') + 1);
    }
  }
  return values;
}

let root;
let server;
let baseUrl;
const requests = [];

/** Serves `files` (name → bytes) at /objects/NAME, and releases that redirect there. */
function releaseServer(files) {
  const releases = {
    // v1.2.3: the good release, both files behind a redirect.
    'v1.2.3': { [ASSET]: 'good.tar.gz', [`${ASSET}.sha256`]: 'good.sha256' },
    // v6.6.6: the archive does not match its checksum.
    'v6.6.6': { [ASSET]: 'good.tar.gz', [`${ASSET}.sha256`]: 'other.sha256' },
    // v2.0.0: a verified archive without appcreds at its root.
    'v2.0.0': { [ASSET]: 'nested.tar.gz', [`${ASSET}.sha256`]: 'nested.sha256' },
  };
  return http.createServer((req, res) => {
    requests.push(req.url);
    const release = /^\/octo\/appcreds\/releases\/download\/([^/]+)\/([^/]+)$/.exec(req.url);
    if (release && release[1] === 'v9.9.9') {
      // A redirect loop: the download must give up.
      res.writeHead(302, { location: req.url }).end();
    } else if (release && releases[release[1]]?.[release[2]]) {
      res.writeHead(302, { location: `/objects/${releases[release[1]][release[2]]}` }).end();
    } else if (req.url.startsWith('/objects/') && files[req.url.slice('/objects/'.length)]) {
      res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(files[req.url.slice('/objects/'.length)]);
    } else {
      res.writeHead(404).end('Not Found');
    }
  });
}

test.before(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'appcreds-action-test-'));
  const build = path.join(root, 'build');
  fs.mkdirSync(path.join(build, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(build, 'appcreds'), FAKE_CLI, { mode: 0o755 });
  fs.writeFileSync(path.join(build, 'bin', 'appcreds'), FAKE_CLI, { mode: 0o755 });
  execFileSync('tar', ['-czf', path.join(root, 'good.tar.gz'), '-C', build, 'appcreds']);
  execFileSync('tar', ['-czf', path.join(root, 'nested.tar.gz'), '-C', build, 'bin']);
  const files = {};
  for (const name of ['good', 'nested']) {
    files[`${name}.tar.gz`] = fs.readFileSync(path.join(root, `${name}.tar.gz`));
    // The checksum files in sha256sum's own format, as the release workflow writes them.
    files[`${name}.sha256`] = execFileSync('sha256sum', [`${name}.tar.gz`], { cwd: root }).toString().replace(`${name}.tar.gz`, ASSET);
  }
  files['other.sha256'] = `${crypto.createHash('sha256').update('something else').digest('hex')}  ${ASSET}\n`;
  server = releaseServer(files);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${server.address().port}`;
});

test.after(async () => {
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(root, { recursive: true, force: true });
});

/** Runs `node script` with exactly `env` (no variable of the test's own), asynchronously: the server answers meanwhile. */
function runNode(script, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ACTION, script)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

let jobs = 0;

/** A fresh job: its own RUNNER_TEMP, GITHUB_OUTPUT, GITHUB_STATE and record directory. */
function newJob() {
  const dir = path.join(root, `job-${++jobs}`);
  const job = {
    dir,
    temp: path.join(dir, 'runner-temp'),
    output: path.join(dir, 'output'),
    state: path.join(dir, 'state'),
    records: path.join(dir, 'records'),
  };
  for (const d of [job.temp, job.records]) fs.mkdirSync(d, { recursive: true });
  fs.writeFileSync(job.output, '');
  fs.writeFileSync(job.state, '');
  job.env = (inputs, extra = {}) => {
    const env = {
      PATH: process.env.PATH,
      GITHUB_ACTIONS: 'true',
      GITHUB_ACTION_REPOSITORY: REPO,
      GITHUB_ACTION_REF: 'v1.2.3',
      GITHUB_OUTPUT: job.output,
      GITHUB_STATE: job.state,
      RUNNER_TEMP: job.temp,
      APPCREDS_RELEASE_BASE_URL: baseUrl,
      FAKE_RECORD_DIR: job.records,
      FAKE_TOKEN: TOKEN,
      // The runner passes every input that has a default.
      INPUT_OIDC: 'true',
      'INPUT_SKIP-REVOKE': 'false',
      ...extra,
    };
    for (const [name, value] of Object.entries(inputs)) env[`INPUT_${name.toUpperCase()}`] = value;
    return env;
  };
  job.main = (inputs, extra) => runNode('main.js', job.env(inputs, extra));
  job.post = (inputs, extra) => {
    const state = parseFileCommands(fs.readFileSync(job.state, 'utf8'));
    const stateEnv = Object.fromEntries(Object.entries(state).map(([k, v]) => [`STATE_${k}`, v]));
    return runNode('post.js', job.env(inputs, { ...stateEnv, ...extra }));
  };
  job.argv = (cmd) => {
    const file = path.join(job.records, `${cmd}.argv`);
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').slice(0, -1) : null;
  };
  job.cliEnv = (cmd) => {
    const file = path.join(job.records, `${cmd}.env`);
    if (!fs.existsSync(file)) return null;
    return Object.fromEntries(fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  };
  job.state_ = () => parseFileCommands(fs.readFileSync(job.state, 'utf8'));
  job.outputs = () => parseFileCommands(fs.readFileSync(job.output, 'utf8'));
  return job;
}

/** The token shows on stdout only after its ::add-mask:: line, and never on stderr. */
function assertMaskedFirst(result) {
  const first = result.stdout.indexOf(TOKEN);
  assert.ok(first >= 0, 'the CLI printed the token (masked by the runner)');
  assert.equal(result.stdout.slice(first - '::add-mask::'.length, first), '::add-mask::', 'the first appearance is the mask command');
  assert.ok(!result.stderr.includes(TOKEN), 'the token is not on stderr');
  // Only the CLI shows it (the mask command, then its own output line): the action itself never does.
  assert.deepEqual(result.stdout.split('\n').filter((l) => l.includes(TOKEN)), [`::add-mask::${TOKEN}`, TOKEN]);
}

const opts = { skip: !supported && 'the release assets are for Linux x64 and arm64' };

test('owner, scope-down lists and permissions: the exact CLI call, masked token, outputs, state; post revokes', opts, async () => {
  const job = newJob();
  const before = requests.length;
  const result = await job.main({
    'app-id': '123456',
    owner: 'octo-org',
    'repository-ids': '40011, 40012',
    repositories: 'hello-world,docs',
    permissions: 'contents=read\nissues=write, metadata=read\n',
  });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.deepEqual(job.argv('token'), [
    'token', '--app-id', '123456', '--owner', 'octo-org',
    '--repository-ids', '40011,40012',
    '--repositories', 'hello-world,docs',
    '--permission', 'contents=read', '--permission', 'issues=write', '--permission', 'metadata=read',
  ]);
  assertMaskedFirst(result);
  const cliEnv = job.cliEnv('token');
  assert.equal(cliEnv.GITHUB_ACTIONS, 'true');
  assert.equal(cliEnv.AWS_REGION, undefined);

  // Both files came through the redirect.
  const seen = requests.slice(before);
  assert.ok(seen.includes(`/octo/appcreds/releases/download/v1.2.3/${ASSET}`));
  assert.ok(seen.includes(`/octo/appcreds/releases/download/v1.2.3/${ASSET}.sha256`));
  assert.ok(seen.includes('/objects/good.tar.gz') && seen.includes('/objects/good.sha256'));

  assert.deepEqual(job.outputs(), { token: TOKEN, 'installation-id': '4001', 'app-slug': 'my-app', 'expires-at': '2026-11-24T16:52:05Z' });
  const state = job.state_();
  assert.equal(state.token, TOKEN);
  assert.equal(path.dirname(path.dirname(state.binary)), job.temp, 'the CLI is in a directory of its own under RUNNER_TEMP');
  assert.match(path.basename(path.dirname(state.binary)), /^appcreds-/);
  assert.match(fs.readFileSync(job.state, 'utf8'), /^binary<<ghadelimiter_[^\n]+\n[^\n]+\nghadelimiter_[^\n]+\ntoken<<ghadelimiter_/);
  assert.deepEqual(fs.readdirSync(path.dirname(state.binary)), ['appcreds'], 'the archive is not kept');

  const post = await job.post({});
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(job.argv('revoke'), ['revoke', '--token-env', 'APPCREDS_TOKEN'], 'the token is not an argument');
  const revokeEnv = job.cliEnv('revoke');
  assert.equal(revokeEnv.APPCREDS_TOKEN, TOKEN);
  assert.equal(revokeEnv.STATE_token, undefined);
  assert.match(post.stdout, /^revoked$/m);
  assert.ok(!post.stdout.includes(TOKEN) && !post.stderr.includes(TOKEN), 'post never prints the token');
  assert.ok(!fs.existsSync(path.dirname(state.binary)), 'post removes the downloaded CLI');
});

test('repository, stack, region, oidc false', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '7', repository: 'octo-org/hello-world', stack: 'appcreds', region: 'eu-west-1', oidc: 'false' });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.deepEqual(job.argv('token'), ['--stack', 'appcreds', '--no-github-oidc', 'token', '--app-id', '7', '--repository', 'octo-org/hello-world']);
  assert.equal(job.cliEnv('token').AWS_REGION, 'eu-west-1');
  assertMaskedFirst(result);
});

test('node-id, installation-token-url, OIDC audience; the version input over a branch ref', opts, async () => {
  const job = newJob();
  const url = 'https://abcdefgh.lambda-url.eu-west-1.on.aws/';
  const result = await job.main(
    { 'app-id': '7', 'node-id': 'O_kgDOABCD', 'installation-token-url': url, 'oidc-audience': 'appcreds-aud', version: 'v1.2.3' },
    { GITHUB_ACTION_REF: 'main' }
  );
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.deepEqual(job.argv('token'), [
    '--installation-token-url', url, '--github-oidc-audience', 'appcreds-aud', 'token', '--app-id', '7', '--node-id', 'O_kgDOABCD',
  ]);
});

test('a wrong checksum: nothing is extracted, nothing runs', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '7', owner: 'octo-org', version: 'v6.6.6' });
  assert.equal(result.code, 1);
  assert.match(result.stdout, new RegExp(`^::error::checksum mismatch for ${ASSET.replace(/\./g, '\\.')}: expected [0-9a-f]{64}, got [0-9a-f]{64}; not running it$`, 'm'));
  assert.equal(job.argv('token'), null);
  assert.deepEqual(fs.readdirSync(job.temp), [], 'nothing was written under RUNNER_TEMP');
  assert.equal(fs.readFileSync(job.state, 'utf8'), '');
  assert.equal(fs.readFileSync(job.output, 'utf8'), '');
});

test('an archive without appcreds at its root is refused', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '7', owner: 'octo-org', version: 'v2.0.0' });
  assert.equal(result.code, 1);
  assert.match(result.stdout, /^::error::cannot extract appcreds from appcreds-/m);
  assert.equal(job.argv('token'), null);
});

test('download failures: a missing release, a redirect loop (bounded)', opts, async () => {
  const job = newJob();
  const missing = await job.main({ 'app-id': '7', owner: 'octo-org', version: 'v0.0.1' });
  assert.equal(missing.code, 1);
  assert.match(missing.stdout, /^::error::downloading http:\/\/127\.0\.0\.1:\d+\/octo\/appcreds\/releases\/download\/v0\.0\.1\/appcreds-\S+: HTTP 404 \(is there a release with this tag/m);

  const before = requests.length;
  const loop = await job.main({ 'app-id': '7', owner: 'octo-org', version: 'v9.9.9' });
  assert.equal(loop.code, 1);
  assert.match(loop.stdout, /^::error::too many redirects downloading /m);
  const hops = requests.slice(before).filter((u) => u === `/octo/appcreds/releases/download/v9.9.9/${ASSET}`).length;
  assert.equal(hops, lib.MAX_REDIRECTS + 1);
  assert.equal(job.argv('token'), null);
});

test('no version input and the action used at a branch: asks for version, downloads nothing', opts, async () => {
  const job = newJob();
  const before = requests.length;
  const result = await job.main({ 'app-id': '7', owner: 'octo-org' }, { GITHUB_ACTION_REF: 'main' });
  assert.equal(result.code, 1);
  assert.match(result.stdout, /^::error::give the input version \(a release tag of appcreds, e\.g\. v1\.2\.3\): the action's ref "main" is not a version tag/m);
  assert.equal(requests.length, before);
});

test('a missing or ambiguous target, or a bad permission: a clear error before any download', opts, async () => {
  const job = newJob();
  const before = requests.length;
  const cases = [
    [{ 'app-id': '7' }, /^::error::give exactly one of the inputs owner, repository or node-id: the installation to get a token for$/m],
    [{ 'app-id': '7', owner: 'octo-org', repository: 'octo-org/hello-world' }, /^::error::give exactly one of the inputs owner, repository or node-id, not owner and repository$/m],
    [{ 'app-id': '7', owner: 'o', repository: 'o/r', 'node-id': 'n' }, /not owner and repository and node-id$/m],
    [{ owner: 'octo-org' }, /^::error::the input app-id is required$/m],
    [{ 'app-id': '7', owner: 'o', permissions: 'contents=read\ncontents' }, /^::error::input permissions: "contents" is not name=level/m],
    [{ 'app-id': '7', owner: 'o', 'skip-revoke': 'maybe' }, /^::error::input skip-revoke must be true or false, not "maybe"$/m],
  ];
  for (const [inputs, message] of cases) {
    const result = await job.main(inputs);
    assert.equal(result.code, 1, JSON.stringify(inputs));
    assert.match(result.stdout, message);
  }
  assert.equal(requests.length, before, 'nothing was downloaded');
  assert.equal(job.argv('token'), null);
});

test('skip-revoke: the token is not kept, post revokes nothing', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '7', owner: 'octo-org', 'skip-revoke': 'true' });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.equal(job.outputs().token, TOKEN);
  const state = job.state_();
  assert.equal(state.token, undefined);
  assert.ok(!fs.readFileSync(job.state, 'utf8').includes(TOKEN));
  const post = await job.post({ 'skip-revoke': 'true' });
  assert.equal(post.code, 0);
  assert.match(post.stdout, /skip-revoke: the token is left valid until it expires/);
  assert.equal(job.argv('revoke'), null);
  assert.ok(!fs.existsSync(path.dirname(state.binary)), 'the downloaded CLI is removed all the same');
});

test('a failed revoke is a warning, not a failure', opts, async () => {
  const job = newJob();
  assert.equal((await job.main({ 'app-id': '7', owner: 'octo-org' })).code, 0);
  const post = await job.post({}, { FAKE_REVOKE_EXIT: '4' });
  assert.equal(post.code, 0);
  assert.match(post.stdout, /^::warning::revoking the token failed \(exit code 4\): it stays valid until it expires$/m);
  assert.match(post.stderr, /GitHub does not accept this token/);
  assert.ok(!post.stdout.includes(TOKEN) && !post.stderr.includes(TOKEN));
});

test('the CLI refuses: the step fails with its exit code, post has nothing to revoke', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '7', owner: 'octo-org' }, { FAKE_TOKEN_EXIT: '4' });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /appcreds: refused: no access rule allows this/);
  assert.match(result.stdout, /^::error::appcreds token failed \(exit code 4\); its own message is above$/m);
  const state = job.state_();
  assert.equal(state.token, undefined);
  const post = await job.post({});
  assert.equal(post.code, 0);
  assert.match(post.stdout, /^no token to revoke$/m);
  assert.equal(job.argv('revoke'), null);
  assert.ok(!fs.existsSync(path.dirname(state.binary)));
});

test('action.yml declares exactly the inputs the scripts read, and the outputs the CLI writes', () => {
  const yml = fs.readFileSync(path.join(ACTION, '..', 'action.yml'), 'utf8');
  const section = (name) => {
    const start = yml.indexOf(`\n${name}:\n`);
    const end = yml.slice(start + 1).search(/\n\S/);
    return yml.slice(start, start + 1 + end);
  };
  const names = (text) => [...text.matchAll(/^ {2}([a-z-]+):\s*$/gm)].map((m) => m[1]).sort();
  const source = ['lib.js', 'main.js', 'post.js'].map((f) => fs.readFileSync(path.join(ACTION, f), 'utf8')).join('\n');
  const read = new Set([...source.matchAll(/(?:input|booleanInput)\(env, '([a-z-]+)'/g)].map((m) => m[1]));
  for (const target of ['owner', 'repository', 'node-id']) read.add(target); // read through a list
  assert.deepEqual(names(section('inputs')), [...read].sort());
  assert.deepEqual(names(section('outputs')), ['app-slug', 'expires-at', 'installation-id', 'token']);
  assert.match(yml, /\n {2}oidc:\n(?: {4}.*\n)*? {4}default: "true"\n/);
  assert.match(yml, /\n {2}skip-revoke:\n(?: {4}.*\n)*? {4}default: "false"\n/);
  assert.match(yml, /\nruns:\n {2}using: node20\n {2}main: action\/main\.js\n {2}post: action\/post\.js\n/);
});
