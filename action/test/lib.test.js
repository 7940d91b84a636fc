'use strict';
// Unit tests of action/lib.js: the pieces whose every case is cheaper to check here than through
// a whole run of the action (action.test.js runs the whole action).

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');
const { execFileSync } = require('node:child_process');
const lib = require('../lib.js');

// Every runner GitHub offers an appcreds build for, in Node's names (process.platform/arch) and the
// runner's (RUNNER_OS/RUNNER_ARCH): the asset and the executable in it.
const RUNNERS = [
  ['linux', 'x64', 'Linux', 'X64', 'x86_64-unknown-linux-musl', 'appcreds'],
  ['linux', 'arm64', 'Linux', 'ARM64', 'aarch64-unknown-linux-musl', 'appcreds'],
  ['darwin', 'x64', 'macOS', 'X64', 'x86_64-apple-darwin', 'appcreds'],
  ['darwin', 'arm64', 'macOS', 'ARM64', 'aarch64-apple-darwin', 'appcreds'],
  ['win32', 'x64', 'Windows', 'X64', 'x86_64-pc-windows-msvc', 'appcreds.exe'],
];

test('the release asset for each runner OS and architecture: Linux (static), macOS and Windows', () => {
  for (const [platform, arch, , , target, executable] of RUNNERS) {
    assert.equal(lib.target(platform, arch), target);
    assert.equal(lib.assetName(platform, arch), `appcreds-${target}.tar.gz`);
    assert.equal(lib.executableName(platform), executable);
  }
  assert.deepEqual(Object.values(lib.TARGETS).sort(), RUNNERS.map((r) => r[4]).sort(), 'TARGETS is exactly these');
});

test('the runner is read from RUNNER_OS and RUNNER_ARCH, else from Node\'s process.platform and process.arch', () => {
  for (const [platform, arch, runnerOs, runnerArch, target] of RUNNERS) {
    // The runner's variables decide (x64 Node under Rosetta on an arm64 Mac still gets the arm64 build).
    const other = arch === 'x64' ? 'arm64' : 'x64';
    assert.deepEqual(lib.runner({ RUNNER_OS: runnerOs, RUNNER_ARCH: runnerArch }, platform, other), { platform, arch });
    assert.equal(lib.runnerTarget({ RUNNER_OS: runnerOs, RUNNER_ARCH: runnerArch }, 'linux', 'x64'), target);
    assert.deepEqual(lib.runner({}, platform, arch), { platform, arch });
    assert.equal(lib.runnerTarget({ RUNNER_OS: '', RUNNER_ARCH: '' }, platform, arch), target);
  }
  assert.deepEqual(lib.runner({ RUNNER_OS: 'Windows', RUNNER_ARCH: 'ARM64' }, 'win32', 'x64'), { platform: 'win32', arch: 'arm64' });
  assert.deepEqual(lib.runner({ RUNNER_OS: 'Linux', RUNNER_ARCH: 'ARM' }, 'linux', 'arm'), { platform: 'linux', arch: 'arm' });
  assert.deepEqual(lib.runner({ RUNNER_OS: 'Linux', RUNNER_ARCH: 'X86' }, 'linux', 'ia32'), { platform: 'linux', arch: 'ia32' });
});

