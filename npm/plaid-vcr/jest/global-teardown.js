'use strict';
// jest `globalTeardown`: stops plaid-vcr with SIGTERM and prints its summary.
module.exports = async function globalTeardown() {
  const vcr = globalThis.__PLAID_VCR__;
  if (!vcr) return;
  await vcr.stop();
  process.stderr.write(`\n${vcr.summary}\n`);
};
