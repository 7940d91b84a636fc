'use strict';
// The appcreds action's logic, on Node's built-in modules only: nothing is installed at run time.
// main.js and post.js are thin wrappers; the tests call these functions and run both scripts.
// The binary it runs is the one whose SHA-256 this commit of the action has in action/digests.json
// (or the workflow's own input sha256): a release asset replaced after the fact is refused.

const crypto = require('node:crypto');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const zlib = require('node:zlib');

/** An error whose message is meant for the person reading the job's log. */
class ActionError extends Error {}

const MAX_REDIRECTS = 5;
const MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024;
const DOWNLOAD_TIMEOUT_MS = 120 * 1000;
const REVOKE_TIMEOUT_MS = 30 * 1000;

/** The input `name` as the runner passes it: INPUT_<NAME>, upper case, hyphens kept. */
function input(env, name, fallback = '') {
  const value = env[`INPUT_${name.replace(/ /g, '_').toUpperCase()}`];
  return value === undefined || value.trim() === '' ? fallback : value.trim();
}

/** A boolean input, in the spellings GitHub's own toolkit accepts. */
function booleanInput(env, name, fallback) {
  const value = input(env, name, fallback ? 'true' : 'false');
  if (['true', 'True', 'TRUE'].includes(value)) return true;
  if (['false', 'False', 'FALSE'].includes(value)) return false;
  throw new ActionError(`input ${name} must be true or false, not ${JSON.stringify(value)}`);
}