test('a runner without a build is refused clearly, naming it and the runners there are builds for', () => {
  const cases = [
    [{ RUNNER_OS: 'Windows', RUNNER_ARCH: 'ARM64' }, 'win32', 'arm64', 'Windows ARM64'],
    [{ RUNNER_OS: 'Linux', RUNNER_ARCH: 'ARM' }, 'linux', 'arm', 'Linux ARM'],
    [{ RUNNER_OS: 'Linux', RUNNER_ARCH: 'X86' }, 'linux', 'ia32', 'Linux X86'],
    [{ RUNNER_OS: 'Windows', RUNNER_ARCH: 'X86' }, 'win32', 'ia32', 'Windows X86'],
    [{}, 'linux', 'riscv64', 'Linux riscv64'],
    [{}, 'freebsd', 'x64', 'freebsd X64'],
  ];
  for (const [env, platform, arch, named] of cases) {
    for (const refused of [() => lib.runnerTarget(env, platform, arch), () => lib.target(platform, arch), () => lib.assetName(platform, arch)]) {
      assert.throws(refused, (err) => {
        assert.ok(err instanceof lib.ActionError, String(err));
        assert.equal(
          err.message,
          `appcreds has no build for ${named} runners: its releases have the CLI for Linux X64 and ARM64 (static), ` +
            'macOS X64 and ARM64, and Windows X64. Run the job on one of those, or build the CLI yourself ' +
            '(cargo install --path crates/cli) and run `appcreds token` in a step of your own'
        );
        return true;
      });
    }
  }
});

test('the executable is read from the archive in memory: the regular file at its root, nothing else', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appcreds-lib-tar-'));
  try {
    const tarGz = (args) => {
      const file = path.join(dir, 'a.tar.gz');
      fs.rmSync(file, { force: true });
      execFileSync('tar', ['-czf', file, ...args], { cwd: dir });
      return fs.readFileSync(file);
    };
    fs.writeFileSync(path.join(dir, 'appcreds'), '#!/bin/sh\necho appcreds\n');
    fs.writeFileSync(path.join(dir, 'appcreds.exe'), Buffer.alloc(70000, 7));
    fs.mkdirSync(path.join(dir, 'bin'));
    fs.writeFileSync(path.join(dir, 'bin', 'appcreds'), 'nested');
    assert.equal(lib.archiveMember(tarGz(['appcreds']), 'appcreds').toString(), '#!/bin/sh\necho appcreds\n');
    assert.deepEqual(lib.archiveMember(tarGz(['bin', 'appcreds.exe', 'appcreds']), 'appcreds.exe'), Buffer.alloc(70000, 7));
    assert.equal(lib.archiveMember(tarGz(['./appcreds']), 'appcreds').toString(), '#!/bin/sh\necho appcreds\n');
    assert.equal(lib.archiveMember(tarGz(['bin']), 'appcreds'), null, 'bin/appcreds is not at the root');
    assert.equal(lib.archiveMember(tarGz(['appcreds']), 'appcreds.exe'), null);
    // A long path's ustar prefix, or its pax header, is part of its name: d…d/appcreds is not at the root.
    const long = `${'d'.repeat(120)}`;
    fs.mkdirSync(path.join(dir, long));
    fs.writeFileSync(path.join(dir, long, 'appcreds'), 'deep');
    assert.equal(lib.archiveMember(tarGz(['--format=pax', long, 'appcreds']), 'appcreds').toString(), '#!/bin/sh\necho appcreds\n');
    assert.equal(lib.archiveMember(tarGz(['--format=pax', long]), 'appcreds'), null);
    // A link named appcreds is refused, not followed.
    fs.rmSync(path.join(dir, 'appcreds'));
    fs.symlinkSync('/bin/sh', path.join(dir, 'appcreds'));
    assert.throws(() => lib.archiveMember(tarGz(['appcreds']), 'appcreds'), (err) => err instanceof lib.ActionError && /^appcreds in the archive is not a regular file/.test(err.message));
    assert.throws(() => lib.archiveMember(Buffer.from('not gzip'), 'appcreds'), (err) => err instanceof lib.ActionError && /^the archive is not gzip-compressed/.test(err.message));
    const truncated = zlib.gzipSync(zlib.gunzipSync(tarGz(['appcreds.exe'])).subarray(0, 512 + 1000));
    assert.throws(() => lib.archiveMember(truncated, 'appcreds.exe'), (err) => err instanceof lib.ActionError && /^the archive is truncated/.test(err.message));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
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
    git: { cliArgs: [], appId: '123456', owner: 'octo-org', permissions: [] },
  });
  assert.deepEqual(lib.tokenInvocation({ ...base, INPUT_ENTERPRISE: 'octo-enterprise' }).args, ['token', '--app-id', '123456', '--enterprise', 'octo-enterprise']);
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
  const owners = lib.tokenInvocation({ ...base, INPUT_OWNERS: 'octo-org,\n octocat\n', INPUT_PERMISSIONS: 'contents=read' });
  assert.deepEqual(owners.args, ['token', '--app-id', '123456', '--owner', 'octo-org', '--owner', 'octocat', '--permission', 'contents=read']);
  assert.deepEqual(owners.owners, ['octo-org', 'octocat']);
  assert.equal(owners.git.owner, '', 'the git helper is not held to one owner');
});

