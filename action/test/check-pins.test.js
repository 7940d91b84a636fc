'use strict';
// scripts/check-pins: every `uses:` of the workflows (and of action.yml's steps, were it composite)
// pinned by a full commit SHA with its version in a comment, and every Rust toolchain a workflow
// installs named by an exact version. It runs on this repository in scripts/test; here it also runs
// on a workflow that breaks each rule, so that it is seen failing.

const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const REPO = path.resolve(__dirname, '..', '..');
const SCRIPT = path.join(REPO, 'scripts', 'check-pins');
const SHA = '3d3c42e5aac5ba805825da76410c181273ba90b1';

function run(dir) {
  const result = spawnSync(process.execPath, [SCRIPT, ...(dir ? [dir] : [])], { encoding: 'utf8', cwd: REPO });
  return { code: result.status, out: result.stdout + result.stderr };
}

/** A repository holding `files` (path → text). */
function repo(files) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'appcreds-check-pins-'));
  for (const [name, text] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    fs.writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

const GOOD = `name: good
on: push
jobs:
  reusable:
    uses: octo/workflows/.github/workflows/build.yml@${SHA} # v2.1.0
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@${SHA} # v7.0.1
        with:
          persist-credentials: false
      - name: local action and a container by digest
        uses: ./.github/actions/local
      - uses: docker://alpine@sha256:${'0'.repeat(64)}
      - uses: "actions/upload-artifact@${SHA}"   # v7.0.0
      - name: Rust toolchain (this run: uses: nothing)
        run: |
          curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain none
          rustup toolchain install 1.95.0 --profile minimal --component clippy,rustfmt
          rustup default 1.95.0
          rustup target add aarch64-unknown-linux-gnu --toolchain 1.95.0
          cargo +1.95.0 build --release
      - uses: dtolnay/rust-toolchain@${SHA} # master
        with:
          toolchain: 1.95.0
`;

const BAD = `name: bad
on: push
jobs:
  reusable:
    uses: octo/workflows/.github/workflows/build.yml@main
  build:
    runs-on: ubuntu-24.04
    steps:
      - uses: actions/checkout@v4
      - uses: actions/checkout@3d3c42e
      - uses: actions/checkout@${SHA}
      - uses: docker://alpine:3.20
      - run: |
          rustup toolchain install stable --profile minimal
          rustup default nightly
          curl -sSf https://sh.rustup.rs | sh -s -- -y --default-toolchain stable
          rustup update
          cargo +beta build
      - uses: dtolnay/rust-toolchain@${SHA} # master
        with:
          toolchain: stable
      - uses: dtolnay/rust-toolchain@${SHA} # v1
`;

test('this repository\'s workflows and action.yml are pinned', () => {
  const result = run();
  assert.equal(result.code, 0, result.out);
  assert.match(result.out, /^check-pins: \d+ files?, \d+ uses, 0 findings$/m);
});

test('a workflow that pins everything passes', () => {
  const dir = repo({ '.github/workflows/good.yml': GOOD, 'action.yml': 'name: x\nruns:\n  using: node20\n  main: main.js\n' });
  try {
    const result = run(dir);
    assert.equal(result.code, 0, result.out);
    assert.match(result.out, /check-pins: 2 files, 6 uses, 0 findings/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a workflow that breaks each rule fails, with every finding at its line', () => {
  const dir = repo({
    '.github/workflows/bad.yaml': BAD,
    'action.yml': `name: x\nruns:\n  using: composite\n  steps:\n    - uses: actions/cache@v4\n`,
  });
  try {
    const result = run(dir);
    assert.equal(result.code, 1, result.out);
    const findings = result.out.split('\n').filter((l) => /^\S+:\d+: /.test(l));
    const expected = [
      ['.github/workflows/bad.yaml:5', /octo\/workflows\/\.github\/workflows\/build\.yml@main is not pinned by a full commit SHA/],
      ['.github/workflows/bad.yaml:9', /actions\/checkout@v4 is not pinned by a full commit SHA/],
      ['.github/workflows/bad.yaml:10', /actions\/checkout@3d3c42e is not pinned by a full commit SHA/],
      ['.github/workflows/bad.yaml:11', /actions\/checkout@3d3c42e5aac5ba805825da76410c181273ba90b1 has no comment naming its version \(# vX\.Y\.Z\)/],
      ['.github/workflows/bad.yaml:12', /docker:\/\/alpine:3\.20 is not pinned by a sha256 digest/],
      ['.github/workflows/bad.yaml:14', /rustup toolchain install stable: "stable" is not an exact Rust version/],
      ['.github/workflows/bad.yaml:15', /rustup default nightly: "nightly" is not an exact Rust version/],
      ['.github/workflows/bad.yaml:16', /--default-toolchain stable: "stable" is not an exact Rust version/],
      ['.github/workflows/bad.yaml:17', /rustup update: names no exact Rust version/],
      ['.github/workflows/bad.yaml:18', /\+beta: "beta" is not an exact Rust version/],
      ['.github/workflows/bad.yaml:21', /dtolnay\/rust-toolchain's toolchain: "stable" is not an exact Rust version/],
      ['.github/workflows/bad.yaml:22', /dtolnay\/rust-toolchain without a toolchain input/],
      ['action.yml:5', /actions\/cache@v4 is not pinned by a full commit SHA/],
    ];
    assert.equal(findings.length, expected.length, result.out);
    for (const [where, message] of expected) {
      assert.ok(findings.some((f) => f.startsWith(`${where}: `) && message.test(f)), `${where} ${message}\n${result.out}`);
    }
    assert.match(result.out, /check-pins: 2 files, 8 uses, 13 findings/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a directory without workflows is an error, not a pass', () => {
  const dir = repo({ 'README.md': 'nothing here\n' });
  try {
    const result = run(dir);
    assert.equal(result.code, 1);
    assert.match(result.out, /no workflows in .*\.github\/workflows/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
