'use strict';
// The whole action with real parts: main.js and post.js run as the runner runs them (node, inputs
// in INPUT_*, GITHUB_OUTPUT / GITHUB_STATE files, RUNNER_TEMP), downloading a real tar.gz from a
// loopback HTTP server (through a redirect, as GitHub's release downloads go), and revoking the token
// at that server's DELETE /installation/token (GITHUB_API_URL). The scripts run from a copy of
// action/ whose digests.json holds the digests of this test's own archives. The archive holds a
// stand-in `appcreds`: a shell script that records its arguments and environment and answers as the
// CLI does in Actions (::add-mask::, the four outputs).

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
const REPO = 'octo/appcreds';
const TOKEN = 'ghs_TESTtoken0123456789abcdefghijklmnop';
// The stand-in CLI is a shell script: the whole-action tests run on Linux and macOS.
const supported = ['linux', 'darwin'].includes(process.platform) && ['x64', 'arm64'].includes(process.arch);
const ASSET = supported ? lib.assetName(process.platform, process.arch) : 'unsupported';
const TARGET = ASSET.replace(/^appcreds-/, '').replace(/\.tar\.gz$/, '');
const OTHER_TARGET = Object.values(lib.TARGETS).find((t) => t !== TARGET);
// Every runner there is a build for, as the runner names it (RUNNER_OS, RUNNER_ARCH), its target and executable.
const RUNNERS = [
  ['Linux', 'X64', 'x86_64-unknown-linux-musl', 'appcreds'],
  ['Linux', 'ARM64', 'aarch64-unknown-linux-musl', 'appcreds'],
  ['macOS', 'X64', 'x86_64-apple-darwin', 'appcreds'],
  ['macOS', 'ARM64', 'aarch64-apple-darwin', 'appcreds'],
  ['Windows', 'X64', 'x86_64-pc-windows-msvc', 'appcreds.exe'],
];
const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');

const FAKE_CLI = `#!/bin/sh
# A stand-in for the appcreds CLI: records its arguments and environment, answers like the real one.
set -eu
cmd=
for a in "$@"; do
  case "$a" in token|revoke|git-credential) cmd=$a; break ;; esac
done
: > "$FAKE_RECORD_DIR/$cmd.argv"
for a in "$@"; do printf '%s\\n' "$a" >> "$FAKE_RECORD_DIR/$cmd.argv"; done
env > "$FAKE_RECORD_DIR/$cmd.env"
case "$cmd" in
token)
  if [ "\${FAKE_TOKEN_EXIT:-0}" != 0 ]; then echo "appcreds: refused: no access rule allows this" >&2; exit "$FAKE_TOKEN_EXIT"; fi
  owners=; prev=
  for a in "$@"; do [ "$prev" = --owner ] && owners="$owners $a"; prev=$a; done
  set -- $owners
  if [ $# -gt 1 ]; then
    # Several owners: a token each, FAKE_TOKEN_<owner>, as the CLI writes them (none for FAKE_TOKEN_SKIP).
    kept=
    for o in "$@"; do [ "$o" = "\${FAKE_TOKEN_SKIP:-}" ] || kept="$kept $o"; done
    set -- $kept
    json=
    for o in "$@"; do
      printf '::add-mask::%s_%s\\n' "$FAKE_TOKEN" "$o"
      json="$json\${json:+,}\\"$o\\":\\"\${FAKE_TOKEN}_$o\\""
    done
    printf 'tokens={%s}\\n' "$json" >> "$GITHUB_OUTPUT"
    for o in "$@"; do printf 'token-%s=%s_%s\\n' "$o" "$FAKE_TOKEN" "$o" >> "$GITHUB_OUTPUT"; done
    printf 'app-slug=my-app\\nexpires-at=2026-11-24T16:52:05Z\\n' >> "$GITHUB_OUTPUT"
    for o in "$@"; do printf '%s %s_%s\\n' "$o" "$FAKE_TOKEN" "$o"; done
    exit 0
  fi
  if [ "\${GITHUB_ACTIONS:-}" = true ]; then
    printf '::add-mask::%s\\n' "$FAKE_TOKEN"
    printf 'token=%s\\ninstallation-id=4001\\napp-slug=my-app\\nexpires-at=2026-11-24T16:52:05Z\\n' "$FAKE_TOKEN" >> "$GITHUB_OUTPUT"
  fi
  printf '%s\\n' "$FAKE_TOKEN" ;;
revoke)
  [ -n "\${APPCREDS_TOKEN:-}" ] || { echo "appcreds: --token-env: APPCREDS_TOKEN is not set" >&2; exit 2; }
  if [ "\${FAKE_REVOKE_EXIT:-0}" != 0 ]; then echo "appcreds: GitHub does not accept this token" >&2; exit "$FAKE_REVOKE_EXIT"; fi
  echo revoked ;;
git-credential)
  # As git's helper: answers 'get' (its last argument) with a new token each time, counted.
  for op in "$@"; do :; done
  cat > "$FAKE_RECORD_DIR/git-credential.$op.stdin"
  if [ "$op" = get ]; then
    n=$(( $(cat "$FAKE_RECORD_DIR/git-credential.count" 2>/dev/null || echo 0) + 1 ))
    echo "$n" > "$FAKE_RECORD_DIR/git-credential.count"
    printf 'username=x-access-token\\npassword=ghs_helper%s\\npassword_expiry_utc=%s\\n' "$n" "$(( $(date +%s) + 3600 ))"
    # As the CLI does with a ledger (and a path): the URL git asked for and the token's SHA-256.
    f="$FAKE_RECORD_DIR/git-credential.get.stdin"
    p=$(sed -n 's/^path=//p' "$f")
    if [ -n "\${APPCREDS_GIT_LEDGER:-}" ] && [ -n "$p" ]; then
      mkdir -p -m 700 "$(dirname "$APPCREDS_GIT_LEDGER")"
      h=$(printf 'ghs_helper%s' "$n" | sha256sum | cut -d' ' -f1)
      printf 'https://%s/%s %s\\n' "$(sed -n 's/^host=//p' "$f")" "$p" "$h" >> "$APPCREDS_GIT_LEDGER"
    fi
  fi ;;
*) exit 2 ;;
esac
`;