/** Items separated by newlines or commas (or spaces), blanks dropped. */
function list(value) {
  return value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

/**
 * The Rust target appcreds is released for, by runner platform/arch in Node's names
 * (process.platform/process.arch). Linux's are static (musl): they run on any distribution.
 */
const TARGETS = Object.freeze({
  'linux/x64': 'x86_64-unknown-linux-musl',
  'linux/arm64': 'aarch64-unknown-linux-musl',
  'darwin/x64': 'x86_64-apple-darwin',
  'darwin/arm64': 'aarch64-apple-darwin',
  'win32/x64': 'x86_64-pc-windows-msvc',
});

/** The runner's RUNNER_OS and RUNNER_ARCH, in Node's names. */
const RUNNER_OS = Object.freeze({ Linux: 'linux', macOS: 'darwin', Windows: 'win32' });
const RUNNER_ARCH = Object.freeze({ X64: 'x64', ARM64: 'arm64', X86: 'ia32', ARM: 'arm' });

/**
 * The runner's OS and architecture (Node's names): RUNNER_OS and RUNNER_ARCH, which the runner sets
 * for the machine, else this Node's process.platform and process.arch. The runner's own variables
 * come first: an x64 Node under emulation on an ARM64 machine still gets the ARM64 build.
 */
function runner(env, platform = process.platform, arch = process.arch) {
  const os_ = env.RUNNER_OS;
  const arch_ = env.RUNNER_ARCH;
  return {
    platform: os_ ? RUNNER_OS[os_] || os_.toLowerCase() : platform,
    arch: arch_ ? RUNNER_ARCH[arch_] || arch_.toLowerCase() : arch,
  };
}

/** A platform and architecture as GitHub names runners (Windows ARM64), where it has a name for them. */
function runnerName(platform, arch) {
  const os_ = Object.keys(RUNNER_OS).find((k) => RUNNER_OS[k] === platform) || platform;
  const arch_ = Object.keys(RUNNER_ARCH).find((k) => RUNNER_ARCH[k] === arch) || arch;
  return `${os_} ${arch_}`;
}

/** The Rust target built for this platform and architecture (Node's names); refused if there is none. */
function target(platform, arch) {
  const found = TARGETS[`${platform}/${arch}`];
  if (found) return found;
  throw new ActionError(
    `appcreds has no build for ${runnerName(platform, arch)} runners: its releases have the CLI for Linux X64 and ARM64 (static), ` +
      'macOS X64 and ARM64, and Windows X64. Run the job on one of those, or build the CLI yourself ' +
      '(cargo install --path crates/cli) and run `appcreds token` in a step of your own'
  );
}

/** The Rust target built for the runner (see runner). */
function runnerTarget(env, platform = process.platform, arch = process.arch) {
  const here = runner(env, platform, arch);
  return target(here.platform, here.arch);
}

/** The release asset built for this platform and architecture. */
function assetName(platform, arch) {
  return `appcreds-${target(platform, arch)}.tar.gz`;
}

/** The CLI's file name in the asset: appcreds, or appcreds.exe for Windows. */
function executableName(platform) {
  return platform === 'win32' ? 'appcreds.exe' : 'appcreds';
}

/**
 * The release's deployable SAM bundle (scripts/bundle): its digest is committed in digests.json
 * beside the CLI's, under this name, for the release workflow's check (the action never downloads it).
 */
const BUNDLE = 'sam-bundle';

/** The file name of a release asset: a target's CLI archive, or the bundle of `version`. */
function releaseAssetName(name, version) {
  return name === BUNDLE ? `appcreds-sam-bundle-${version}.tar.gz` : `appcreds-${name}.tar.gz`;
}

const MAX_UNPACKED_BYTES = 512 * 1024 * 1024;

/**
 * The bytes of the regular file `name` at the root of a tar.gz (a `./name` counts), or null when it
 * has none. Read in memory with Node's zlib: no tar program runs (on a Windows runner the one found
 * first may be Git's GNU tar, which reads `D:\...` as a remote host), and nothing but that file is
 * ever written. A member `name` that
 * is not a regular file (a link), or that is there twice, is refused. Headers are checked (ustar
 * checksum); long names (the ustar prefix, GNU's long-name entries, pax headers) are read as names.
 */
function archiveMember(archive, name) {
  let tar;
  try {
    tar = zlib.gunzipSync(archive, { maxOutputLength: MAX_UNPACKED_BYTES });
  } catch (err) {
    throw new ActionError(`the archive is not gzip-compressed, or larger than ${MAX_UNPACKED_BYTES} bytes unpacked (${err.message})`);
  }
  const text = (block, start, length) => {
    const bytes = block.subarray(start, start + length);
    const nul = bytes.indexOf(0);
    return bytes.subarray(0, nul < 0 ? length : nul).toString('utf8');
  };
  const octal = (block, start, length) => {
    const digits = text(block, start, length).trim();
    return /^[0-7]+$/.test(digits) ? parseInt(digits, 8) : NaN;
  };
  let found = null;
  let nextName = null;
  for (let offset = 0; ; ) {
    if (offset + 512 > tar.length) throw new ActionError('the archive is truncated (no end-of-archive block)');
    const header = tar.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
    const size = octal(header, 124, 12);
    if (octal(header, 148, 8) !== sum || !Number.isSafeInteger(size)) throw new ActionError('the archive is not a tar archive (a bad header)');
    const body = tar.subarray(offset + 512, offset + 512 + size);
    if (body.length < size) throw new ActionError('the archive is truncated');
    offset += 512 + Math.ceil(size / 512) * 512;
    const type = String.fromCharCode(header[156]);
    if (type === 'L') {
      nextName = text(body, 0, body.length); // GNU: the next member's long name
      continue;
    }
    if (type === 'x') {
      nextName = paxPath(body) ?? nextName; // pax: the next member's attributes
      continue;
    }
    if (type === 'g' || type === 'K') continue; // pax global attributes, GNU long link name
    let memberName = text(header, 0, 100);
    if (header.toString('latin1', 257, 263) === 'ustar\0') {
      const prefix = text(header, 345, 155);
      if (prefix) memberName = `${prefix}/${memberName}`;
    }
    if (nextName !== null) memberName = nextName;
    nextName = null;
    if (memberName.replace(/^(\.\/)+/, '') !== name) continue;
    if (type !== '0' && type !== '\0' && type !== '7') throw new ActionError(`${name} in the archive is not a regular file`);
    if (found) throw new ActionError(`the archive holds ${name} twice`);
    found = Buffer.from(body);
  }
  return found;
}

/** The `path` of a pax extended header ("<length> path=<value>\n" records), or undefined. */
function paxPath(body) {
  let result;
  for (let at = 0; at < body.length; ) {
    const space = body.indexOf(0x20, at);
    const length = space > at ? parseInt(body.toString('latin1', at, space), 10) : NaN;
    if (!Number.isSafeInteger(length) || length <= 0 || at + length > body.length) throw new ActionError('the archive is not a tar archive (a bad pax header)');
    const record = body.toString('utf8', space + 1, at + length).replace(/\n$/, '');
    const eq = record.indexOf('=');
    if (eq > 0 && record.slice(0, eq) === 'path') result = record.slice(eq + 1);
    at += length;
  }
  return result;
}

/** This action's own digests.json: it travels with the action's commit, never with a release. */
const DIGESTS_FILE = path.join(__dirname, 'digests.json');
const DIGESTS_NAME = 'action/digests.json';
const SHA256_HEX = /^[0-9a-f]{64}$/;
/** What the release workflow accepts as a version to release (and so what digests.json may hold). */
const RELEASE_VERSION = /^v\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?$/;

/**
 * Parses digests.json: `{ "<version tag>": { "<target>": "<sha256 of appcreds-<target>.tar.gz>",
 * "sam-bundle": "<sha256 of appcreds-sam-bundle-<version>.tar.gz>" } }`. The release's prepare
 * workflow writes it (scripts/release-digests add); anything else in it is an error, so that a
 * mistyped entry is caught by the tests rather than by a refused job.
 */
function parseDigests(text) {
  const fail = (message) => new ActionError(`${DIGESTS_NAME}: ${message}`);
  let digests;
  try {
    digests = JSON.parse(text);
  } catch (err) {
    throw fail(`is not JSON (${err.message})`);
  }
  if (!digests || typeof digests !== 'object' || Array.isArray(digests)) throw fail('is not an object of versions');
  const known = new Set([...Object.values(TARGETS), BUNDLE]);
  for (const [version, byTarget] of Object.entries(digests)) {
    if (!RELEASE_VERSION.test(version)) throw fail(`${JSON.stringify(version)} is not a version tag (vX.Y.Z)`);
    if (!byTarget || typeof byTarget !== 'object' || Array.isArray(byTarget)) throw fail(`${version} is not an object of targets`);
    if (Object.keys(byTarget).length === 0) throw fail(`${version} has no digest`);
    for (const [name, digest] of Object.entries(byTarget)) {
      if (!known.has(name)) throw fail(`${version}: ${JSON.stringify(name)} is not a target appcreds is released for`);
      if (typeof digest !== 'string' || !SHA256_HEX.test(digest)) {
        throw fail(`${version} ${name}: ${JSON.stringify(digest)} is not a SHA-256 digest (64 lower-case hex digits)`);
      }
    }
  }
  return digests;
}

/** Reads and parses digests.json (by default this action's own). */
function loadDigests(file = DIGESTS_FILE) {
  let text;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new ActionError(`cannot read ${DIGESTS_NAME}: ${err.message}`);
  }
  return parseDigests(text);
}

