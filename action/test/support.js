'use strict';
// Helpers the Action's tests share (not a test file: node --test runs only *.test.js).

const assert = require('node:assert/strict');
const path = require('node:path');
const { spawn } = require('node:child_process');

/**
 * Runs `node DIR/script` with exactly `env` (no variable of the test's own), asynchronously, so that
 * a server in the test process answers meanwhile; killed after 30 s.
 */
function runNode(dir, script, env) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(dir, script)], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** GITHUB_OUTPUT / GITHUB_STATE as the runner reads them: name=value lines and name<<delimiter blocks. */
function parseFileCommands(text) {
  const values = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const block = /^([^=<]+)<<(.+)$/.exec(lines[i]);
    if (block) {
      const end = lines.indexOf(block[2], i + 1);
      assert.ok(end > i, `${block[1]}: its delimiter closes the block`);
      values[block[1]] = lines.slice(i + 1, end).join('\n');
      i = end;
    } else if (lines[i].includes('=')) {
      values[lines[i].slice(0, lines[i].indexOf('='))] = lines[i].slice(lines[i].indexOf('=') + 1);
    }
  }
  return values;
}

module.exports = { runNode, parseFileCommands };
