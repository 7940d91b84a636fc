'use strict';
// Unit tests of action/lib.js: the pieces whose every case is cheaper to check here than through
// a whole run of the action (action.test.js runs the whole action).

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
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

test('the checksum: sha256sum format, the right file, the right digest', () => {
  const data = Buffer.from('the archive');
  const digest = crypto.createHash('sha256').update(data).digest('hex');
  const asset = 'appcreds-x86_64-unknown-linux-gnu.tar.gz';
  lib.verifySha256(data, Buffer.from(`${digest}  ${asset}\n`), asset);
  lib.verifySha256(data, Buffer.from(`${digest.toUpperCase()} *${asset}\n`), asset);
  lib.verifySha256(data, Buffer.from(`${digest}\n`), asset);
  assert.throws(() => lib.verifySha256(Buffer.from('another'), Buffer.from(`${digest}  ${asset}\n`), asset), /checksum mismatch for appcreds-x86_64/);
  assert.throws(() => lib.verifySha256(data, Buffer.from(`${digest}  other.tar.gz\n`), asset), /is the checksum of other.tar.gz/);
  assert.throws(() => lib.verifySha256(data, Buffer.from('<html>Not Found</html>'), asset), /is not a sha256sum line/);
  assert.throws(() => lib.verifySha256(data, Buffer.from(''), asset), /is not a sha256sum line/);
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