/**
 * The digest the input sha256 pins for `asset`, or null without the input: one digest (the job runs
 * on one kind of runner), or sha256sum's lines (`<digest>  <asset>`), one per asset, of which the
 * one naming `asset` counts.
 */
function pinnedDigest(value, asset) {
  const lines = String(value || '').split('\n').map((l) => l.trim()).filter(Boolean);
  if (lines.length === 0) return null;
  const entries = lines.map((line) => {
    const match = /^([0-9a-fA-F]{64})(?:\s+\*?(\S+))?$/.exec(line);
    if (!match) {
      throw new ActionError(`input sha256: ${JSON.stringify(line)} is not a SHA-256 digest (64 hex digits, or sha256sum's "<digest>  <file>")`);
    }
    return { digest: match[1].toLowerCase(), name: match[2] && path.basename(match[2]) };
  });
  if (entries.length === 1 && !entries[0].name) return entries[0].digest;
  if (entries.some((e) => !e.name)) {
    throw new ActionError('input sha256: give one digest, or sha256sum lines that name each asset ("<digest>  appcreds-<target>.tar.gz")');
  }
  const mine = entries.filter((e) => e.name === asset);
  if (mine.length === 0) throw new ActionError(`input sha256 has no digest for ${asset} (this runner's asset)`);
  if (mine.length > 1) throw new ActionError(`input sha256 has two digests for ${asset}`);
  return mine[0].digest;
}

/**
 * The digest the downloaded asset must have: the input sha256 when the workflow gives one (it pins
 * the binary itself), else the one committed in this action's digests.json for the version. Neither
 * is an error: a release's own .sha256 proves nothing, since whoever can replace the archive can
 * replace it too.
 */
function expectedDigest(digests, version, targetName, pinned) {
  if (pinned) return { digest: pinned, from: 'the input sha256' };
  const committed = Object.prototype.hasOwnProperty.call(digests, version) ? digests[version][targetName] : undefined;
  if (committed) return { digest: committed, from: `committed in this action's ${DIGESTS_NAME}` };
  const newest = Object.keys(digests).at(-1);
  throw new ActionError(
    `this action has no digest of appcreds ${version} for ${targetName} in its ${DIGESTS_NAME}: ` +
      (newest ? `use a version it has (the newest is ${newest}), ` : '') +
      `use the action at a commit whose ${DIGESTS_NAME} has ${version} (its release tag), ` +
      'or give the input sha256 (the SHA-256 of the release asset, pinned in your workflow)'
  );
}

/**
 * The release tag to download: the `version` input, else the action's own ref when it is a
 * version tag (`uses: owner/repo@v1.2.3`). A branch or a commit SHA names no release.
 */
function releaseVersion(env) {
  const explicit = input(env, 'version');
  const version = explicit || (/^v\d[\w.+-]*$/.test(env.GITHUB_ACTION_REF || '') ? env.GITHUB_ACTION_REF : '');
  if (!version) {
    const ref = env.GITHUB_ACTION_REF ? `the action's ref ${JSON.stringify(env.GITHUB_ACTION_REF)}` : 'the action has no ref';
    throw new ActionError(
      `give the input version (a release tag of appcreds, e.g. v1.2.3): ${ref} is not a version tag, ` +
        'so it names no release to download'
    );
  }
  if (!/^[\w.+-]+$/.test(version)) throw new ActionError(`input version: ${JSON.stringify(version)} is not a tag name`);
  return version;
}

/** The repository whose releases hold the binaries: input release-repository, else the action's own. */
function releaseRepository(env) {
  const repo = input(env, 'release-repository', env.GITHUB_ACTION_REPOSITORY || '');
  if (!repo) {
    throw new ActionError('give the input release-repository (owner/name of the repository whose releases hold appcreds)');
  }
  if (!/^[\w.-]+\/[\w.-]+$/.test(repo)) {
    throw new ActionError(`input release-repository: ${JSON.stringify(repo)} is not owner/name`);
  }
  return repo;
}

/**
 * The address of a release asset. APPCREDS_RELEASE_BASE_URL replaces https://github.com for the
 * tests, and only with a loopback server: a job's environment cannot point the download elsewhere.
 */
function assetUrl(env, repo, version, asset) {
  let base = 'https://github.com';
  const override = env.APPCREDS_RELEASE_BASE_URL;
  if (override) {
    if (!/^http:\/\/127\.0\.0\.1:\d+\/?$/.test(override)) {
      throw new Error('APPCREDS_RELEASE_BASE_URL is for the tests only (http://127.0.0.1:PORT)');
    }
    base = override.replace(/\/+$/, '');
  }
  return `${base}/${repo}/releases/download/${encodeURIComponent(version)}/${asset}`;
}

/**
 * Everything the inputs ask for, checked before anything is downloaded: the arguments of
 * `appcreds token` and the environment it gets on top of the step's.
 */
