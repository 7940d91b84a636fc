'use strict';
// The action's post step: revoke the token main.js saved (unless skip-revoke), then remove the
// downloaded CLI. Nothing here fails the job: a token that cannot be revoked expires by itself.
//
// The revocation is GitHub's `DELETE /installation/token`, authenticated with the token itself (what
// `appcreds revoke` sends), made here with Node's fetch: the post step runs no program at all. The
// downloaded CLI sat in RUNNER_TEMP, the job's shared scratch directory, through every later step of
// the job, and any of them (or a tool it ran) could have replaced it; running it here would hand the
// token to whatever is there now. Hashing it again against the digest main.js saw, just before
// running it, would narrow that to the moment between the check and the exec without closing it (a
// process a step left running can swap the file in between), and would still hand the token to a
// program. This script is the action's own file, which the runner loaded from the action's commit.
// The token goes only in the Authorization header, to GITHUB_API_URL over https, and never into a
// log line: errors are redacted.

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const lib = require('./lib.js');

function warn(message) {
  process.stdout.write(`::warning::${lib.escapeMessage(message)}\n`);
}

async function revoke(env) {
  if (lib.booleanInput(env, 'skip-revoke', false)) {
    process.stdout.write('skip-revoke: the token is left valid until it expires\n');
    return;
  }
  const token = env.STATE_token || '';
  if (!token) {
    process.stdout.write('no token to revoke\n');
    return;
  }
  try {
    process.stdout.write(`${await lib.revokeToken(env, token)}\n`);
  } catch (err) {
    const message = err instanceof lib.ActionError ? err.message : `revoking the token failed: ${String((err && err.message) || err)}`;
    warn(lib.redact(message, token));
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

(async () => {
  const env = process.env;
  const binary = env.STATE_binary || '';
  try {
    await revoke(env);
  } catch (err) {
    warn(lib.redact(err instanceof lib.ActionError ? err.message : String((err && err.stack) || err), env.STATE_token || ''));
  } finally {
    try {
      cleanUp(env, binary);
    } catch (err) {
      warn(`cannot remove the downloaded CLI: ${err.message}`);
    }
  }
})();