/** Another build's CLI, as a replaced release asset would hold: it only leaves a mark that it ran. */
const EVIL_CLI = `#!/bin/sh
: > "$FAKE_RECORD_DIR/evil-ran"
printf 'token=ghs_evil\\n' >> "$GITHUB_OUTPUT"
`;

const parseFileCommands = support.parseFileCommands;

let root;
let actionDir;
/** Each runner's archive (v4.0.0), by target. */
const files4 = {};
let server;
let baseUrl;
const requests = [];
/** Every DELETE /installation/token the server saw: method, path and headers. */
const revocations = [];
/** What the server answers to DELETE /installation/token. */
let revokeStatus = 204;

/** Serves `files` (name → bytes) at /objects/NAME, releases that redirect there, and the revoke endpoint. */
function releaseServer(files) {
  const releases = {
    // v1.2.3: the good release, both files behind a redirect.
    'v1.2.3': { [ASSET]: 'good.tar.gz', [`${ASSET}.sha256`]: 'good.sha256' },
    // v6.6.6: replaced after it was built: another archive, with a .sha256 that matches it.
    'v6.6.6': { [ASSET]: 'evil.tar.gz', [`${ASSET}.sha256`]: 'evil.sha256' },
    // v2.0.0: a verified archive without appcreds at its root.
    'v2.0.0': { [ASSET]: 'nested.tar.gz', [`${ASSET}.sha256`]: 'nested.sha256' },
    // v3.0.0: a release this action has no digest for, and without any .sha256.
    'v3.0.0': { [ASSET]: 'good.tar.gz' },
    // v4.0.0: every runner's asset, each holding its own executable.
    'v4.0.0': Object.fromEntries(RUNNERS.map(([, , target]) => [`appcreds-${target}.tar.gz`, `${target}.tar.gz`])),
  };
  return http.createServer((req, res) => {
    requests.push(req.url);
    if (req.url === '/installation/token' || req.method !== 'GET') {
      revocations.push({ method: req.method, path: req.url, headers: req.headers });
      req.resume();
      res.writeHead(req.method === 'DELETE' && req.url === '/installation/token' ? revokeStatus : 404).end();
      return;
    }
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
  const evil = path.join(root, 'evil');
  fs.mkdirSync(evil);
  fs.writeFileSync(path.join(evil, 'appcreds'), EVIL_CLI, { mode: 0o755 });
  execFileSync('tar', ['-czf', path.join(root, 'good.tar.gz'), '-C', build, 'appcreds']);
  execFileSync('tar', ['-czf', path.join(root, 'nested.tar.gz'), '-C', build, 'bin']);
  execFileSync('tar', ['-czf', path.join(root, 'evil.tar.gz'), '-C', evil, 'appcreds']);
  const files = {};
  for (const [, , target, executable] of RUNNERS) {
    const dir = path.join(root, target);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, executable), `the ${target} build`, { mode: 0o755 });
    execFileSync('tar', ['-czf', path.join(root, `${target}.tar.gz`), '-C', dir, executable]);
    files[`${target}.tar.gz`] = fs.readFileSync(path.join(root, `${target}.tar.gz`));
    files4[target] = files[`${target}.tar.gz`];
  }
  for (const name of ['good', 'nested', 'evil']) {
    files[`${name}.tar.gz`] = fs.readFileSync(path.join(root, `${name}.tar.gz`));
    // The checksum files in sha256sum's own format, as the release workflow writes them.
    files[`${name}.sha256`] = execFileSync('sha256sum', [`${name}.tar.gz`], { cwd: root }).toString().replace(`${name}.tar.gz`, ASSET);
  }
  // The action as committed, but with the digests of this test's archives in its digests.json.
  actionDir = path.join(root, 'action');
  fs.mkdirSync(actionDir);
  for (const f of ['lib.js', 'main.js', 'post.js']) fs.copyFileSync(path.join(ACTION, f), path.join(actionDir, f));
  const digests = {
    'v1.2.3': { [TARGET]: sha256(files['good.tar.gz']), [OTHER_TARGET]: sha256('the other runner\'s build') },
    // What v6.6.6 was built as; its release now holds evil.tar.gz.
    'v6.6.6': { [TARGET]: sha256(files['good.tar.gz']) },
    'v2.0.0': { [TARGET]: sha256(files['nested.tar.gz']) },
    // Committed, but never published (404), or published behind a redirect loop.
    'v0.0.1': { [TARGET]: sha256('never published') },
    'v9.9.9': { [TARGET]: sha256('behind a redirect loop') },
  };
  fs.writeFileSync(path.join(actionDir, 'digests.json'), `${JSON.stringify(digests, null, 2)}\n`);
  server = releaseServer(files);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${server.address().port}`;
});

test.after(async () => {
  await new Promise((resolve) => server.close(resolve));
  fs.rmSync(root, { recursive: true, force: true });
});

const runNode = (script, env) => support.runNode(actionDir, script, env);

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
      GITHUB_API_URL: baseUrl,
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

test('owner, scope-down lists and permissions: the exact CLI call, masked token, outputs, state; post revokes over HTTP', opts, async () => {
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

  // The archive came through the redirect; the release's .sha256 is not even read.
  const seen = requests.slice(before);
  assert.ok(seen.includes(`/octo/appcreds/releases/download/v1.2.3/${ASSET}`));
  assert.ok(seen.includes('/objects/good.tar.gz'));
  assert.ok(!seen.some((u) => u.endsWith('.sha256')), 'the release\'s .sha256 is not downloaded');

  assert.deepEqual(job.outputs(), { token: TOKEN, 'installation-id': '4001', 'app-slug': 'my-app', 'expires-at': '2026-11-24T16:52:05Z' });
  const state = job.state_();
  assert.equal(state.token, TOKEN);
  assert.equal(path.dirname(path.dirname(state.binary)), job.temp, 'the CLI is in a directory of its own under RUNNER_TEMP');
  assert.match(path.basename(path.dirname(state.binary)), /^appcreds-/);
  assert.match(fs.readFileSync(job.state, 'utf8'), /^binary<<ghadelimiter_[^\n]+\n[^\n]+\nghadelimiter_[^\n]+\ntoken<<ghadelimiter_/);
  assert.deepEqual(fs.readdirSync(path.dirname(state.binary)), ['appcreds'], 'the archive is not kept');

  const revoked = revocations.length;
  const post = await job.post({});
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.equal(job.argv('revoke'), null, 'post runs no binary');
  assert.equal(revocations.length, revoked + 1);
  const call = revocations.at(-1);
  assert.equal(call.method, 'DELETE');
  assert.equal(call.path, '/installation/token');
  assert.equal(call.headers.authorization, `Bearer ${TOKEN}`);
  assert.match(post.stdout, /^the token is revoked$/m);
  assert.ok(!post.stdout.includes(TOKEN) && !post.stderr.includes(TOKEN), 'post never prints the token');
  assert.ok(!fs.existsSync(path.dirname(state.binary)), 'post removes the downloaded CLI');
});

test('owners: one call for all, a token each in the outputs tokens and token-OWNER, each masked; post revokes each', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '123456', owners: 'octo-org,\noctocat', permissions: 'contents=read' });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.deepEqual(job.argv('token'), ['token', '--app-id', '123456', '--owner', 'octo-org', '--owner', 'octocat', '--permission', 'contents=read']);
  const [org, user] = [`${TOKEN}_octo-org`, `${TOKEN}_octocat`];
  for (const t of [org, user]) {
    const first = result.stdout.indexOf(t);
    assert.equal(result.stdout.slice(first - '::add-mask::'.length, first), '::add-mask::', 'masked before anything shows it');
  }
  const outputs = job.outputs();
  assert.deepEqual(JSON.parse(outputs.tokens), { 'octo-org': org, octocat: user });
  assert.equal(outputs['token-octo-org'], org);
  assert.equal(outputs['token-octocat'], user);
  assert.equal(job.state_().token, `${org}\n${user}`, 'both kept for the post step');

  const revoked = revocations.length;
  const post = await job.post({});
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(revocations.slice(revoked).map((r) => r.headers.authorization), [`Bearer ${org}`, `Bearer ${user}`]);
  assert.equal(post.stdout.match(/^the token is revoked$/gm).length, 2);
  assert.ok(![org, user].some((t) => post.stdout.includes(t) || post.stderr.includes(t)), 'post never prints a token');

  // One owner: the CLI's single call; the action adds the same outputs.
  const one = newJob();
  const single = await one.main({ 'app-id': '123456', owners: 'octo-org' });
  assert.equal(single.code, 0, single.stdout + single.stderr);
  assert.deepEqual(one.argv('token'), ['token', '--app-id', '123456', '--owner', 'octo-org']);
  assert.deepEqual(JSON.parse(one.outputs().tokens), { 'octo-org': TOKEN });
  assert.equal(one.outputs()['token-octo-org'], TOKEN);
  assert.equal(one.state_().token, TOKEN);
});

test('owners: a token missing from the outputs fails the step, and post still revokes the others', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '123456', owners: 'octo-org,octocat,monalisa' }, { FAKE_TOKEN_SKIP: 'octocat' });
  assert.equal(result.code, 1, result.stdout + result.stderr);
  assert.match(result.stdout, /^::error::appcreds token wrote no token for octocat to GITHUB_OUTPUT$/m);
  const [org, lisa] = [`${TOKEN}_octo-org`, `${TOKEN}_monalisa`];
  assert.equal(job.state_().token, `${org}\n${lisa}`, 'the tokens minted are kept for the post step, before the step fails');

  const revoked = revocations.length;
  const post = await job.post({});
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.deepEqual(revocations.slice(revoked).map((r) => r.headers.authorization), [`Bearer ${org}`, `Bearer ${lisa}`]);
  assert.ok(![org, lisa].some((t) => post.stdout.includes(t) || post.stderr.includes(t)), 'post never prints a token');
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

test('a replaced release asset (with a .sha256 that matches it) is refused: its digest is not the committed one', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '7', owner: 'octo-org', version: 'v6.6.6' });
  assert.equal(result.code, 1, result.stdout + result.stderr);
  const committed = JSON.parse(fs.readFileSync(path.join(actionDir, 'digests.json'), 'utf8'))['v6.6.6'][TARGET];
  assert.match(
    result.stdout,
    new RegExp(
      `^::error::checksum mismatch for ${ASSET.replace(/\./g, '\\.')} of v6\\.6\\.6: expected ${committed} ` +
        `\\(committed in this action's action/digests\\.json\\), got [0-9a-f]{64}; not running it`,
      'm'
    )
  );
  assert.ok(!fs.existsSync(path.join(job.records, 'evil-ran')), 'the replaced binary never ran');
  assert.equal(job.argv('token'), null);
  assert.deepEqual(fs.readdirSync(job.temp), [], 'nothing was written under RUNNER_TEMP');
  assert.equal(fs.readFileSync(job.state, 'utf8'), '');
  assert.equal(fs.readFileSync(job.output, 'utf8'), '');
});