function tokenInvocation(env) {
  const appId = input(env, 'app-id');
  if (!appId) throw new ActionError('the input app-id is required');
  if (!/^[1-9]\d*$/.test(appId)) throw new ActionError(`input app-id: ${JSON.stringify(appId)} is not a GitHub App ID`);

  const targets = ['owner', 'owners', 'repository', 'node-id', 'enterprise'].filter((name) => input(env, name));
  if (targets.length === 0) {
    throw new ActionError('give exactly one of the inputs owner, owners, repository, node-id or enterprise: the installation to get a token for');
  }
  if (targets.length > 1) {
    throw new ActionError(`give exactly one of the inputs owner, owners, repository, node-id or enterprise, not ${targets.join(' and ')}`);
  }
  const target = targets[0];
  const targetValue = input(env, target);
  if (target === 'repository' && !/^[^/\s]+\/[^/\s]+$/.test(targetValue)) {
    throw new ActionError(`input repository: ${JSON.stringify(targetValue)} is not owner/name`);
  }
  // As the CLI and the access rules: 1 to 100 letters, digits and hyphens, no hyphen first or last.
  if (target === 'enterprise' && !/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,98}[A-Za-z0-9])?$/.test(targetValue)) {
    throw new ActionError(`input enterprise: ${JSON.stringify(targetValue)} is not an enterprise slug (letters, digits and hyphens)`);
  }

  const owners = target === 'owners' ? ownersList(targetValue) : null;

  const repositoryIds = list(input(env, 'repository-ids'));
  const bad = repositoryIds.find((id) => !/^[1-9]\d*$/.test(id));
  if (bad !== undefined) throw new ActionError(`input repository-ids: ${JSON.stringify(bad)} is not a repository ID`);
  const repositories = list(input(env, 'repositories'));
  const permissions = list(input(env, 'permissions'));
  for (const p of permissions) {
    if (!/^[a-z_]+=(read|write|admin)$/.test(p)) {
      throw new ActionError(`input permissions: ${JSON.stringify(p)} is not name=level (level read, write or admin)`);
    }
  }

  const args = [];
  const stack = input(env, 'stack');
  if (stack) args.push('--stack', stack);
  const url = input(env, 'installation-token-url');
  if (url) args.push('--installation-token-url', url);
  const oidc = booleanInput(env, 'oidc', true);
  const audience = input(env, 'oidc-audience');
  if (!oidc) args.push('--no-github-oidc');
  else if (audience) args.push('--github-oidc-audience', audience);
  const roleArn = input(env, 'role-arn');
  if (roleArn) {
    if (!ROLE_ARN.test(roleArn)) throw new ActionError(`input role-arn: ${JSON.stringify(roleArn)} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)`);
    args.push('--role-arn', roleArn);
  }
  // What every call of the CLI in this job takes before its command (the git helper's too).
  const cliArgs = [...args];
  args.push('token', '--app-id', appId, ...(owners ? owners.flatMap((o) => ['--owner', o]) : [`--${target}`, targetValue]));
  if (repositoryIds.length) args.push('--repository-ids', repositoryIds.join(','));
  if (repositories.length) args.push('--repositories', repositories.join(','));
  for (const p of permissions) args.push('--permission', p);

  // The CLI masks the token and writes the step's outputs only when it knows it runs in Actions.
  const extraEnv = { GITHUB_ACTIONS: 'true' };
  const region = input(env, 'region');
  if (region) {
    if (!/^[a-z]{2}(-[a-z]+)+-\d+$/.test(region)) throw new ActionError(`input region: ${JSON.stringify(region)} is not an AWS region`);
    extraEnv.AWS_REGION = region;
    extraEnv.AWS_DEFAULT_REGION = region;
  }
  // For git-credential: the helper's owner is the target's, when it names one.
  const owner = target === 'owner' ? targetValue : target === 'repository' ? targetValue.split('/')[0] : '';
  return { args, extraEnv, ...(owners && { owners }), git: { cliArgs, appId, owner, permissions } };
}

/** As appcreds' POST /tokens/installations takes them: at most 10 targets. */
const MAX_OWNERS = 10;

/** The input owners: 1 to MAX_OWNERS logins, each once (GitHub compares them without case). */
function ownersList(value) {
  const owners = list(value);
  const bad = owners.find((o) => !/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?$/.test(o));
  if (bad !== undefined) throw new ActionError(`input owners: ${JSON.stringify(bad)} is not a GitHub login`);
  if (owners.length > MAX_OWNERS) throw new ActionError(`input owners: ${owners.length} owners; at most ${MAX_OWNERS} in one call`);
  const seen = new Set();
  for (const o of owners) {
    if (seen.has(o.toLowerCase())) throw new ActionError(`input owners: ${JSON.stringify(o)} is given twice`);
    seen.add(o.toLowerCase());
  }
  return owners;
}

/**
 * Each owner's token, in the order of `owners` (`undefined` for one missing), from what `appcreds
 * token` wrote to GITHUB_OUTPUT (`written`): its output `tokens` (JSON, owner → token) for several
 * owners (else its `token-OWNER`); for one owner the CLI makes the single call and writes `token`
 * (see singleOwnerOutputs). Never throws, and writes nothing: main.js saves the tokens for the post
 * step first.
 */
function ownersTokens(written, owners) {
  if (owners.length === 1) return [outputValue(written, 'token')];
  let byOwner = {};
  try {
    byOwner = JSON.parse(outputValue(written, 'tokens') || '{}') || {};
  } catch {
    // Each owner's token-OWNER output still says it.
  }
  const token = (o) => (typeof byOwner[o] === 'string' && byOwner[o]) || outputValue(written, `token-${o}`) || undefined;
  return owners.map(token);
}

/**
 * For the input owners with one owner, `owner`: the outputs `tokens` and `token-OWNER` the CLI's
 * single call does not write, so that a workflow reads the same outputs whatever the number of owners.
 */
