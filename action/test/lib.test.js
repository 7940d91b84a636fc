'use strict';
// Unit tests of action/lib.js: the pieces whose every case is cheaper to check here than through
// a whole run of the action (action.test.js runs the whole action).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const lib = require('../lib.js');

test('the release asset for each runner', () => {
  assert.equal(lib.assetName('linux', 'x64'), 'appcreds-x86_64-unknown-linux-gnu.tar.gz');
  assert.equal(lib.assetName('linux', 'arm64'), 'appcreds-aarch64-unknown-linux-gnu.tar.gz');
  for (const [platform, arch] of [['darwin', 'arm64'], ['win32', 'x64'], ['linux', 'ia32'], ['linux', 'riscv64']]) {
    assert.throws(() => lib.assetName(platform, arch), (err) => {
      assert.ok(err instanceof lib.ActionError);
      assert.match(err.message, new RegExp(`Linux on x64 and arm64 runners only, not ${platform}/${arch}`));
      return true;
    });
  }
});

test('inputs are read as the runner passes them: INPUT_<NAME>, hyphens kept, trimmed', () => {
  const env = { 'INPUT_APP-ID': ' 42 \n', INPUT_OWNER: '', 'INPUT_SKIP-REVOKE': 'TRUE' };
  assert.equal(lib.input(env, 'app-id'), '42');
  assert.equal(lib.input(env, 'owner', 'fallback'), 'fallback');
  assert.equal(lib.input(env, 'node-id'), '');
  assert.equal(lib.booleanInput(env, 'skip-revoke', false), true);
  assert.equal(lib.booleanInput({}, 'oidc', true), true);
  assert.equal(lib.booleanInput({ INPUT_OIDC: 'False' }, 'oidc', true), false);
  assert.throws(() => lib.booleanInput({ INPUT_OIDC: 'no' }, 'oidc', true), /input oidc must be true or false, not "no"/);
});

test('lists split on commas, newlines and spaces; blanks are dropped', () => {
  assert.deepEqual(lib.list('contents=read\n issues=write,\n\nmetadata=read ,'), ['contents=read', 'issues=write', 'metadata=read']);
  assert.deepEqual(lib.list(''), []);
  assert.deepEqual(lib.list(' , \n'), []);
});

test('the CLI arguments for each kind of target and each option', () => {
  const base = { 'INPUT_APP-ID': '123456' };
  assert.deepEqual(lib.tokenInvocation({ ...base, INPUT_OWNER: 'octo-org' }), {
    args: ['token', '--app-id', '123456', '--owner', 'octo-org'],
    extraEnv: { GITHUB_ACTIONS: 'true' },
  });
  assert.deepEqual(lib.tokenInvocation({ ...base, INPUT_REPOSITORY: 'octo-org/hello-world', INPUT_OIDC: 'false' }).args, [
    '--no-github-oidc', 'token', '--app-id', '123456', '--repository', 'octo-org/hello-world',
  ]);
  const all = lib.tokenInvocation({
    ...base,
    'INPUT_NODE-ID': 'O_kgDOABCD',
    INPUT_STACK: 'appcreds',
    'INPUT_INSTALLATION-TOKEN-URL': 'https://abc.lambda-url.eu-west-1.on.aws/',
    'INPUT_OIDC-AUDIENCE': 'appcreds-123',
    INPUT_REGION: 'eu-west-1',
    'INPUT_REPOSITORY-IDS': '1\n2',
    INPUT_REPOSITORIES: 'hello-world, docs',
    INPUT_PERMISSIONS: 'contents=read\npull_requests=write',
  });
  assert.deepEqual(all.args, [
    '--stack', 'appcreds',
    '--installation-token-url', 'https://abc.lambda-url.eu-west-1.on.aws/',
    '--github-oidc-audience', 'appcreds-123',
    'token', '--app-id', '123456', '--node-id', 'O_kgDOABCD',
    '--repository-ids', '1,2',
    '--repositories', 'hello-world,docs',
    '--permission', 'contents=read', '--permission', 'pull_requests=write',
  ]);
  assert.deepEqual(all.extraEnv, { GITHUB_ACTIONS: 'true', AWS_REGION: 'eu-west-1', AWS_DEFAULT_REGION: 'eu-west-1' });
});

