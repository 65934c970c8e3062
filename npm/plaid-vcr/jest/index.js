'use strict';
// plaid-vcr for jest: `plaidVcrUrl()` is the base URL for the current test, in its own session
// named after the test's full name. Configure jest with
//   globalSetup: 'plaid-vcr/jest/global-setup', globalTeardown: 'plaid-vcr/jest/global-teardown',
//   setupFilesAfterEnv: ['plaid-vcr/jest/setup']
const { connectPlaidVcr, sessionName } = require('../lib/index.js');

let vcr;

/** The plaid-vcr this run's globalSetup started. */
function sessionState() {
  if (!vcr) {
    const origin = process.env.PLAID_VCR_ORIGIN;
    if (!origin) throw new Error("plaid-vcr is not running: add globalSetup: 'plaid-vcr/jest/global-setup' to jest's config");
    vcr = connectPlaidVcr(origin);
  }
  return vcr;
}

/** The current test's session name. */
function currentSession() {
  const state = expect.getState();
  const name = state.currentTestName || 'no test';
  const file = state.testPath ? require('node:path').basename(state.testPath) : 'tests';
  return sessionName(`${file}/${name}`);
}

/** The base URL for the current test's Plaid client, in its own session. */
function plaidVcrUrl() {
  return sessionState().sessionUrl(currentSession());
}

/** Adds a fault rule to the current test's session (Plaid's errors on demand, docs/failures.md). */
function plaidVcrFault(rule) {
  return sessionState().addFault(currentSession(), rule);
}

/** Removes the current test's fault rules. */
function clearPlaidVcrFaults() {
  return sessionState().clearFaults(currentSession());
}

module.exports = { plaidVcrUrl, plaidVcrFault, clearPlaidVcrFaults, currentSession, sessionState };