test('a version without a committed digest is refused before any download, without the input sha256', opts, async () => {
  const job = newJob();
  const before = requests.length;
  const refused = await job.main({ 'app-id': '7', owner: 'octo-org', version: 'v3.0.0' });
  assert.equal(refused.code, 1, refused.stdout + refused.stderr);
  assert.match(refused.stdout, /^::error::this action has no digest of appcreds v3\.0\.0 for \S+ in its action\/digests\.json: .*give the input sha256/m);
  assert.equal(requests.length, before, 'nothing was downloaded');
  assert.equal(job.argv('token'), null);
});

test('the input sha256 pins a version without a committed digest (its release has no .sha256 at all)', opts, async () => {
  const good = sha256(fs.readFileSync(path.join(root, 'good.tar.gz')));
  // A bare digest, and sha256sum's own lines naming each runner's asset.
  for (const pin of [good, `${sha256('the other runner')}  appcreds-${OTHER_TARGET}.tar.gz\n${good.toUpperCase()} *${ASSET}\n`]) {
    const job = newJob();
    const result = await job.main({ 'app-id': '7', owner: 'octo-org', version: 'v3.0.0', sha256: pin });
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.deepEqual(job.argv('token'), ['token', '--app-id', '7', '--owner', 'octo-org']);
    assert.equal(job.outputs().token, TOKEN);
  }
});