function singleOwnerOutputs(outputFile, owner, token) {
  appendFileCommand(outputFile, 'tokens', JSON.stringify({ [owner]: token }));
  appendFileCommand(outputFile, `token-${owner}`, token);
}

const ROLE_ARN = /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@\/-]+$/;

/**
 * The https address of the GitHub host git talks to: GITHUB_SERVER_URL (the runner sets it; GitHub
 * Enterprise Server's own), else https://github.com.
 */
function gitServer(env) {
  const url = (env.GITHUB_SERVER_URL || 'https://github.com').trim().replace(/\/+$/, '');
  if (!/^https:\/\/[A-Za-z0-9.-]+(?::\d+)?$/.test(url)) {
    throw new ActionError(`GITHUB_SERVER_URL ${JSON.stringify(url)} is not an https host: git-credential needs one`);
  }
  return url;
}

/** `value` as one word for the shell git runs a helper with (sh; Git Bash on Windows). */
function shellWord(value) {
  return `'${String(value).replace(/'/g, "'\\''")}'`;
}

/**
 * What `git-credential: true` adds to the job's git configuration, in order, as [key, value]: for
 * the GitHub host, useHttpPath (git names the repository), an empty helper (the helpers of the
 * config files are not asked), git's credential-cache on its own socket beside the CLI (not on
 * Windows, whose git has no cache), then `appcreds git-credential` with the CLI's arguments of
 * this step (the environment of later steps is theirs, so the region goes on the command line).
 * With the cache, the CLI records in APPCREDS_GIT_LEDGER, beside the socket, the URL git asked for
 * and the SHA-256 of each token it answers (never the token): the post step asks the cache for
 * those and revokes them (cachedTokens). (An environment variable, not a flag: a CLI older than
 * the ledger passes over it.)
 * Before git 2.41 the cache ignores the token's expiry, so it keeps a token 50 minutes, not an hour.
 */
function gitCredentialConfig(env, invocation, binary, platform = process.platform, { expiryAware = true } = {}) {
  const section = `credential.${gitServer(env)}`;
  const { cliArgs, appId, owner, permissions } = invocation.git;
  const helperArgs = [...cliArgs, 'git-credential', '--app-id', appId];
  if (owner) helperArgs.push('--owner', owner);
  for (const p of permissions) helperArgs.push('--permission', p);
  const program = platform === 'win32' ? binary.replace(/\\/g, '/') : binary;
  const socket = platform === 'win32' ? null : path.join(path.dirname(binary), 'git-cache', 'socket');
  const region = Object.entries(invocation.extraEnv).filter(([name]) => name.startsWith('AWS_'));
  const ledger = socket ? [['APPCREDS_GIT_LEDGER', gitLedger(socket)]] : [];
  const vars = [...ledger, ...region].map(([name, value]) => `${name}=${shellWord(value)} `).join('');
  const entries = [[`${section}.useHttpPath`, 'true'], [`${section}.helper`, '']];
  const timeout = expiryAware ? 3600 : 3000;
  if (socket) entries.push([`${section}.helper`, `cache --timeout=${timeout} --socket=${shellWord(socket)}`]);
  entries.push([`${section}.helper`, `!${vars}${[program, ...helperArgs].map(shellWord).join(' ')}`]);
  return { entries, socket };
}

/** The file beside the cache's socket where the CLI records the URLs of the tokens git stored. */
function gitLedger(socket) {
  return path.join(path.dirname(socket), 'ledger');
}

/** The most URLs of the ledger the post step asks the cache about (a later step can write to it). */
const LEDGER_MAX_URLS = 200;
/** The most of the ledger read. */
const LEDGER_MAX_BYTES = 256 * 1024;
/** How long one git command of the action may take (a socket a later step replaced may never answer). */
const GIT_TIMEOUT_MS = 5 * 1000;
/** How long the post step asks the cache, in all. */
const CACHE_ASKING_MS = 30 * 1000;

/**
 * The ledger's lines: a regular file (opened without following a link and without waiting: a
 * later step could have left a FIFO or a link to a device there), its last LEDGER_MAX_BYTES (the
 * newest tokens, the likeliest to be in the cache still).
 */
function readLedger(ledger) {
  let fd;
  try {
    fd = fs.openSync(ledger, fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK || 0) | (fs.constants.O_NOFOLLOW || 0));
  } catch {
    return [];
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) return [];
    const from = Math.max(0, stat.size - LEDGER_MAX_BYTES);
    const buffer = Buffer.alloc(Math.min(stat.size, LEDGER_MAX_BYTES));
    const read = fs.readSync(fd, buffer, 0, buffer.length, from);
    const lines = buffer.subarray(0, read).toString('utf8').split('\n');
    return from > 0 ? lines.slice(1) : lines;
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The tokens of the helper's that git's credential-cache on `socket` still holds: the ledger
 * beside the socket has, for each token the CLI answered, the URL git asked for and the token's
 * SHA-256. Each URL (a plain https one; the newest LEDGER_MAX_URLS, each once) is asked of the
 * cache, for the helper's user, with git (handed none of the step's secrets), and what the cache
 * gives back is taken only if its SHA-256 is one the CLI recorded for that URL (a token some step
 * stored in the cache, the job's GITHUB_TOKEN say, is not the helper's to revoke) and it has not
 * expired (the cache keeps a token that is used past its expiry). A later step can write to the
 * ledger; at worst the post step asks the cache for more, each question within GIT_TIMEOUT_MS,
 * none after CACHE_ASKING_MS. `notes` gets what was passed over.
 */
