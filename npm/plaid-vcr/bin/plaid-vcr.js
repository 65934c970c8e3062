#!/usr/bin/env node
'use strict';
// `npx plaid-vcr ARGS`: runs the plaid-vcr binary of this platform with ARGS; SIGINT and
// SIGTERM are passed on, so stopping this stops plaid-vcr the way it expects (a clean stop).
const { spawn } = require('node:child_process');
const { binaryPath } = require('../lib/index.js');

let binary;
try {
  binary = binaryPath();
} catch (e) {
  console.error(`plaid-vcr: ${e.message}`);
  process.exit(2);
}
const child = spawn(binary, process.argv.slice(2), { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('error', (e) => {
  console.error(`plaid-vcr: ${e.message}`);
  process.exit(2);
});
child.on('exit', (code) => process.exit(code === null ? 1 : code));
