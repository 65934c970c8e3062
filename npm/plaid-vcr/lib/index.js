'use strict';
// plaid-vcr from Node: find the binary (from the platform package, or PLAID_VCR_BINARY), run it
// as a server on a free port, name sessions, read reports, stop it with SIGTERM.

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');
const readline = require('node:readline');

const PLATFORMS = {
  'darwin arm64': '@plaid-vcr/darwin-arm64',
  'darwin x64': '@plaid-vcr/darwin-x64',
  'linux arm64': '@plaid-vcr/linux-arm64',
  'linux x64': '@plaid-vcr/linux-x64',
  'win32 x64': '@plaid-vcr/win32-x64',
};

const MODES = {
  replay: ['replay'],
  record: ['record'],
  'record-missing': ['replay', '--record-missing'],
};

/** The plaid-vcr executable: $PLAID_VCR_BINARY, else the one of this platform's package. */
function binaryPath() {
  const explicit = process.env.PLAID_VCR_BINARY;
  if (explicit) {
    if (!fs.existsSync(explicit)) throw new Error(`PLAID_VCR_BINARY=${explicit} does not exist`);
    return explicit;
  }
  const platform = PLATFORMS[`${process.platform} ${process.arch}`];
  if (!platform) {
    throw new Error(`plaid-vcr has no binary for ${process.platform} ${process.arch}; set PLAID_VCR_BINARY`);
  }
  const exe = process.platform === 'win32' ? 'plaid-vcr.exe' : 'plaid-vcr';
  try {
    return require.resolve(`${platform}/bin/${exe}`);
  } catch {
    throw new Error(
      `the package ${platform} is not installed (optional dependencies skipped?); reinstall plaid-vcr or set PLAID_VCR_BINARY`,
    );
  }
}

/** A test's full name as a session name (the rules of docs/sessions.md). */
function sessionName(testName) {
  return testName
    .replace(/::/g, '/')
    .replace(/[^A-Za-z0-9._/-]/g, '_')
    .split('/')
    .map((part) => (part === '' || part === '.' || part === '..' ? '_' : part))
    .join('/')
    .slice(-200)
    .replace(/^\/+/, '');
}

/** A running plaid-vcr, or one known by its address only (another process started it). */
class PlaidVcr {
  constructor(origin, child, stderr) {
    this.origin = origin;
    this.url = `${origin}/plaid-compatible`;
    this.child = child;
    this.stderr = stderr;
    this.summary = '';
  }

  sessionUrl(name) {
    return `${this.origin}/sessions/${name}/plaid-compatible`;
  }

  async api(method, name, body) {
    const init = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'content-type': 'application/json' };
    }
    const answer = await fetch(`${this.origin}/plaid-vcr/sessions${name ? `/${name}` : ''}`, init);
    if (answer.status === 404) return null;
    if (!answer.ok) throw new Error(`plaid-vcr answered ${answer.status}: ${await answer.text()}`);
    return answer.json();
  }

  /** A session's report (null if no request named it), or every session's counts. */
  report(name) {
    return this.api('GET', name);
  }

  /** Adds a fault rule to a session: `{error_code, endpoint, after, times}` (docs/failures.md). */
  addFault(name, rule) {
    return this.api('POST', `${name}/faults`, rule);
  }

  /** Removes a session's fault rules (and what ITEM_LOGIN_REQUIRED stuck to). */
  clearFaults(name) {
    return this.api('DELETE', `${name}/faults`);
  }

  /** Ends a session: its final report (or null); the name starts again at step 1. */
  endSession(name) {
    return this.api('DELETE', name);
  }

  /** Stops it with SIGTERM; resolves with its final report of every session. */
  async stop() {
    const report = await this.report().catch(() => null);
    if (!this.child) return report;
    const exited = new Promise((resolve) => {
      if (this.child.exitCode !== null) resolve(this.child.exitCode);
      else this.child.once('exit', (code) => resolve(code));
    });
    this.child.kill('SIGTERM');
    this.exitCode = await exited;
    const text = this.stderr.join('');
    const start = text.indexOf('plaid-vcr summary');
    this.summary = (start >= 0 ? text.slice(start) : text).trim();
    return report;
  }
}

/** Starts plaid-vcr on a free port: `{cassette, mode, args, cwd}`; resolves once it listens. */
function startPlaidVcr(options = {}) {
  const mode = options.mode || 'replay';
  if (!MODES[mode]) throw new Error(`mode must be one of ${Object.keys(MODES).join(', ')}, not ${mode}`);
  const args = [...MODES[mode]];
  if (options.cassette) args.push('--cassette', options.cassette);
  args.push(...(options.args || []), '--listen', '127.0.0.1:0');
  const child = spawn(binaryPath(), args, { cwd: options.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = [];
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => stderr.push(chunk));
  return new Promise((resolve, reject) => {
    const lines = readline.createInterface({ input: child.stdout });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`plaid-vcr exited (${code}) before listening: ${stderr.join('').trim()}`)));
    lines.once('line', (line) => {
      const match = /http:\/\/\S+/.exec(line);
      if (!match) return reject(new Error(`plaid-vcr did not start: ${line}`));
      child.removeAllListeners('exit');
      resolve(new PlaidVcr(match[0], child, stderr));
    });
  });
}

/** A handle on a plaid-vcr another process started, from its origin (`http://IP:PORT`). */
function connectPlaidVcr(origin) {
  return new PlaidVcr(origin, null, []);
}

module.exports = { startPlaidVcr, connectPlaidVcr, binaryPath, sessionName, PlaidVcr, MODES };