test('a wrong input sha256 is refused, also for a version with a committed digest (the input is authoritative)', opts, async () => {
  const wrong = sha256('not the archive');
  for (const version of ['v3.0.0', 'v1.2.3']) {
    const job = newJob();
    const result = await job.main({ 'app-id': '7', owner: 'octo-org', version, sha256: wrong });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      new RegExp(`^::error::checksum mismatch for ${ASSET.replace(/\./g, '\\.')} of ${version.replace(/\./g, '\\.')}: expected ${wrong} \\(the input sha256\\), got [0-9a-f]{64}; not running it`, 'm')
    );
    assert.equal(job.argv('token'), null);
    assert.deepEqual(fs.readdirSync(job.temp), []);
  }
});

test('an input sha256 that is not a digest, or names no digest for this runner, is refused before any download', opts, async () => {
  const job = newJob();
  const before = requests.length;
  const cases = [
    ['abc', /^::error::input sha256: "abc" is not a SHA-256 digest/m],
    [`${sha256('x')}  appcreds-${OTHER_TARGET}.tar.gz`, new RegExp(`^::error::input sha256 has no digest for ${ASSET.replace(/\./g, '\\.')}`, 'm')],
  ];
  for (const [pin, message] of cases) {
    const result = await job.main({ 'app-id': '7', owner: 'octo-org', version: 'v1.2.3', sha256: pin });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, message);
  }
  assert.equal(requests.length, before, 'nothing was downloaded');
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
    [{ 'app-id': '7' }, /^::error::give exactly one of the inputs owner, owners, repository, node-id or enterprise: the installation to get a token for$/m],
    [{ 'app-id': '7', owner: 'octo-org', repository: 'octo-org/hello-world' }, /^::error::give exactly one of the inputs owner, owners, repository, node-id or enterprise, not owner and repository$/m],
    [{ 'app-id': '7', owner: 'o', repository: 'o/r', 'node-id': 'n' }, /not owner and repository and node-id$/m],
    [{ 'app-id': '7', 'node-id': 'n', enterprise: 'octo-enterprise' }, /^::error::give exactly one of the inputs owner, owners, repository, node-id or enterprise, not node-id and enterprise$/m],
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
  const revoked = revocations.length;
  const post = await job.post({ 'skip-revoke': 'true' });
  assert.equal(post.code, 0);
  assert.equal(revocations.length, revoked, 'nothing was sent to GitHub');
  assert.match(post.stdout, /skip-revoke: the token is left valid until it expires/);
  assert.equal(job.argv('revoke'), null);
  assert.ok(!fs.existsSync(path.dirname(state.binary)), 'the downloaded CLI is removed all the same');
});

test('post never runs the binary: one replaced after the main step does not run, and the token is still revoked', opts, async () => {
  const job = newJob();
  assert.equal((await job.main({ 'app-id': '7', owner: 'octo-org' })).code, 0);
  const binary = job.state_().binary;
  // A later step of the job swaps the downloaded CLI for something of its own.
  fs.writeFileSync(binary, `#!/bin/sh\n: > "$FAKE_RECORD_DIR/replaced-ran"\n`, { mode: 0o755 });
  const revoked = revocations.length;
  const post = await job.post({});
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.ok(!fs.existsSync(path.join(job.records, 'replaced-ran')), 'the replaced binary did not run');
  assert.equal(revocations.length, revoked + 1);
  assert.deepEqual(
    [revocations.at(-1).method, revocations.at(-1).path, revocations.at(-1).headers.authorization],
    ['DELETE', '/installation/token', `Bearer ${TOKEN}`]
  );
  assert.ok(!fs.existsSync(path.dirname(binary)), 'the downloaded CLI is removed');

  // Removed altogether: revoked all the same.
  const job2 = newJob();
  assert.equal((await job2.main({ 'app-id': '7', owner: 'octo-org' })).code, 0);
  fs.rmSync(path.dirname(job2.state_().binary), { recursive: true });
  const post2 = await job2.post({});
  assert.equal(post2.code, 0);
  assert.equal(revocations.length, revoked + 2);
  assert.match(post2.stdout, /^the token is revoked$/m);
});

