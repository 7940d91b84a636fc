'use strict';
// The action's main step: download the appcreds CLI and check it against the digest this commit of
// the action has for it (action/digests.json, or the input sha256), run `appcreds token`, keep the
// token for the post step (which revokes it). The CLI itself masks the token and writes the outputs.

const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const lib = require('./lib.js');

lib.runStep(async () => {
  const env = process.env;
  // Every input is checked before anything is downloaded.
  const { args, extraEnv } = lib.tokenInvocation(env);
  const skipRevoke = lib.booleanInput(env, 'skip-revoke', false);
  const outputFile = env.GITHUB_OUTPUT;
  if (!outputFile) throw new lib.ActionError('GITHUB_OUTPUT is not set: this runs as a step of a GitHub Actions job');
  const stateFile = env.GITHUB_STATE;

  const { binary } = await lib.installCli(env);
  // For the post step's clean-up only: it never runs what is at this path (see post.js).
  if (stateFile) lib.appendFileCommand(stateFile, 'binary', binary);

  const before = fs.statSync(outputFile, { throwIfNoEntry: false })?.size ?? 0;
  try {
    // stdout is the runner's: the CLI's ::add-mask:: reaches it before anything else shows the token.
    execFileSync(binary, args, { env: { ...env, ...extraEnv }, stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    const how = err.status != null ? `exit code ${err.status}` : err.signal ? `signal ${err.signal}` : err.message;
    throw new lib.ActionError(`appcreds token failed (${how}); its own message is above`);
  }

  const written = fs.readFileSync(outputFile).subarray(before).toString('utf8');
  const token = lib.outputValue(written, 'token');
  if (!token) throw new lib.ActionError('appcreds token wrote no token to GITHUB_OUTPUT');
  if (skipRevoke) return;
  if (!stateFile) {
    process.stdout.write('::warning::GITHUB_STATE is not set: the token will not be revoked after the job\n');
    return;
  }
  lib.appendFileCommand(stateFile, 'token', token);
});
