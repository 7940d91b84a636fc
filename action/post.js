'use strict';
// The action's post step: revoke the token main.js saved (unless skip-revoke); revoke the helper's
// tokens that the git credential-cache of main.js's git-credential configuration still holds
// (unless skip-revoke; found by the URLs and hashes the CLI recorded as it answered git), then stop
// that cache (the configuration itself was only in the job's environment); then remove the
// downloaded CLI. Nothing here fails the job: a token that cannot be revoked expires by itself.
//
// The revocation is GitHub's `DELETE /installation/token`, authenticated with the token itself (what
// `appcreds revoke` sends), made here with Node's fetch: the post step runs no program but the
// runner's git (asked for the helper's cached tokens, and to stop the cache, with none of the step's
// secrets in its environment). The downloaded CLI sat in RUNNER_TEMP, the job's shared scratch
// directory, through every later step of the job, and any of them (or a tool it ran) could have
// replaced it; running it here would hand the token to whatever is there now. Hashing it again against the digest main.js saw, just before
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
  // One token a line (several with the input owners): each is revoked, whatever became of the others.
  const tokens = savedTokens(env);
  if (tokens.length === 0) {
    process.stdout.write('no token to revoke\n');
    return;
  }
  for (const token of tokens) {
    try {
      process.stdout.write(`${await lib.revokeToken(env, token)}\n`);
    } catch (err) {
      const message = err instanceof lib.ActionError ? err.message : `revoking the token failed: ${String((err && err.message) || err)}`;
      warn(redactTokens(env, message));
    }
  }
}

/** Revokes the tokens git's credential-cache on `socket` holds (lib.cachedTokens), unless skip-revoke. */
async function revokeCached(env, socket) {
  if (lib.booleanInput(env, 'skip-revoke', false)) return;
  const tokens = lib.cachedTokens(env, socket, (note) => process.stdout.write(`git's credential-cache: ${note}\n`));
  let revoked = 0;
  for (const token of tokens) {
    try {
      await lib.revokeToken(env, token);
      revoked += 1;
    } catch (err) {
      const message = err instanceof lib.ActionError ? err.message : `revoking a token of git's failed: ${String((err && err.message) || err)}`;
      // Not accepted: revoked already (or expired since it was asked); nothing to warn about.
      const refused = message.startsWith('GitHub does not accept the token');
      const line = lib.redact(`git's credential-cache: ${message}`, token);
      if (refused) process.stdout.write(`${line}\n`);
      else warn(line);
    }
  }
  if (tokens.length > 0) process.stdout.write(`${revoked} of the ${tokens.length} tokens git's credential-cache held revoked\n`);
}

/** The tokens main.js saved, one a line. */
function savedTokens(env) {
  return (env.STATE_token || '').split('\n').filter(Boolean);
}

/** `text` with each saved token replaced. */
function redactTokens(env, text) {
  return savedTokens(env).reduce((redacted, t) => lib.redact(redacted, t), String(text));
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
    warn(redactTokens(env, err instanceof lib.ActionError ? err.message : String((err && err.stack) || err)));
  } finally {
    if (env.STATE_gitCache) {
      try {
        await revokeCached(env, env.STATE_gitCache);
      } catch (err) {
        warn(`cannot revoke the tokens git's credential-cache holds: ${err.message}`);
      }
      try {
        // The runner's git, never the downloaded CLI; it is handed no token.
        process.stdout.write(`${lib.stopGitCache(env, env.STATE_gitCache)}\n`);
      } catch (err) {
        warn(err instanceof lib.ActionError ? err.message : `cannot stop git's credential-cache: ${err.message}`);
      }
    }
    try {
      cleanUp(env, binary);
    } catch (err) {
      warn(`cannot remove the downloaded CLI: ${err.message}`);
    }
  }
})();