test('a failed revoke is a warning, not a failure, and never shows the token', opts, async () => {
  const job = newJob();
  assert.equal((await job.main({ 'app-id': '7', owner: 'octo-org' })).code, 0);
  try {
    revokeStatus = 401;
    const post = await job.post({});
    assert.equal(post.code, 0);
    assert.match(post.stdout, /^::warning::GitHub does not accept the token \(already revoked or expired\)$/m);
    assert.ok(!post.stdout.includes(TOKEN) && !post.stderr.includes(TOKEN));
    revokeStatus = 500;
    const again = await job.post({});
    assert.match(again.stdout, /^::warning::revoking the token failed: GitHub answered HTTP 500; it stays valid until it expires$/m);
    assert.ok(!again.stdout.includes(TOKEN) && !again.stderr.includes(TOKEN));
  } finally {
    revokeStatus = 204;
  }
  // Nothing listens there: a warning, without the token.
  const closed = http.createServer();
  await new Promise((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = closed.address().port;
  await new Promise((resolve) => closed.close(resolve));
  const job2 = newJob();
  assert.equal((await job2.main({ 'app-id': '7', owner: 'octo-org' })).code, 0);
  const down = await job2.post({}, { GITHUB_API_URL: `http://127.0.0.1:${port}` });
  assert.equal(down.code, 0);
  assert.match(down.stdout, /^::warning::revoking the token failed: .*ECONNREFUSED.*; it stays valid until it expires$/m);
  assert.ok(!down.stdout.includes(TOKEN) && !down.stderr.includes(TOKEN));
});

test('post sends the token only to an https GITHUB_API_URL (GitHub Enterprise Server: its /api/v3)', opts, async () => {
  const job = newJob();
  assert.equal((await job.main({ 'app-id': '7', owner: 'octo-org' })).code, 0);
  const revoked = revocations.length;
  for (const url of ['http://api.github.example', 'ftp://127.0.0.1:1', 'not a url']) {
    const post = await job.post({}, { GITHUB_API_URL: url });
    assert.equal(post.code, 0);
    assert.match(post.stdout, /^::warning::GITHUB_API_URL .* is not an https URL: the token was not revoked; it stays valid until it expires$/m);
    assert.ok(!post.stdout.includes(TOKEN) && !post.stderr.includes(TOKEN));
  }
  assert.equal(revocations.length, revoked);
  assert.equal(lib.apiUrl({}), 'https://api.github.com');
  assert.equal(lib.apiUrl({ GITHUB_API_URL: 'https://ghe.example.com/api/v3/' }), 'https://ghe.example.com/api/v3');
});

test('the CLI refuses: the step fails with its exit code, post has nothing to revoke', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '7', owner: 'octo-org' }, { FAKE_TOKEN_EXIT: '4' });
  assert.equal(result.code, 1);
  assert.match(result.stderr, /appcreds: refused: no access rule allows this/);
  assert.match(result.stdout, /^::error::appcreds token failed \(exit code 4\); its own message is above$/m);
  const state = job.state_();
  assert.equal(state.token, undefined);
  const revoked = revocations.length;
  const post = await job.post({});
  assert.equal(post.code, 0);
  assert.match(post.stdout, /^no token to revoke$/m);
  assert.equal(revocations.length, revoked, 'nothing was sent to GitHub');
  assert.equal(job.argv('revoke'), null);
  assert.ok(!fs.existsSync(path.dirname(state.binary)));
});

test('enterprise: the installation on an enterprise, by its slug', opts, async () => {
  const job = newJob();
  const result = await job.main({ 'app-id': '7', enterprise: 'octo-enterprise' });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.deepEqual(job.argv('token'), ['token', '--app-id', '7', '--enterprise', 'octo-enterprise']);
  assertMaskedFirst(result);
});

test('each runner OS and architecture downloads its own asset and unpacks the executable in it', async () => {
  // The input sha256 in sha256sum's form, one line per asset: each runner picks its own line.
  const pins = RUNNERS.map(([, , target]) => `${sha256(files4[target])}  appcreds-${target}.tar.gz`).join('\n');
  for (const [runnerOs, runnerArch, target, executable] of RUNNERS) {
    const job = newJob();
    const env = { ...job.env({ sha256: pins, version: 'v4.0.0' }), RUNNER_OS: runnerOs, RUNNER_ARCH: runnerArch };
    const before = requests.length;
    // Node's own platform and architecture say otherwise: the runner's variables decide.
    const { binary, digest } = await lib.installCli(env, 'linux', 'riscv64');
    assert.deepEqual(requests.slice(before), [`/octo/appcreds/releases/download/v4.0.0/appcreds-${target}.tar.gz`, `/objects/${target}.tar.gz`]);
    assert.equal(digest, sha256(files4[target]));
    assert.equal(path.basename(binary), executable);
    assert.equal(path.dirname(path.dirname(binary)), job.temp);
    assert.equal(fs.readFileSync(binary, 'utf8'), `the ${target} build`);
    assert.deepEqual(fs.readdirSync(path.dirname(binary)), [executable], 'only the executable is kept');
  }
});

test('a runner without a build (Windows ARM64, Linux ARM, Linux X86) is refused before any download', async () => {
  for (const [runnerOs, runnerArch] of [['Windows', 'ARM64'], ['Linux', 'ARM'], ['Linux', 'X86']]) {
    const job = newJob();
    const before = requests.length;
    const result = await job.main({ 'app-id': '7', owner: 'octo-org' }, { RUNNER_OS: runnerOs, RUNNER_ARCH: runnerArch });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(
      result.stdout,
      new RegExp(
        `^::error::appcreds has no build for ${runnerOs} ${runnerArch} runners: its releases have the CLI for Linux X64 and ARM64 \\(static\\), ` +
          'macOS X64 and ARM64, and Windows X64\\. Run the job on one of those, or build the CLI yourself',
        'm'
      )
    );
    assert.equal(requests.length, before, 'nothing was downloaded');
    assert.deepEqual(fs.readdirSync(job.temp), []);
    assert.equal(fs.readFileSync(job.state, 'utf8'), '');
  }
});

