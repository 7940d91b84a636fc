'use strict';
// scripts/release-digests: the release's two steps around action/digests.json. `add` (the prepare
// workflow) records the digests of the archives it built; `verify` (the release workflow, at the
// pushed tag) accepts a release's assets only if they are exactly what that commit's file records.

const test = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const lib = require('../lib.js');

const SCRIPT = path.resolve(__dirname, '..', '..', 'scripts', 'release-digests');
const TARGETS = ['x86_64-unknown-linux-gnu', 'aarch64-unknown-linux-gnu'];
const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');

function run(...args) {
  const result = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' });
  return { code: result.status, out: result.stdout + result.stderr };
}

/** A directory with both targets' archives (and their .sha256 in sha256sum's format), and a digests file. */
function fixture(initial = {}) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appcreds-release-digests-'));
  const assets = path.join(dir, 'assets');
  fs.mkdirSync(assets);
  for (const target of TARGETS) {
    const name = `appcreds-${target}.tar.gz`;
    const data = Buffer.from(`the ${target} build`);
    fs.writeFileSync(path.join(assets, name), data);
    fs.writeFileSync(path.join(assets, `${name}.sha256`), `${sha256(data)}  ${name}\n`);
  }
  const digests = path.join(dir, 'digests.json');
  fs.writeFileSync(digests, `${JSON.stringify(initial, null, 2)}\n`);
  return { dir, assets, digests, cleanUp: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

test('add records the digest of each target\'s archive under the version, once', () => {
  const old = { 'v1.0.0': { 'x86_64-unknown-linux-gnu': 'c'.repeat(64) } };
  const f = fixture(old);
  try {
    const added = run('add', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(added.code, 0, added.out);
    const digests = lib.parseDigests(fs.readFileSync(f.digests, 'utf8'));
    assert.deepEqual(digests['v1.0.0'], old['v1.0.0'], 'earlier versions are kept');
    assert.deepEqual(digests['v1.2.3'], Object.fromEntries(TARGETS.map((t) => [t, sha256(`the ${t} build`)])));
    assert.match(fs.readFileSync(f.digests, 'utf8'), /^\{\n {2}"v1\.0\.0": \{\n/, 'two-space JSON, one line per digest');

    const again = run('add', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(again.code, 1);
    assert.match(again.out, /v1\.2\.3 is already in .*digests\.json/);

    assert.match(run('add', 'main', f.assets, '--digests', f.digests).out, /"main" is not a release version/);
    fs.rmSync(path.join(f.assets, 'appcreds-aarch64-unknown-linux-gnu.tar.gz'));
    const missing = run('add', 'v1.2.4', f.assets, '--digests', f.digests);
    assert.equal(missing.code, 1);
    assert.match(missing.out, /appcreds-aarch64-unknown-linux-gnu\.tar\.gz is missing/);
    assert.equal(lib.parseDigests(fs.readFileSync(f.digests, 'utf8'))['v1.2.4'], undefined);
  } finally {
    f.cleanUp();
  }
});

test('verify accepts exactly the committed assets, and refuses a replaced, extra, missing or uncommitted one', () => {
  const f = fixture();
  try {
    assert.equal(run('add', 'v1.2.3', f.assets, '--digests', f.digests).code, 0);
    const ok = run('verify', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(ok.code, 0, ok.out);

    const x86 = path.join(f.assets, 'appcreds-x86_64-unknown-linux-gnu.tar.gz');
    const committed = sha256('the x86_64-unknown-linux-gnu build');
    // Replaced, with a .sha256 that matches the replacement: the committed digest decides.
    fs.writeFileSync(x86, 'another build');
    fs.writeFileSync(`${x86}.sha256`, `${sha256('another build')}  appcreds-x86_64-unknown-linux-gnu.tar.gz\n`);
    const replaced = run('verify', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(replaced.code, 1);
    assert.match(replaced.out, new RegExp(`appcreds-x86_64-unknown-linux-gnu\\.tar\\.gz: expected ${committed} \\(committed for v1\\.2\\.3\\), got ${sha256('another build')}`));

    fs.writeFileSync(x86, 'the x86_64-unknown-linux-gnu build');
    const staleChecksum = run('verify', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(staleChecksum.code, 1);
    assert.match(staleChecksum.out, /appcreds-x86_64-unknown-linux-gnu\.tar\.gz\.sha256 does not say the committed digest/);
    fs.writeFileSync(`${x86}.sha256`, `${committed}  appcreds-x86_64-unknown-linux-gnu.tar.gz\n`);
    assert.equal(run('verify', 'v1.2.3', f.assets, '--digests', f.digests).code, 0);

    fs.writeFileSync(path.join(f.assets, 'appcreds-x86_64-apple-darwin.tar.gz'), 'extra');
    const extra = run('verify', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(extra.code, 1);
    assert.match(extra.out, /appcreds-x86_64-apple-darwin\.tar\.gz is not an asset of v1\.2\.3/);
    fs.rmSync(path.join(f.assets, 'appcreds-x86_64-apple-darwin.tar.gz'));

    fs.rmSync(`${x86}.sha256`);
    assert.match(run('verify', 'v1.2.3', f.assets, '--digests', f.digests).out, /appcreds-x86_64-unknown-linux-gnu\.tar\.gz\.sha256 is missing/);

    const uncommitted = run('verify', 'v1.2.4', f.assets, '--digests', f.digests);
    assert.equal(uncommitted.code, 1);
    assert.match(uncommitted.out, /v1\.2\.4 has no digests in .*digests\.json/);
  } finally {
    f.cleanUp();
  }
});

test('without --digests the script reads and writes the action\'s own action/digests.json', () => {
  const result = run('verify', 'v0.0.0-not-a-release', os.tmpdir());
  assert.equal(result.code, 1);
  assert.match(result.out, new RegExp(`v0\\.0\\.0-not-a-release has no digests in ${path.join('action', 'digests.json').replace(/\./g, '\\.')}`));
  assert.match(run('help').out, /^usage: /m);
});