function cachedTokens(env, socket, notes = () => {}) {
  const ledger = socket ? gitLedger(socket) : '';
  if (!socket || !fs.existsSync(socket)) return [];
  const line = /^(https:\/\/[A-Za-z0-9.-]+(?::\d+)?\/[A-Za-z0-9._~/-]+) ([0-9a-f]{64})$/;
  const hashes = new Map();
  for (const text of readLedger(ledger)) {
    const m = line.exec(text);
    if (!m) continue;
    if (!hashes.has(m[1])) hashes.set(m[1], new Set());
    hashes.get(m[1]).add(m[2]);
  }
  const urls = [...hashes.keys()];
  if (urls.length > LEDGER_MAX_URLS) notes(`the ledger names ${urls.length} URLs: the cache is asked about the newest ${LEDGER_MAX_URLS}`);
  const until = Date.now() + CACHE_ASKING_MS;
  const tokens = new Set();
  for (const url of urls.slice(-LEDGER_MAX_URLS)) {
    if (Date.now() > until) {
      notes('asking the cache took too long: the rest of the ledger is passed over');
      break;
    }
    let answer;
    try {
      answer = execFileSync('git', ['credential-cache', `--socket=${socket}`, 'get'], {
        env: gitEnv(env), input: `url=${url}\nusername=x-access-token\n\n`, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'],
        timeout: GIT_TIMEOUT_MS, killSignal: 'SIGKILL',
      });
    } catch {
      continue;
    }
    const password = /^password=(.+)$/m.exec(answer);
    const expiry = /^password_expiry_utc=(\d+)$/m.exec(answer);
    if (expiry && Number(expiry[1]) * 1000 <= Date.now()) continue;
    if (password && hashes.get(url).has(crypto.createHash('sha256').update(password[1]).digest('hex'))) tokens.add(password[1]);
  }
  return [...tokens];
}

/**
 * The environment git is run with: what it needs, not the step's (its state holds the token, its
 * inputs and ACTIONS_* variables more). Elsewhere than Windows only PATH, HOME, TMPDIR, the locale
 * and GIT_CONFIG_NOSYSTEM; on Windows, whose processes need more of theirs, the step's without
 * STATE_*, INPUT_*, ACTIONS_*, AWS_* and the GitHub tokens.
 */
function gitEnv(env, platform = process.platform) {
  if (platform === 'win32') {
    const secret = /^(STATE_|INPUT_|ACTIONS_|AWS_)|^(GITHUB_TOKEN|GH_TOKEN)$/i;
    return Object.fromEntries(Object.entries(env).filter(([name]) => !secret.test(name)));
  }
  const kept = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'GIT_CONFIG_NOSYSTEM'];
  return Object.fromEntries(kept.filter((name) => env[name] !== undefined).map((name) => [name, env[name]]));
}

/**
 * Runs `git ARGS` (the first git on PATH), returning its output; a failure's exit status is on the
 * error, and one that takes `timeout` ms is stopped.
 */
function git(env, args, timeout = GIT_TIMEOUT_MS) {
  return execFileSync('git', args, { env: gitEnv(env), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout, killSignal: 'SIGKILL' });
}

/** The runner's git version as [major, minor] ("git version 2.39.2.windows.1": [2, 39]). */
function gitVersion(env) {
  let text;
  try {
    // A first start of git can be slow (Windows): 30 s, not the cache's 5.
    text = git(env, ['--version'], 30 * 1000);
  } catch (err) {
    const why = err.code === 'ENOENT' ? 'no git on PATH' : err.code === 'ETIMEDOUT' ? 'git --version did not answer in 30 s' : err.stderr;
    throw new ActionError(`git-credential needs git: ${String(why || err.message).trim()}`);
  }
  const m = /^git version (\d+)\.(\d+)/.exec(text);
  if (!m) throw new ActionError(`git-credential: cannot read the git version from ${JSON.stringify(text.trim())}`);
  return [Number(m[1]), Number(m[2])];
}

/**
 * Configures the git helper (gitCredentialConfig) for the later steps of this job only, through
 * GITHUB_ENV: GIT_CONFIG_COUNT, GIT_CONFIG_KEY_<n> and GIT_CONFIG_VALUE_<n> (git 2.31 or later
 * reads them as if given with -c), after any the job set already. Nothing is written to a git
 * config file, so another job on the same runner or $HOME never sees it, and nothing is left to
 * remove. The cache's socket goes to the step's state first: the post step stops that daemon.
 */