test('action.yml declares exactly the inputs the scripts read, and the outputs the CLI writes', () => {
  const yml = fs.readFileSync(path.join(ACTION, '..', 'action.yml'), 'utf8');
  const section = (name) => {
    const start = yml.indexOf(`\n${name}:\n`);
    const end = yml.slice(start + 1).search(/\n\S/);
    return yml.slice(start, start + 1 + end);
  };
  const names = (text) => [...text.matchAll(/^ {2}([a-z0-9-]+):\s*$/gm)].map((m) => m[1]).sort();
  const source = ['lib.js', 'main.js', 'post.js'].map((f) => fs.readFileSync(path.join(ACTION, f), 'utf8')).join('\n');
  const read = new Set([...source.matchAll(/(?:input|booleanInput)\(env, '([a-z0-9-]+)'/g)].map((m) => m[1]));
  for (const target of ['owner', 'owners', 'repository', 'node-id', 'enterprise']) read.add(target); // read through a list
  assert.deepEqual(names(section('inputs')), [...read].sort());
  assert.ok(read.has('sha256'), 'the input sha256 is read');
  assert.deepEqual(names(section('outputs')), ['app-slug', 'expires-at', 'installation-id', 'token', 'tokens']);
  assert.match(yml, /\n {2}oidc:\n(?: {4}.*\n)*? {4}default: "true"\n/);
  assert.match(yml, /\n {2}skip-revoke:\n(?: {4}.*\n)*? {4}default: "false"\n/);
  // Every value is one line, a plain or double-quoted scalar: a double quote inside one would end it
  // (the runner could not load action.yml), so the quoted ones are checked to be whole.
  for (const line of yml.split('\n').filter((l) => /^\s+(description|default|required|using|main|post): /.test(l))) {
    const value = line.replace(/^\s+[a-z]+: /, '');
    assert.match(value, /^(?:"(?:[^"\\]|\\.)*"|[^"'#\s][^#]*)$/, `a YAML scalar: ${line}`);
  }
  assert.match(yml, /\nruns:\n {2}using: node24\n {2}main: action\/main\.js\n {2}post: action\/post\.js\n/);
  // Each target input says the same rule.
  for (const target of ['owner', 'owners', 'repository', 'node-id', 'enterprise']) {
    assert.match(yml, new RegExp(`\\n {2}${target}:\\n {4}description: ".*Give exactly one of owner, owners, repository, node-id, enterprise\\."\\n`), target);
  }
});

/** For the git-credential tests: a HOME with the job's own global config, and the job's GITHUB_ENV file. */
function gitJob() {
  const job = newJob();
  const home = path.join(job.dir, 'home');
  fs.mkdirSync(home);
  // The job's own global config, with a helper of its own for the host, which the action's empty
  // helper entry makes git pass over within the job (else `store` would write ~/.git-credentials).
  const own = '[user]\n\tname = Octo Cat\n[credential "https://github.com"]\n\thelper = store\n';
  fs.writeFileSync(path.join(home, '.gitconfig'), own);
  const envFile = path.join(job.dir, 'github-env');
  fs.writeFileSync(envFile, '');
  const gitEnv = { HOME: home, GIT_CONFIG_NOSYSTEM: '1', GIT_TERMINAL_PROMPT: '0', GITHUB_ENV: envFile };
  /** What the later steps' environment gets from GITHUB_ENV. */
  const jobEnv = () => parseFileCommands(fs.readFileSync(envFile, 'utf8'));
  return { job, home, own, envFile, gitEnv, jobEnv };
}

test('git-credential: later steps of the job (only) ask the CLI (role-arn and all), through its cache; no git config file is touched; post revokes, stops the cache, removes the CLI', opts, async () => {
  const { job, home, own, gitEnv, jobEnv } = gitJob();
  // The job already has a -c style entry of its own: it is kept, and the action's come after it.
  const earlier = { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: 'user.email', GIT_CONFIG_VALUE_0: 'octocat@example.com' };
  const git = (args, extra, input) => execFileSync('git', args, { env: job.env({}, { ...gitEnv, ...extra }), input, encoding: 'utf8' });
  const role = 'arn:aws:iam::123456789012:role/appcreds-GitHubActionsCallerRole-X1';
  const inputs = {
    'app-id': '7', repository: 'octo-org/hello-world', permissions: 'contents=write',
    region: 'eu-west-1', 'role-arn': role, 'git-credential': 'true',
  };
  const result = await job.main(inputs, { ...gitEnv, ...earlier });
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.match(result.stdout, /^git asks appcreds for https:\/\/github\.com in the later steps of this job, with git's credential-cache in front$/m);
  assert.deepEqual(job.argv('token').slice(0, 3), ['--role-arn', role, 'token']);
  assert.equal(fs.readFileSync(path.join(home, '.gitconfig'), 'utf8'), own, 'no git config file is written');
  const binary = job.state_().binary;
  const socket = path.join(path.dirname(binary), 'git-cache', 'socket');
  assert.equal(job.state_().gitCache, socket);
  const ledger = path.join(path.dirname(socket), 'ledger');
  const helper = `!APPCREDS_GIT_LEDGER='${ledger}' AWS_REGION='eu-west-1' AWS_DEFAULT_REGION='eu-west-1' '${binary}' '--role-arn' '${role}' 'git-credential' '--app-id' '7' '--owner' 'octo-org' '--permission' 'contents=write'`;
  assert.deepEqual(jobEnv(), {
    GIT_CONFIG_KEY_1: 'credential.https://github.com.useHttpPath', GIT_CONFIG_VALUE_1: 'true',
    GIT_CONFIG_KEY_2: 'credential.https://github.com.helper', GIT_CONFIG_VALUE_2: '',
    GIT_CONFIG_KEY_3: 'credential.https://github.com.helper', GIT_CONFIG_VALUE_3: `cache --timeout=3600 --socket='${socket}'`,
    GIT_CONFIG_KEY_4: 'credential.https://github.com.helper', GIT_CONFIG_VALUE_4: helper,
    GIT_CONFIG_COUNT: '5',
  });

  // A later step: the job's environment (what it had, and what GITHUB_ENV adds).
  const step = { ...earlier, ...jobEnv() };
  assert.deepEqual(git(['config', '--get-all', 'credential.https://github.com.helper'], step).split('\n').slice(0, -1), [
    'store', '', `cache --timeout=3600 --socket='${socket}'`, helper,
  ]);
  assert.equal(git(['config', 'user.email'], step), 'octocat@example.com\n', 'the job\'s own entry is kept');
  // Outside the job (another job on this runner, the same HOME): git knows nothing of appcreds.
  assert.equal(git(['config', '--get-all', 'credential.https://github.com.helper'], {}), 'store\n');

  // The later step's git: the helper mints, git's cache keeps the token once git approves it.
  const ask = 'protocol=https\nhost=github.com\npath=octo-org/hello-world.git\n\n';
  const filled = git(['credential', 'fill'], step, ask);
  assert.match(filled, /^username=x-access-token$/m);
  assert.match(filled, /^password=ghs_helper1$/m);
  assert.deepEqual(job.argv('git-credential'), [
    '--role-arn', role, 'git-credential', '--app-id', '7', '--owner', 'octo-org', '--permission', 'contents=write', 'get',
  ]);
  assert.equal(job.cliEnv('git-credential').AWS_REGION, 'eu-west-1');
  assert.match(fs.readFileSync(path.join(job.records, 'git-credential.get.stdin'), 'utf8'), /^path=octo-org\/hello-world\.git$/m);
  git(['credential', 'approve'], step, filled);
  assert.match(git(['credential', 'fill'], step, ask), /^password=ghs_helper1$/m, 'from the cache');
  assert.equal(fs.readFileSync(path.join(job.records, 'git-credential.count'), 'utf8'), '1\n', 'the CLI was asked once');
  assert.ok(fs.existsSync(socket), 'the cache listens on the step\'s own socket');
  assert.ok(!fs.existsSync(path.join(home, '.git-credentials')), 'the job\'s own helper was not asked within the job');
  const sha256 = (text) => crypto.createHash('sha256').update(text).digest('hex');
  const url = 'https://github.com/octo-org/hello-world.git';
  assert.equal(fs.readFileSync(ledger, 'utf8'), `${url} ${sha256('ghs_helper1')}\n`, 'the URL asked and a hash, not the token');
  // A later step stores a token of its own in the cache (the job's GITHUB_TOKEN, say) and writes
  // to the ledger: the cache gives it back, but its hash is none the helper recorded; a line that
  // is no URL and hash is passed over; the same line twice is asked once.
  const docs = 'protocol=https\nhost=github.com\npath=octo-org/docs\nusername=x-access-token\npassword=ghs_not_the_helpers\n\n';
  execFileSync('git', ['credential-cache', `--socket=${socket}`, 'store'], { input: docs, env: job.env({}, gitEnv) });
  fs.appendFileSync(ledger, `nonsense\n${url} ${sha256('ghs_helper1')}\nhttps://github.com/octo-org/docs ${sha256('ghs_other')}\n`);
  // A token of the helper's the cache still holds past its expiry (used, so stored again): not sent.
  const past = Math.floor(Date.now() / 1000) - 60;
  const expired = `protocol=https\nhost=github.com\npath=octo-org/old\nusername=x-access-token\npassword=ghs_expired\npassword_expiry_utc=${past}\n\n`;
  execFileSync('git', ['credential-cache', `--socket=${socket}`, 'store'], { input: expired, env: job.env({}, gitEnv) });
  fs.appendFileSync(ledger, `https://github.com/octo-org/old ${sha256('ghs_expired')}\n`);

  const revoked = revocations.length;
  const post = await job.post(inputs, { ...gitEnv, ...step });
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.ok(!post.stdout.includes('::warning::'), post.stdout);
  assert.deepEqual(revocations.slice(revoked).map((r) => r.headers.authorization), [`Bearer ${TOKEN}`, 'Bearer ghs_helper1']);
  const revokedAt = post.stdout.indexOf('the token is revoked');
  const cachedAt = post.stdout.indexOf("1 of the 1 tokens git's credential-cache held revoked");
  const stoppedAt = post.stdout.indexOf("git's credential-cache for this job is stopped");
  assert.ok(revokedAt >= 0 && cachedAt > revokedAt && stoppedAt > cachedAt, `revoked, git's revoked, then the cache stopped: ${post.stdout}`);
  assert.ok(!post.stdout.includes('ghs_helper1'), 'no token in the log');
  assert.equal(fs.readFileSync(path.join(home, '.gitconfig'), 'utf8'), own, 'still untouched');
  assert.ok(!fs.existsSync(path.join(home, '.git-credentials')));
  assert.ok(!fs.existsSync(path.dirname(binary)), 'then the downloaded CLI is removed');
  const daemons = () => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(socket));
  for (let i = 0; i < 50 && daemons().length; i++) await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(daemons(), [], 'the cache daemon is gone, and the tokens it held');
});

test("git-credential: with skip-revoke post leaves git's tokens valid; a revocation GitHub fails is a warning without the token", opts, async () => {
  for (const skip of [true, false]) {
    const { job, gitEnv, jobEnv } = gitJob();
    const git = (args, extra, input) => execFileSync('git', args, { env: job.env({}, { ...gitEnv, ...extra }), input, encoding: 'utf8' });
    const inputs = { 'app-id': '7', owner: 'octo-org', 'git-credential': 'true', 'skip-token': 'true', 'skip-revoke': String(skip) };
    const result = await job.main(inputs, gitEnv);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const step = jobEnv();
    const filled = git(['credential', 'fill'], step, 'protocol=https\nhost=github.com\npath=octo-org/docs\n\n');
    git(['credential', 'approve'], step, filled);
    const revoked = revocations.length;
    revokeStatus = 500;
    let post;
    try {
      post = await job.post(inputs, { ...gitEnv, ...step });
    } finally {
      revokeStatus = 204;
    }
    assert.equal(post.code, 0, post.stdout + post.stderr);
    assert.match(post.stdout, /git's credential-cache for this job is stopped/);
    assert.ok(!post.stdout.includes('ghs_helper1'), post.stdout);
    if (skip) {
      assert.equal(revocations.length, revoked, 'nothing was sent to GitHub');
    } else {
      assert.deepEqual(revocations.slice(revoked).map((r) => r.headers.authorization), ['Bearer ghs_helper1']);
      assert.match(post.stdout, /^::warning::git's credential-cache: revoking the token failed: GitHub answered HTTP 500/m);
      assert.match(post.stdout, /^0 of the 1 tokens git's credential-cache held revoked$/m);
    }
  }
});

test('git-credential: when configuring git fails (a bad GIT_CONFIG_COUNT, git older than 2.31, no git), the token is still revoked by post', opts, async () => {
  // A git that is too old, and a PATH with no git at all (but what the stand-in CLI runs).
  const bins = fs.mkdtempSync(path.join(root, 'bins-'));
  const oldGit = path.join(bins, 'old');
  fs.mkdirSync(oldGit);
  fs.writeFileSync(path.join(oldGit, 'git'), '#!/bin/sh\necho "git version 2.30.9"\n', { mode: 0o755 });
  const noGit = path.join(bins, 'none');
  fs.mkdirSync(noGit);
  for (const tool of ['sh', 'env', 'cat', 'date']) {
    const found = execFileSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).trim();
    fs.symlinkSync(found, path.join(noGit, tool));
  }
  const cases = [
    [{ GIT_CONFIG_COUNT: 'two' }, /^::error::GIT_CONFIG_COUNT is "two", not a number: git-credential cannot add to it$/m],
    [{ PATH: `${oldGit}:${process.env.PATH}` }, /^::error::git-credential needs git 2\.31 or later \(it reads GIT_CONFIG_COUNT\); this runner's git is 2\.30$/m],
    [{ PATH: noGit }, /^::error::git-credential needs git: no git on PATH$/m],
  ];
  for (const [extra, message] of cases) {
    const { job, gitEnv, jobEnv } = gitJob();
    const inputs = { 'app-id': '7', owner: 'octo-org', 'git-credential': 'true' };
    const result = await job.main(inputs, { ...gitEnv, ...extra });
    assert.equal(result.code, 1, result.stdout + result.stderr);
    assert.match(result.stdout, message);
    assert.deepEqual(jobEnv(), {}, 'git is not configured');
    assert.equal(job.state_().token, TOKEN, 'the token is kept for the post step');
    const revoked = revocations.length;
    const post = await job.post(inputs, gitEnv);
    assert.equal(post.code, 0, post.stdout + post.stderr);
    assert.deepEqual(revocations.slice(revoked).map((r) => r.headers.authorization), [`Bearer ${TOKEN}`], JSON.stringify(extra));
    assert.ok(!fs.existsSync(path.dirname(job.state_().binary)), 'the CLI is removed');
  }
});

test('git-credential without a GITHUB_STATE or GITHUB_ENV configures nothing; a bad role-arn is refused before any download', opts, async () => {
  const { job, home, own, gitEnv, jobEnv } = gitJob();
  const before = requests.length;
  for (const [extra, message] of [
    [{ GITHUB_STATE: '' }, /::error::GITHUB_STATE is not set: the post step could not stop git's credential-cache/],
    [{ GITHUB_ENV: '' }, /::error::GITHUB_ENV is not set: git-credential configures git for the later steps through it/],
  ]) {
    const result = await job.main({ 'app-id': '7', owner: 'octo-org', 'git-credential': 'true' }, { ...gitEnv, ...extra });
    assert.equal(result.code, 1);
    assert.match(result.stdout, message);
  }
  assert.deepEqual(jobEnv(), {});
  assert.equal(fs.readFileSync(path.join(home, '.gitconfig'), 'utf8'), own);
  const bad = await job.main({ 'app-id': '7', owner: 'octo-org', 'role-arn': 'appcreds-role' }, gitEnv);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /::error::input role-arn: "appcreds-role" is not an IAM role ARN/);
  assert.equal(requests.length, before, 'nothing was downloaded');
});

test('skip-token with git-credential: only the helper, no token of the step (no outputs, nothing to revoke); skip-token alone is refused', opts, async () => {
  const { job, gitEnv, jobEnv } = gitJob();
  const inputs = { 'app-id': '7', owner: 'octo-org', 'git-credential': 'true', 'skip-token': 'true' };
  const result = await job.main(inputs, gitEnv);
  assert.equal(result.code, 0, result.stdout + result.stderr);
  assert.ok(!fs.existsSync(path.join(job.records, 'token.argv')), 'appcreds token never ran');
  assert.deepEqual(job.outputs(), {});
  assert.equal(job.state_().token, undefined);
  assert.equal(jobEnv().GIT_CONFIG_COUNT, '4');
  assert.match(jobEnv().GIT_CONFIG_VALUE_3, /'git-credential' '--app-id' '7' '--owner' 'octo-org'$/);
  const revoked = revocations.length;
  const post = await job.post(inputs, { ...gitEnv, ...jobEnv() });
  assert.equal(post.code, 0, post.stdout + post.stderr);
  assert.match(post.stdout, /^no token to revoke$/m);
  assert.equal(revocations.length, revoked);
  assert.ok(!fs.existsSync(path.dirname(job.state_().binary)));

  const before = requests.length;
  const alone = await newJob().main({ 'app-id': '7', owner: 'octo-org', 'skip-token': 'true' }, gitEnv);
  assert.equal(alone.code, 1);
  assert.match(alone.stdout, /^::error::skip-token needs git-credential/m);
  assert.equal(requests.length, before, 'refused before any download');
});
