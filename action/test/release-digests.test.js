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
const TARGETS = ['x86_64-unknown-linux-musl', 'aarch64-unknown-linux-musl', 'x86_64-apple-darwin', 'aarch64-apple-darwin', 'x86_64-pc-windows-msvc'];
/** The assets of a release: each target's CLI archive, and the deployable SAM bundle (its name has the version). */
const assetsOf = (version) => [...TARGETS.map((t) => [t, `appcreds-${t}.tar.gz`]), ['sam-bundle', `appcreds-sam-bundle-${version}.tar.gz`]];
const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');

function run(...args) {
  const result = spawnSync(process.execPath, [SCRIPT, ...args], { encoding: 'utf8' });
  return { code: result.status, out: result.stdout + result.stderr };
}

/** A directory with every asset of `version` (and their .sha256 in sha256sum's format), and a digests file. */
function fixture(initial = {}, version = 'v1.2.3') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appcreds-release-digests-'));
  const assets = path.join(dir, 'assets');
  fs.mkdirSync(assets);
  for (const [target, name] of assetsOf(version)) {
    const data = Buffer.from(`the ${target} build`);
    fs.writeFileSync(path.join(assets, name), data);
    fs.writeFileSync(path.join(assets, `${name}.sha256`), `${sha256(data)}  ${name}\n`);
  }
  const digests = path.join(dir, 'digests.json');
  fs.writeFileSync(digests, `${JSON.stringify(initial, null, 2)}\n`);
  return { dir, assets, digests, cleanUp: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

test('add records the digest of each target\'s archive under the version, once', () => {
  const old = { 'v1.0.0': { 'x86_64-unknown-linux-musl': 'c'.repeat(64) } };
  const f = fixture(old);
  try {
    const added = run('add', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(added.code, 0, added.out);
    const digests = lib.parseDigests(fs.readFileSync(f.digests, 'utf8'));
    assert.deepEqual(digests['v1.0.0'], old['v1.0.0'], 'earlier versions are kept');
    assert.deepEqual(digests['v1.2.3'], Object.fromEntries([...TARGETS, 'sam-bundle'].map((t) => [t, sha256(`the ${t} build`)])));
    assert.deepEqual(Object.keys(lib.TARGETS).length, TARGETS.length, 'every target the action downloads');
    assert.match(fs.readFileSync(f.digests, 'utf8'), /^\{\n {2}"v1\.0\.0": \{\n/, 'two-space JSON, one line per digest');

    const again = run('add', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(again.code, 1);
    assert.match(again.out, /v1\.2\.3 is already in .*digests\.json/);

    assert.match(run('add', 'main', f.assets, '--digests', f.digests).out, /"main" is not a release version/);
    // v1.2.4: the bundle of v1.2.3 is not v1.2.4's.
    const noBundle = run('add', 'v1.2.4', f.assets, '--digests', f.digests);
    assert.equal(noBundle.code, 1);
    assert.match(noBundle.out, /appcreds-sam-bundle-v1\.2\.4\.tar\.gz is missing/);
    fs.copyFileSync(path.join(f.assets, 'appcreds-sam-bundle-v1.2.3.tar.gz'), path.join(f.assets, 'appcreds-sam-bundle-v1.2.4.tar.gz'));
    fs.rmSync(path.join(f.assets, 'appcreds-x86_64-pc-windows-msvc.tar.gz'));
    const missing = run('add', 'v1.2.4', f.assets, '--digests', f.digests);
    assert.equal(missing.code, 1);
    assert.match(missing.out, /appcreds-x86_64-pc-windows-msvc\.tar\.gz is missing/);
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

    const x86 = path.join(f.assets, 'appcreds-x86_64-unknown-linux-musl.tar.gz');
    const committed = sha256('the x86_64-unknown-linux-musl build');
    // Replaced, with a .sha256 that matches the replacement: the committed digest decides.
    fs.writeFileSync(x86, 'another build');
    fs.writeFileSync(`${x86}.sha256`, `${sha256('another build')}  appcreds-x86_64-unknown-linux-musl.tar.gz\n`);
    const replaced = run('verify', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(replaced.code, 1);
    assert.match(replaced.out, new RegExp(`appcreds-x86_64-unknown-linux-musl\\.tar\\.gz: expected ${committed} \\(committed for v1\\.2\\.3\\), got ${sha256('another build')}`));

    fs.writeFileSync(x86, 'the x86_64-unknown-linux-musl build');
    const staleChecksum = run('verify', 'v1.2.3', f.assets, '--digests', f.digests);
    assert.equal(staleChecksum.code, 1);
    assert.match(staleChecksum.out, /appcreds-x86_64-unknown-linux-musl\.tar\.gz\.sha256 does not say the committed digest/);
    fs.writeFileSync(`${x86}.sha256`, `${committed}  appcreds-x86_64-unknown-linux-musl.tar.gz\n`);
    assert.equal(run('verify', 'v1.2.3', f.assets, '--digests', f.digests).code, 0);

    for (const name of ['appcreds-x86_64-unknown-linux-gnu.tar.gz', 'appcreds-sam-bundle-v1.2.2.tar.gz']) {
      fs.writeFileSync(path.join(f.assets, name), 'extra');
      const extra = run('verify', 'v1.2.3', f.assets, '--digests', f.digests);
      assert.equal(extra.code, 1);
      assert.match(extra.out, new RegExp(`${name.replace(/\./g, '\\.')} is not an asset of v1\\.2\\.3`));
      fs.rmSync(path.join(f.assets, name));
    }
    // The bundle is checked like the CLI's archives.
    const bundle = path.join(f.assets, 'appcreds-sam-bundle-v1.2.3.tar.gz');
    fs.writeFileSync(bundle, 'another bundle');
    assert.match(run('verify', 'v1.2.3', f.assets, '--digests', f.digests).out, /appcreds-sam-bundle-v1\.2\.3\.tar\.gz: expected [0-9a-f]{64} \(committed for v1\.2\.3\)/);
    fs.writeFileSync(bundle, 'the sam-bundle build');

    fs.rmSync(`${x86}.sha256`);
    assert.match(run('verify', 'v1.2.3', f.assets, '--digests', f.digests).out, /appcreds-x86_64-unknown-linux-musl\.tar\.gz\.sha256 is missing/);

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

test('only-adds accepts the built commit\'s digests plus the new version alone, and refuses a rewritten older one', () => {
  const old = { 'v1.0.0': { 'x86_64-unknown-linux-musl': 'c'.repeat(64) } };
  const f = fixture(old);
  try {
    const before = path.join(f.dir, 'before.json');
    fs.writeFileSync(before, `${JSON.stringify(old, null, 2)}\n`);
    assert.equal(run('add', 'v1.2.3', f.assets, '--digests', f.digests).code, 0);
    const ok = run('only-adds', 'v1.2.3', before, '--digests', f.digests);
    assert.equal(ok.code, 0, ok.out);
    // The tag commit also rewrites v1.0.0's digest (a replaced old release would then pass).
    const rewritten = JSON.parse(fs.readFileSync(f.digests, 'utf8'));
    rewritten['v1.0.0']['x86_64-unknown-linux-musl'] = 'd'.repeat(64);
    fs.writeFileSync(f.digests, `${JSON.stringify(rewritten, null, 2)}\n`);
    const refused = run('only-adds', 'v1.2.3', before, '--digests', f.digests);
    assert.equal(refused.code, 1);
    assert.match(refused.out, /v1\.0\.0's digests changed/);
    // The version was already there before: nothing is added.
    const again = run('only-adds', 'v1.0.0', before, '--digests', before);
    assert.equal(again.code, 1);
    assert.match(again.out, /v1\.0\.0 was already recorded before this release/);
  } finally {
    f.cleanUp();
  }
});
