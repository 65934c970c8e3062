'use strict';
// jest `globalSetup`: starts the one plaid-vcr every worker of the run uses, and hands its
// address to the workers (they are started after this, with this process's environment).
// Settings: PLAID_VCR_MODE (replay, record, record-missing; default replay), PLAID_VCR_CASSETTE
// (default cassettes/plaid-vcr, relative to jest's rootDir), PLAID_VCR_ARGS (more arguments for
// the binary, space-separated).
const path = require('node:path');
const { startPlaidVcr } = require('../lib/index.js');

module.exports = async function globalSetup(globalConfig) {
  const root = globalConfig.rootDir || process.cwd();
  const mode = process.env.PLAID_VCR_MODE || 'replay';
  const cassette = path.resolve(root, process.env.PLAID_VCR_CASSETTE || 'cassettes/plaid-vcr');
  const args = (process.env.PLAID_VCR_ARGS || '').split(/\s+/).filter(Boolean);
  const vcr = await startPlaidVcr({ mode, cassette, args, cwd: root });
  globalThis.__PLAID_VCR__ = vcr;
  process.env.PLAID_VCR_ORIGIN = vcr.origin;
  process.env.PLAID_VCR_MODE = mode;
};
