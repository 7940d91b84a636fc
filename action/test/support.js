'use strict';
// Helpers the Action's tests share (not a test file: node --test runs only *.test.js).

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

module.exports = { runNode };
