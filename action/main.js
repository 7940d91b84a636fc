'use strict';
// The action's main step: download the appcreds CLI and check it against the digest this commit of
// the action has for it (action/digests.json, or the input sha256), run `appcreds token`, keep the
// token for the post step (which revokes it). The CLI itself masks the token and writes the outputs.
// With git-credential, git asks the CLI for a token per repository in the later steps of the job:
// the configuration is in the job's environment only (GITHUB_ENV), never in a git config file.
// The token is saved for the post step before git is configured, so a failure there still has it
// revoked.

const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const lib = require('./lib.js');

lib.runStep(async () => {
  const env = process.env;
  // Every input is checked before anything is downloaded.
  const invocation = lib.tokenInvocation(env);
  const { args, extraEnv } = invocation;
  const gitCredential = lib.booleanInput(env, 'git-credential', false);
  const skipRevoke = lib.booleanInput(env, 'skip-revoke', false);
  // Only the git helper: no token of the step's own (no outputs, nothing to revoke).
  const skipToken = lib.booleanInput(env, 'skip-token', false);
  if (skipToken && !gitCredential) throw new lib.ActionError('skip-token needs git-credential: without a token or the git helper the step would do nothing');
  const outputFile = env.GITHUB_OUTPUT;
  if (!outputFile) throw new lib.ActionError('GITHUB_OUTPUT is not set: this runs as a step of a GitHub Actions job');
  const stateFile = env.GITHUB_STATE;
  if (gitCredential && !stateFile) {
    throw new lib.ActionError('GITHUB_STATE is not set: the post step could not stop git\'s credential-cache, so git is not configured');
  }
  if (gitCredential && !env.GITHUB_ENV) {
    throw new lib.ActionError('GITHUB_ENV is not set: git-credential configures git for the later steps through it');
  }

  const { binary } = await lib.installCli(env);
  // For the post step's clean-up only: it never runs what is at this path (see post.js).
  if (stateFile) lib.appendFileCommand(stateFile, 'binary', binary);
  if (skipToken) {
    process.stdout.write(`${lib.configureGitCredential(env, invocation, binary, stateFile, env.GITHUB_ENV)}\n`);
    return;
  }

  const before = fs.statSync(outputFile, { throwIfNoEntry: false })?.size ?? 0;
  try {
    // stdout is the runner's: the CLI's ::add-mask:: reaches it before anything else shows the token.
    execFileSync(binary, args, { env: { ...env, ...extraEnv }, stdio: ['ignore', 'inherit', 'inherit'] });
  } catch (err) {
    const how = err.status != null ? `exit code ${err.status}` : err.signal ? `signal ${err.signal}` : err.message;
    throw new lib.ActionError(`appcreds token failed (${how}); its own message is above`);
  }

  const written = fs.readFileSync(outputFile).subarray(before).toString('utf8');
  // With owners: a token each (undefined for one the CLI did not write).
  const tokens = invocation.owners ? lib.ownersTokens(written, invocation.owners) : [lib.outputValue(written, 'token')];
  const minted = tokens.filter(Boolean);
  if (!skipRevoke && stateFile) {
    // One token a line: post revokes each. Saved before anything below can fail (a missing
    // owner's token, an output, git's configuration): post still revokes every token minted.
    if (minted.length > 0) lib.appendFileCommand(stateFile, 'token', minted.join('\n'));
  } else if (!skipRevoke) {
    process.stdout.write('::warning::GITHUB_STATE is not set: the token will not be revoked after the job\n');
  }
  if (minted.length < tokens.length) {
    const missing = invocation.owners ? ` for ${invocation.owners.filter((_, i) => !tokens[i]).join(', ')}` : '';
    throw new lib.ActionError(`appcreds token wrote no token${missing} to GITHUB_OUTPUT`);
  }
  // One owner: the CLI's single call wrote token; the outputs tokens and token-OWNER are added here.
  if (invocation.owners?.length === 1) lib.singleOwnerOutputs(outputFile, invocation.owners[0], tokens[0]);
  if (gitCredential) process.stdout.write(`${lib.configureGitCredential(env, invocation, binary, stateFile, env.GITHUB_ENV)}\n`);
});
