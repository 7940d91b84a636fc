'use strict';
// The appcreds action's logic, on Node's built-in modules only: nothing is installed at run time.
// main.js and post.js are thin wrappers; the tests call these functions and run both scripts.

const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const https = require('node:https');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');

/** An error whose message is meant for the person reading the job's log. */
class ActionError extends Error {}

const MAX_REDIRECTS = 5;
const MAX_DOWNLOAD_BYTES = 256 * 1024 * 1024;
const DOWNLOAD_TIMEOUT_MS = 120 * 1000;

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

/** The release asset built for this runner. */
function assetName(platform, arch) {
  if (platform === 'linux' && arch === 'x64') return 'appcreds-x86_64-unknown-linux-gnu.tar.gz';
  if (platform === 'linux' && arch === 'arm64') return 'appcreds-aarch64-unknown-linux-gnu.tar.gz';
  throw new ActionError(
    `appcreds is released for Linux on x64 and arm64 runners only, not ${platform}/${arch}: ` +
      'use a Linux runner, or build the CLI (cargo install) and run `appcreds token` yourself'
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

  const targets = ['owner', 'repository', 'node-id'].filter((name) => input(env, name));
  if (targets.length === 0) {
    throw new ActionError('give exactly one of the inputs owner, repository or node-id: the installation to get a token for');
  }
  if (targets.length > 1) {
    throw new ActionError(`give exactly one of the inputs owner, repository or node-id, not ${targets.join(' and ')}`);
  }
  const target = targets[0];
  const targetValue = input(env, target);
  if (target === 'repository' && !/^[^/\s]+\/[^/\s]+$/.test(targetValue)) {
    throw new ActionError(`input repository: ${JSON.stringify(targetValue)} is not owner/name`);
  }

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
  args.push('token', '--app-id', appId, `--${target}`, targetValue);
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
  return { args, extraEnv };
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

/** Checks `data` against a `sha256sum` line for `asset`; throws unless they match. */
function verifySha256(data, checksumText, asset) {
  const line = checksumText.toString('utf8').split('\n').map((l) => l.trim()).find(Boolean) || '';
  const match = /^([0-9a-fA-F]{64})(?:\s+\*?(\S+))?$/.exec(line);
  if (!match) throw new ActionError(`${asset}.sha256 is not a sha256sum line`);
  if (match[2] && path.basename(match[2]) !== asset) {
    throw new ActionError(`${asset}.sha256 is the checksum of ${match[2]}, not of ${asset}`);
  }
  const actual = crypto.createHash('sha256').update(data).digest('hex');
  if (actual !== match[1].toLowerCase()) {
    throw new ActionError(`checksum mismatch for ${asset}: expected ${match[1].toLowerCase()}, got ${actual}; not running it`);
  }
}

/**
 * Downloads the runner's asset and its .sha256, verifies it, and extracts `appcreds` into a new
 * directory under RUNNER_TEMP. Returns the binary's path.
 */
async function installCli(env, platform = process.platform, arch = process.arch) {
  const asset = assetName(platform, arch);
  const version = releaseVersion(env);
  const repo = releaseRepository(env);
  const url = assetUrl(env, repo, version, asset);
  const [archive, checksum] = await Promise.all([download(url), download(`${url}.sha256`)]);
  verifySha256(archive, checksum, asset);

  const dir = fs.mkdtempSync(path.join(env.RUNNER_TEMP || os.tmpdir(), 'appcreds-'));
  const archivePath = path.join(dir, asset);
  fs.writeFileSync(archivePath, archive, { mode: 0o600 });
  try {
    execFileSync('tar', ['-xzf', archivePath, '-C', dir, '--no-same-owner', '--', 'appcreds'], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (err) {
    throw new ActionError(`cannot extract appcreds from ${asset}: ${String(err.stderr || err.message).trim()}`);
  } finally {
    fs.rmSync(archivePath, { force: true });
  }
  const binary = path.join(dir, 'appcreds');
  const stat = fs.lstatSync(binary, { throwIfNoEntry: false });
  if (!stat || !stat.isFile()) throw new ActionError(`${asset} holds no file named appcreds at its root`);
  fs.chmodSync(binary, 0o755);
  return binary;
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
  MAX_REDIRECTS,
  appendFileCommand,
  assetName,
  assetUrl,
  booleanInput,
  download,
  escapeMessage,
  input,
  installCli,
  list,
  outputValue,
  releaseRepository,
  releaseVersion,
  runStep,
  tokenInvocation,
  verifySha256,
};