function configureGitCredential(env, invocation, binary, stateFile, envFile, platform = process.platform) {
  if (!stateFile) throw new ActionError('GITHUB_STATE is not set: the post step could not stop git\'s credential-cache, so git is not configured');
  if (!envFile) throw new ActionError('GITHUB_ENV is not set: git-credential configures git for the later steps through it');
  const [major, minor] = gitVersion(env);
  if (major < 2 || (major === 2 && minor < 31)) {
    throw new ActionError(`git-credential needs git 2.31 or later (it reads GIT_CONFIG_COUNT); this runner's git is ${major}.${minor}`);
  }
  const count = (env.GIT_CONFIG_COUNT || '').trim();
  if (count !== '' && !/^\d{1,4}$/.test(count)) {
    throw new ActionError(`GIT_CONFIG_COUNT is ${JSON.stringify(count)}, not a number: git-credential cannot add to it`);
  }
  const first = Number(count || '0');
  const expiryAware = major > 2 || minor >= 41;
  const { entries, socket } = gitCredentialConfig(env, invocation, binary, platform, { expiryAware });
  if (socket) appendFileCommand(stateFile, 'gitCache', socket);
  entries.forEach(([key, value], i) => {
    appendFileCommand(envFile, `GIT_CONFIG_KEY_${first + i}`, key);
    appendFileCommand(envFile, `GIT_CONFIG_VALUE_${first + i}`, value);
  });
  appendFileCommand(envFile, 'GIT_CONFIG_COUNT', String(first + entries.length));
  const host = entries[0][0].replace(/^credential\./, '').replace(/\.useHttpPath$/, '');
  return `git asks appcreds for ${host} in the later steps of this job${socket ? ", with git's credential-cache in front" : ''}`;
}

/**
 * The post step's clean-up for configureGitCredential: stops the credential-cache daemon on the
 * step's own socket (the tokens it holds go with it). The git configuration itself was only in
 * the job's environment, which ends with the job.
 */
function stopGitCache(env, socket) {
  if (!socket || !fs.existsSync(socket)) return 'git\'s credential-cache for this job was not started';
  try {
    git(env, ['credential-cache', `--socket=${socket}`, 'exit']);
  } catch (err) {
    throw new ActionError(`cannot stop git's credential-cache: ${String(err.stderr || err.message).trim()}`);
  }
  return "git's credential-cache for this job is stopped";
}

