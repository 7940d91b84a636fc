'use strict';
// The action's post step: revoke the token main.js saved (unless skip-revoke), then remove the
// downloaded CLI. Nothing here fails the job: a token that cannot be revoked expires by itself.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { execFileSync } = require('node:child_process');
const lib = require('./lib.js');

function warn(message) {
  process.stdout.write(`::warning::${lib.escapeMessage(message)}\n`);
}

function revoke(env, binary) {
  if (lib.booleanInput(env, 'skip-revoke', false)) {
    process.stdout.write('skip-revoke: the token is left valid until it expires\n');
    return;
  }
  const token = env.STATE_token || '';
  if (!token) {
    process.stdout.write('no token to revoke\n');
    return;
  }
  if (!binary || !fs.existsSync(binary)) {
    warn('the appcreds CLI is gone: the token was not revoked and stays valid until it expires');
    return;
  }
  // The token goes in the environment, never on the command line (the process list shows that).
  const childEnv = { ...env, APPCREDS_TOKEN: token };
  delete childEnv.STATE_token;
  try {
    execFileSync(binary, ['revoke', '--token-env', 'APPCREDS_TOKEN'], { env: childEnv, stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    const how = err.status != null ? `exit code ${err.status}` : err.signal ? `signal ${err.signal}` : err.message;
    warn(`revoking the token failed (${how}): it stays valid until it expires`);
  }
}

/** Removes the directory main.js made for the CLI (only that: a directory appcreds-* under the temp dir). */
function cleanUp(env, binary) {
  if (!binary) return;
  const dir = path.dirname(binary);
  const temp = path.resolve(env.RUNNER_TEMP || os.tmpdir());
  if (path.dirname(path.resolve(dir)) === temp && path.basename(dir).startsWith('appcreds-')) {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const env = process.env;
const binary = env.STATE_binary || '';
try {
  revoke(env, binary);
} catch (err) {
  warn(err instanceof lib.ActionError ? err.message : String((err && err.stack) || err));
} finally {
  try {
    cleanUp(env, binary);
  } catch (err) {
    warn(`cannot remove the downloaded CLI: ${err.message}`);
  }
}