test('bad inputs are refused with the input named', () => {
  const cases = [
    [{}, /the input app-id is required/],
    [{ 'INPUT_APP-ID': '0', INPUT_OWNER: 'o' }, /input app-id: "0" is not a GitHub App ID/],
    [{ 'INPUT_APP-ID': '12x', INPUT_OWNER: 'o' }, /input app-id: "12x"/],
    [{ 'INPUT_APP-ID': '1' }, /give exactly one of the inputs owner, repository or node-id: the installation/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', 'INPUT_NODE-ID': 'n' }, /not owner and node-id/],
    [{ 'INPUT_APP-ID': '1', INPUT_REPOSITORY: 'hello-world' }, /input repository: "hello-world" is not owner\/name/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', 'INPUT_REPOSITORY-IDS': '1,abc' }, /input repository-ids: "abc"/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_PERMISSIONS: 'contents:read' }, /input permissions: "contents:read" is not name=level/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_PERMISSIONS: 'contents=none' }, /"contents=none"/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_REGION: 'Europe' }, /input region: "Europe" is not an AWS region/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_OIDC: 'yes' }, /input oidc must be true or false/],
  ];
  for (const [env, message] of cases) {
    assert.throws(() => lib.tokenInvocation(env), (err) => err instanceof lib.ActionError && message.test(err.message), JSON.stringify(env));
  }
});

test('the release: the version input, else the action ref when it is a version tag', () => {
  assert.equal(lib.releaseVersion({ INPUT_VERSION: 'v2.0.0', GITHUB_ACTION_REF: 'v1.0.0' }), 'v2.0.0');
  assert.equal(lib.releaseVersion({ GITHUB_ACTION_REF: 'v1.2.3' }), 'v1.2.3');
  assert.equal(lib.releaseVersion({ GITHUB_ACTION_REF: 'v1' }), 'v1');
  for (const ref of ['main', 'a'.repeat(40), '', undefined]) {
    assert.throws(() => lib.releaseVersion({ GITHUB_ACTION_REF: ref }), /give the input version \(a release tag of appcreds/);
  }
  assert.throws(() => lib.releaseVersion({ INPUT_VERSION: '../../x' }), /input version: "..\/..\/x" is not a tag name/);

  assert.equal(lib.releaseRepository({ GITHUB_ACTION_REPOSITORY: 'octo/appcreds' }), 'octo/appcreds');
  assert.equal(lib.releaseRepository({ 'INPUT_RELEASE-REPOSITORY': 'me/fork', GITHUB_ACTION_REPOSITORY: 'octo/appcreds' }), 'me/fork');
  assert.throws(() => lib.releaseRepository({}), /give the input release-repository/);
  assert.throws(() => lib.releaseRepository({ 'INPUT_RELEASE-REPOSITORY': 'https://x/y/z' }), /is not owner\/name/);

  assert.equal(
    lib.assetUrl({}, 'octo/appcreds', 'v1.2.3', 'appcreds-x86_64-unknown-linux-gnu.tar.gz'),
    'https://github.com/octo/appcreds/releases/download/v1.2.3/appcreds-x86_64-unknown-linux-gnu.tar.gz'
  );
  assert.equal(
    lib.assetUrl({ APPCREDS_RELEASE_BASE_URL: 'http://127.0.0.1:8080/' }, 'o/r', 'v1', 'a.tar.gz'),
    'http://127.0.0.1:8080/o/r/releases/download/v1/a.tar.gz'
  );
  // A job's environment cannot send the download anywhere but GitHub (the hook is for loopback tests).
  for (const elsewhere of ['https://evil.example', 'http://10.0.0.1:80', 'http://127.0.0.1.evil.example:80']) {
    assert.throws(() => lib.assetUrl({ APPCREDS_RELEASE_BASE_URL: elsewhere }, 'o/r', 'v1', 'a'), /for the tests only/);
  }
});

test('digests.json: each version tag maps runner targets to the SHA-256 of their archive, checked strictly', () => {
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  const text = JSON.stringify({ 'v1.2.3': { 'x86_64-unknown-linux-gnu': a, 'aarch64-unknown-linux-gnu': b }, 'v1.3.0-rc.1': { 'x86_64-unknown-linux-gnu': b } });
  assert.deepEqual(lib.parseDigests(text), JSON.parse(text));
  assert.deepEqual(lib.parseDigests('{}\n'), {});
  const bad = [
    ['', /is not JSON/],
    ['[]', /is not an object/],
    [JSON.stringify({ main: { 'x86_64-unknown-linux-gnu': a } }), /"main" is not a version tag/],
    [JSON.stringify({ 'v1.2.3': {} }), /v1\.2\.3 has no digest/],
    [JSON.stringify({ 'v1.2.3': a }), /v1\.2\.3 is not an object/],
    [JSON.stringify({ 'v1.2.3': { 'x86_64-apple-darwin': a } }), /v1\.2\.3: "x86_64-apple-darwin" is not a target appcreds is released for/],
    [JSON.stringify({ 'v1.2.3': { 'x86_64-unknown-linux-gnu': a.toUpperCase() } }), /v1\.2\.3 x86_64-unknown-linux-gnu: "A{64}" is not a SHA-256 digest \(64 lower-case hex digits\)/],
    [JSON.stringify({ 'v1.2.3': { 'x86_64-unknown-linux-gnu': 'a'.repeat(63) } }), /is not a SHA-256 digest/],
  ];
  for (const [textOf, message] of bad) {
    assert.throws(() => lib.parseDigests(textOf), (err) => err instanceof lib.ActionError && /^action\/digests\.json/.test(err.message) && message.test(err.message), textOf);
  }
});

test('the committed action/digests.json is valid', () => {
  const digests = lib.loadDigests();
  for (const version of Object.keys(digests)) assert.match(version, /^v\d/);
  assert.deepEqual(lib.loadDigests(path.join(__dirname, '..', 'digests.json')), digests);
});

test('the input sha256: one digest, or sha256sum lines naming the assets', () => {
  const asset = 'appcreds-x86_64-unknown-linux-gnu.tar.gz';
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  assert.equal(lib.pinnedDigest('', asset), null);
  assert.equal(lib.pinnedDigest(a, asset), a);
  assert.equal(lib.pinnedDigest(`  ${a.toUpperCase()}\n`, asset), a);
  assert.equal(lib.pinnedDigest(`${b}  appcreds-aarch64-unknown-linux-gnu.tar.gz\n${a} *${asset}\n`, asset), a);
  assert.equal(lib.pinnedDigest(`${a}  ${asset}`, asset), a);
  const bad = [
    ['abc', /^input sha256: "abc" is not a SHA-256 digest/],
    [`${a}  ${asset} extra`, /is not a SHA-256 digest/],
    [`${b}  appcreds-aarch64-unknown-linux-gnu.tar.gz`, /^input sha256 has no digest for appcreds-x86_64-unknown-linux-gnu\.tar\.gz/],
    [`${a}\n${b}`, /^input sha256: give one digest, or sha256sum lines that name each asset/],
    [`${a}  ${asset}\n${b}  ${asset}`, /^input sha256 has two digests for appcreds-x86_64/],
  ];
  for (const [value, message] of bad) {
    assert.throws(() => lib.pinnedDigest(value, asset), (err) => err instanceof lib.ActionError && message.test(err.message), value);
  }
});

test('the expected digest: the input sha256 if given, else the one committed for the version; else refused', () => {
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  const digests = { 'v1.2.3': { 'x86_64-unknown-linux-gnu': a } };
  const target = 'x86_64-unknown-linux-gnu';
  assert.deepEqual(lib.expectedDigest(digests, 'v1.2.3', target, null), { digest: a, from: "committed in this action's action/digests.json" });
  assert.deepEqual(lib.expectedDigest(digests, 'v1.2.3', target, b), { digest: b, from: 'the input sha256' });
  assert.deepEqual(lib.expectedDigest(digests, 'v9.0.0', target, b), { digest: b, from: 'the input sha256' });
  assert.throws(
    () => lib.expectedDigest(digests, 'v9.0.0', target, null),
    (err) => err instanceof lib.ActionError && /^this action has no digest of appcreds v9\.0\.0 for x86_64-unknown-linux-gnu in its action\/digests\.json: .*give the input sha256/.test(err.message)
  );
  assert.throws(() => lib.expectedDigest(digests, 'v1.2.3', 'aarch64-unknown-linux-gnu', null), /no digest of appcreds v1\.2\.3 for aarch64-unknown-linux-gnu/);
});

test('the runner target of each platform', () => {
  assert.equal(lib.target('linux', 'x64'), 'x86_64-unknown-linux-gnu');
  assert.equal(lib.target('linux', 'arm64'), 'aarch64-unknown-linux-gnu');
  assert.deepEqual(Object.values(lib.TARGETS).sort(), ['aarch64-unknown-linux-gnu', 'x86_64-unknown-linux-gnu']);
  assert.throws(() => lib.target('darwin', 'arm64'), /Linux on x64 and arm64 runners only/);
});

test('file commands: the multi-line form round-trips any value; outputs are read back', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appcreds-lib-'));
  try {
    const file = path.join(dir, 'state');
    lib.appendFileCommand(file, 'token', 'ghs_abc');
    lib.appendFileCommand(file, 'binary', '/tmp/x y/appcreds');
    const text = fs.readFileSync(file, 'utf8');
    assert.match(text, /^token<<ghadelimiter_[0-9a-f-]{36}\nghs_abc\nghadelimiter_[0-9a-f-]{36}\nbinary<</);
    const lines = text.split('\n');
    assert.equal(lines[0].slice('token<<'.length), lines[2], 'the delimiter closes the value');
    assert.equal(lines[4], '/tmp/x y/appcreds');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(lib.outputValue('token=a\ninstallation-id=1\ntoken=b\n', 'token'), 'b');
  assert.equal(lib.outputValue('app-slug=x\r\n', 'app-slug'), 'x');
  assert.equal(lib.outputValue('tokens=x\n', 'token'), undefined);
});

test('workflow command messages are escaped', () => {
  assert.equal(lib.escapeMessage('100% bad\r\nnext'), '100%25 bad%0D%0Anext');
});