/** GETs `url` into memory, following at most MAX_REDIRECTS redirects (never from https to http). */
function download(url, redirectsLeft = MAX_REDIRECTS) {
  return new Promise((resolve, reject) => {
    const client = url.startsWith('https:') ? https : url.startsWith('http:') ? http : null;
    if (!client) return reject(new ActionError(`cannot download ${url}: not an http(s) address`));
    const req = client.get(url, { headers: { 'user-agent': 'appcreds-action', accept: 'application/octet-stream' } }, (res) => {
      const status = res.statusCode || 0;
      if ([301, 302, 303, 307, 308].includes(status)) {
        res.resume();
        const location = res.headers.location;
        if (!location) return reject(new ActionError(`${url} answered ${status} without a Location`));
        if (redirectsLeft <= 0) return reject(new ActionError(`too many redirects downloading ${url}`));
        const next = new URL(location, url).toString();
        if (url.startsWith('https:') && !next.startsWith('https:')) {
          return reject(new ActionError(`${url} redirects to ${next}: refusing to leave https`));
        }
        return resolve(download(next, redirectsLeft - 1));
      }
      if (status !== 200) {
        res.resume();
        const hint = status === 404 ? ' (is there a release with this tag, and does it have the asset?)' : '';
        return reject(new ActionError(`downloading ${url}: HTTP ${status}${hint}`));
      }
      const chunks = [];
      let size = 0;
      res.on('data', (chunk) => {
        size += chunk.length;
        if (size > MAX_DOWNLOAD_BYTES) {
          req.destroy(new ActionError(`${url} is larger than ${MAX_DOWNLOAD_BYTES} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      res.on('end', () => resolve(Buffer.concat(chunks)));
      res.on('error', reject);
    });
    req.setTimeout(DOWNLOAD_TIMEOUT_MS, () => req.destroy(new ActionError(`downloading ${url}: timed out`)));
    req.on('error', (err) => reject(err instanceof ActionError ? err : new ActionError(`downloading ${url}: ${err.message}`)));
  });
}

/**
 * Downloads the runner's asset (see runner: RUNNER_OS and RUNNER_ARCH, else Node's platform and
 * arch), checks its SHA-256 against the expected digest (the input sha256, else this action's
 * committed digests.json: see expectedDigest), and writes the executable in it (appcreds, or
 * appcreds.exe on Windows) into a new directory under RUNNER_TEMP. Everything is checked before the
 * download, and the archive is unpacked only once its digest is right. Returns the binary's path and
 * the archive's digest. The release's .sha256 is never downloaded.
 */
async function installCli(env, platform = process.platform, arch = process.arch) {
  const here = runner(env, platform, arch);
  const targetName = target(here.platform, here.arch);
  const asset = assetName(here.platform, here.arch);
  const executable = executableName(here.platform);
  const version = releaseVersion(env);
  const repo = releaseRepository(env);
  const pinned = pinnedDigest(input(env, 'sha256'), asset);
  const digests = loadDigests();
  const expected = expectedDigest(digests, version, targetName, pinned);
  const committed = Object.prototype.hasOwnProperty.call(digests, version) ? digests[version][targetName] : undefined;
  if (pinned && committed && committed !== pinned) {
    process.stdout.write(
      `::warning::${escapeMessage(`the input sha256 (${pinned}) is not the digest of ${version} committed in ${DIGESTS_NAME} (${committed}): the input decides`)}${os.EOL}`
    );
  }

  const url = assetUrl(env, repo, version, asset);
  const archive = await download(url);
  const actual = crypto.createHash('sha256').update(archive).digest('hex');
  if (actual !== expected.digest) {
    throw new ActionError(
      `checksum mismatch for ${asset} of ${version}: expected ${expected.digest} (${expected.from}), got ${actual}; not running it`
    );
  }

  let bytes;
  try {
    bytes = archiveMember(archive, executable);
  } catch (err) {
    if (!(err instanceof ActionError)) throw err;
    throw new ActionError(`cannot extract ${executable} from ${asset}: ${err.message}`);
  }
  if (!bytes) throw new ActionError(`cannot extract ${executable} from ${asset}: it holds no file named ${executable} at its root`);
  const dir = fs.mkdtempSync(path.join(env.RUNNER_TEMP || os.tmpdir(), 'appcreds-'));
  const binary = path.join(dir, executable);
  fs.writeFileSync(binary, bytes, { mode: 0o755, flag: 'wx' });
  fs.chmodSync(binary, 0o755);
  process.stdout.write(`appcreds ${version}: ${asset} has the SHA-256 ${actual} (${expected.from})${os.EOL}`);
  return { binary, digest: actual };
}

/**
 * The GitHub REST API base: GITHUB_API_URL (the runner sets it; GitHub Enterprise Server's is
 * https://HOST/api/v3), else https://api.github.com. Only https, since the token goes there; plain
 * http only to 127.0.0.1, for the tests.
 */
function apiUrl(env) {
  const url = (env.GITHUB_API_URL || 'https://api.github.com').trim().replace(/\/+$/, '');
  if (!/^https:\/\/[^/\s?#]+(\/[^\s?#]*)?$/.test(url) && !/^http:\/\/127\.0\.0\.1:\d+$/.test(url)) {
    throw new ActionError(`GITHUB_API_URL ${JSON.stringify(url)} is not an https URL: the token was not revoked; it stays valid until it expires`);
  }
  return url;
}

/**
 * Revokes an installation token at GitHub: `DELETE /installation/token`, authenticated with the token
 * itself (what `appcreds revoke` does), without running any program. Resolves to a line for the log;
 * rejects with an ActionError whose message never holds the token.
 */
async function revokeToken(env, token) {
  // A token is one printable word; anything else would not be a valid header (and the error would quote it).
  if (!/^[\x21-\x7e]+$/.test(token)) throw new ActionError('the saved token is not a token: nothing was revoked');
  const url = `${apiUrl(env)}/installation/token`;
  let res;
  try {
    res = await fetch(url, {
      method: 'DELETE',
      headers: {
        authorization: `Bearer ${token}`,
        accept: 'application/vnd.github+json',
        'x-github-api-version': '2022-11-28',
        'user-agent': 'appcreds-action',
      },
      // A redirect would take the token elsewhere: GitHub answers this request itself.
      redirect: 'error',
      signal: AbortSignal.timeout(REVOKE_TIMEOUT_MS),
    });
  } catch (err) {
    const cause = err && err.cause ? err.cause.code || err.cause.message : '';
    const reason = err && err.name === 'TimeoutError' ? 'timed out' : [err && err.message, cause].filter(Boolean).join(': ');
    throw new ActionError(`revoking the token failed: ${redact(reason, token)}; it stays valid until it expires`);
  }
  await res.arrayBuffer().catch(() => undefined);
  if (res.status === 204) return 'the token is revoked';
  if (res.status === 401) throw new ActionError('GitHub does not accept the token (already revoked or expired)');
  throw new ActionError(`revoking the token failed: GitHub answered HTTP ${res.status}; it stays valid until it expires`);
}

/** `text` with every occurrence of `secret` replaced. */
function redact(text, secret) {
  return secret ? String(text).split(secret).join('***') : String(text);
}

/** The value of `name` among `name=value` lines (the last one wins), as the CLI writes GITHUB_OUTPUT. */
function outputValue(text, name) {
  let value;
  for (const line of text.split('\n')) {
    if (line.startsWith(`${name}=`)) value = line.slice(name.length + 1).replace(/\r$/, '');
  }
  return value;
}

/** Appends `name` with `value` to a GITHUB_STATE / GITHUB_OUTPUT file, in the multi-line form. */
function appendFileCommand(file, name, value) {
  let delimiter;
  do delimiter = `ghadelimiter_${crypto.randomUUID()}`;
  while (value.includes(delimiter));
  fs.appendFileSync(file, `${name}<<${delimiter}${os.EOL}${value}${os.EOL}${delimiter}${os.EOL}`, { encoding: 'utf8' });
}

/** A workflow command's message, escaped as the runner expects. */
function escapeMessage(message) {
  return String(message).replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A');
}

/** Runs `fn`; an error becomes `::error::` and exit code 1 (a message, never a stack for our own). */
async function runStep(fn) {
  try {
    await fn();
  } catch (err) {
    const message = err instanceof ActionError ? err.message : (err && err.stack) || String(err);
    process.stdout.write(`::error::${escapeMessage(message)}${os.EOL}`);
    process.exitCode = 1;
  }
}

module.exports = {
  ActionError,
  BUNDLE,
  DIGESTS_FILE,
  MAX_REDIRECTS,
  RELEASE_VERSION,
  TARGETS,
  apiUrl,
  appendFileCommand,
  archiveMember,
  assetName,
  assetUrl,
  booleanInput,
  configureGitCredential,
  download,
  escapeMessage,
  executableName,
  expectedDigest,
  cachedTokens,
  gitCredentialConfig,
  gitEnv,
  input,
  installCli,
  list,
  loadDigests,
  outputValue,
  ownersTokens,
  singleOwnerOutputs,
  parseDigests,
  pinnedDigest,
  redact,
  releaseAssetName,
  releaseRepository,
  releaseVersion,
  revokeToken,
  runStep,
  stopGitCache,
  runner,
  runnerTarget,
  target,
  tokenInvocation,
};