test('bad inputs are refused with the input named', () => {
  const cases = [
    [{}, /the input app-id is required/],
    [{ 'INPUT_APP-ID': '0', INPUT_OWNER: 'o' }, /input app-id: "0" is not a GitHub App ID/],
    [{ 'INPUT_APP-ID': '12x', INPUT_OWNER: 'o' }, /input app-id: "12x"/],
    [{ 'INPUT_APP-ID': '1' }, /give exactly one of the inputs owner, owners, repository, node-id or enterprise: the installation/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', 'INPUT_NODE-ID': 'n' }, /not owner and node-id/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_ENTERPRISE: 'e' }, /^give exactly one of the inputs owner, owners, repository, node-id or enterprise, not owner and enterprise$/],
    [{ 'INPUT_APP-ID': '1', INPUT_ENTERPRISE: 'octo enterprise' }, /^input enterprise: "octo enterprise" is not an enterprise slug \(letters, digits and hyphens\)$/],
    [{ 'INPUT_APP-ID': '1', INPUT_ENTERPRISE: '-octo' }, /^input enterprise: "-octo" is not an enterprise slug/],
    [{ 'INPUT_APP-ID': '1', INPUT_ENTERPRISE: 'o'.repeat(101) }, /^input enterprise: "o{101}" is not an enterprise slug/],
    [{ 'INPUT_APP-ID': '1', INPUT_REPOSITORY: 'hello-world' }, /input repository: "hello-world" is not owner\/name/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', 'INPUT_REPOSITORY-IDS': '1,abc' }, /input repository-ids: "abc"/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_PERMISSIONS: 'contents:read' }, /input permissions: "contents:read" is not name=level/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_PERMISSIONS: 'contents=none' }, /"contents=none"/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_REGION: 'Europe' }, /input region: "Europe" is not an AWS region/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_OIDC: 'yes' }, /input oidc must be true or false/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNER: 'o', INPUT_OWNERS: 'a,b' }, /not owner and owners$/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNERS: 'octo-org,-bad' }, /^input owners: "-bad" is not a GitHub login$/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNERS: 'octo-org\nOcto-Org' }, /^input owners: "Octo-Org" is given twice$/],
    [{ 'INPUT_APP-ID': '1', INPUT_OWNERS: Array.from({ length: 11 }, (_, i) => `o${i}`).join(',') }, /^input owners: 11 owners; at most 10 in one call$/],
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
    lib.assetUrl({}, 'octo/appcreds', 'v1.2.3', 'appcreds-x86_64-unknown-linux-musl.tar.gz'),
    'https://github.com/octo/appcreds/releases/download/v1.2.3/appcreds-x86_64-unknown-linux-musl.tar.gz'
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
  const text = JSON.stringify({
    'v1.2.3': { 'x86_64-unknown-linux-musl': a, 'aarch64-unknown-linux-musl': b, 'x86_64-apple-darwin': a, 'aarch64-apple-darwin': b, 'x86_64-pc-windows-msvc': a, 'sam-bundle': b },
    'v1.3.0-rc.1': { 'x86_64-unknown-linux-musl': b },
  });
  assert.deepEqual(lib.parseDigests(text), JSON.parse(text));
  assert.deepEqual(lib.parseDigests('{}\n'), {});
  const bad = [
    ['', /is not JSON/],
    ['[]', /is not an object/],
    [JSON.stringify({ main: { 'x86_64-unknown-linux-musl': a } }), /"main" is not a version tag/],
    [JSON.stringify({ 'v1.2.3': {} }), /v1\.2\.3 has no digest/],
    [JSON.stringify({ 'v1.2.3': a }), /v1\.2\.3 is not an object/],
    // The glibc builds of the first releases are not released any more.
    [JSON.stringify({ 'v1.2.3': { 'x86_64-unknown-linux-gnu': a } }), /v1\.2\.3: "x86_64-unknown-linux-gnu" is not a target appcreds is released for/],
    [JSON.stringify({ 'v1.2.3': { 'aarch64-pc-windows-msvc': a } }), /v1\.2\.3: "aarch64-pc-windows-msvc" is not a target/],
    [JSON.stringify({ 'v1.2.3': { 'x86_64-unknown-linux-musl': a.toUpperCase() } }), /v1\.2\.3 x86_64-unknown-linux-musl: "A{64}" is not a SHA-256 digest \(64 lower-case hex digits\)/],
    [JSON.stringify({ 'v1.2.3': { 'x86_64-unknown-linux-musl': 'a'.repeat(63) } }), /is not a SHA-256 digest/],
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
  const asset = 'appcreds-x86_64-unknown-linux-musl.tar.gz';
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  assert.equal(lib.pinnedDigest('', asset), null);
  assert.equal(lib.pinnedDigest(a, asset), a);
  assert.equal(lib.pinnedDigest(`  ${a.toUpperCase()}\n`, asset), a);
  assert.equal(lib.pinnedDigest(`${b}  appcreds-aarch64-unknown-linux-musl.tar.gz\n${a} *${asset}\n`, asset), a);
  assert.equal(lib.pinnedDigest(`${a}  ${asset}`, asset), a);
  const bad = [
    ['abc', /^input sha256: "abc" is not a SHA-256 digest/],
    [`${a}  ${asset} extra`, /is not a SHA-256 digest/],
    [`${b}  appcreds-aarch64-unknown-linux-musl.tar.gz`, /^input sha256 has no digest for appcreds-x86_64-unknown-linux-musl\.tar\.gz/],
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
  const digests = { 'v1.2.3': { 'x86_64-unknown-linux-musl': a } };
  const target = 'x86_64-unknown-linux-musl';
  assert.deepEqual(lib.expectedDigest(digests, 'v1.2.3', target, null), { digest: a, from: "committed in this action's action/digests.json" });
  assert.deepEqual(lib.expectedDigest(digests, 'v1.2.3', target, b), { digest: b, from: 'the input sha256' });
  assert.deepEqual(lib.expectedDigest(digests, 'v9.0.0', target, b), { digest: b, from: 'the input sha256' });
  assert.throws(
    () => lib.expectedDigest(digests, 'v9.0.0', target, null),
    (err) => err instanceof lib.ActionError && /^this action has no digest of appcreds v9\.0\.0 for x86_64-unknown-linux-musl in its action\/digests\.json: .*give the input sha256/.test(err.message)
  );
  assert.throws(() => lib.expectedDigest(digests, 'v1.2.3', 'aarch64-unknown-linux-musl', null), /no digest of appcreds v1\.2\.3 for aarch64-unknown-linux-musl/);
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

test('role-arn goes before the command; git-credential configures the GitHub host the runner names, with no cache on Windows', () => {
  const role = 'arn:aws:iam::123456789012:role/ci/appcreds-caller';
  const invocation = lib.tokenInvocation({ 'INPUT_APP-ID': '9', INPUT_REPOSITORY: 'octo-org/api', 'INPUT_ROLE-ARN': role, 'INPUT_OIDC-AUDIENCE': 'appcreds-prod' });
  assert.deepEqual(invocation.args, ['--github-oidc-audience', 'appcreds-prod', '--role-arn', role, 'token', '--app-id', '9', '--repository', 'octo-org/api']);
  const env = { GITHUB_SERVER_URL: 'https://ghes.example.com/' };
  const windows = lib.gitCredentialConfig(env, invocation, 'D:\\a\\_temp\\appcreds-x1\\appcreds.exe', 'win32');
  assert.equal(windows.socket, null);
  assert.deepEqual(windows.entries, [
    ['credential.https://ghes.example.com.useHttpPath', 'true'],
    ['credential.https://ghes.example.com.helper', ''],
    ['credential.https://ghes.example.com.helper', `!'D:/a/_temp/appcreds-x1/appcreds.exe' '--github-oidc-audience' 'appcreds-prod' '--role-arn' '${role}' 'git-credential' '--app-id' '9' '--owner' 'octo-org'`],
  ]);
  // A quote in a path stays one shell word; with the cache, the ledger beside its socket.
  const linux = lib.gitCredentialConfig({}, invocation, "/tmp/it's/appcreds", 'linux');
  assert.match(linux.entries.at(-1)[1], /^!APPCREDS_GIT_LEDGER='\/tmp\/it'\\''s\/git-cache\/ledger' '\/tmp\/it'\\''s\/appcreds' /);
  assert.equal(linux.socket, "/tmp/it's/git-cache/socket");
  assert.equal(linux.entries[0][0], 'credential.https://github.com.useHttpPath');
  assert.throws(() => lib.gitCredentialConfig({ GITHUB_SERVER_URL: 'http://ghes.example.com' }, invocation, '/x', 'linux'), /GITHUB_SERVER_URL "http:\/\/ghes.example.com" is not an https host/);
  for (const bad of ['role/x', 'arn:aws:iam::12345:role/x', 'arn:aws:sts::123456789012:assumed-role/x/y']) {
    assert.throws(() => lib.tokenInvocation({ 'INPUT_APP-ID': '9', INPUT_OWNER: 'o', 'INPUT_ROLE-ARN': bad }), /input role-arn: .* is not an IAM role ARN/, bad);
  }
});

test("the cache's ledger is read only if it is a regular file; git gets none of the step's secrets", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appcreds-ledger-'));
  const socket = path.join(dir, 'socket');
  fs.writeFileSync(socket, '');
  // A FIFO a later step left in the ledger's place: opened without waiting for a writer (else this
  // test would never end), and passed over.
  execFileSync('mkfifo', [path.join(dir, 'ledger')]);
  assert.deepEqual(lib.cachedTokens({ PATH: process.env.PATH }, socket), []);
  fs.rmSync(dir, { recursive: true, force: true });

  const step = {
    PATH: '/usr/bin', HOME: '/home/runner', GIT_CONFIG_NOSYSTEM: '1', STATE_token: 'ghs_x', 'INPUT_APP-ID': '7',
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: 'eyJ', AWS_SECRET_ACCESS_KEY: 's', GITHUB_TOKEN: 'ghs_job', GIT_CONFIG_COUNT: '5',
  };
  assert.deepEqual(lib.gitEnv(step, 'linux'), { PATH: '/usr/bin', HOME: '/home/runner', GIT_CONFIG_NOSYSTEM: '1' });
  const windows = lib.gitEnv({ ...step, SYSTEMROOT: 'C:\\Windows', gh_token: 'ghs_y' }, 'win32');
  assert.deepEqual(Object.keys(windows).sort(), ['GIT_CONFIG_COUNT', 'GIT_CONFIG_NOSYSTEM', 'HOME', 'PATH', 'SYSTEMROOT']);
});
