'use strict';
// jest `setupFilesAfterEnv`: each test starts its session afresh (a retried test gets step 1
// again), and in replay a test whose session had a miss fails with plaid-vcr's explanation.
const { sessionState, currentSession } = require('./index.js');

beforeEach(async () => {
  await sessionState().endSession(currentSession());
});

afterEach(async () => {
  if (process.env.PLAID_VCR_MODE !== 'replay') return;
  const name = currentSession();
  const report = await sessionState().report(name);
  const misses = (report && report.misses) || [];
  if (misses.length === 0) return;
  const lines = misses.map((m) => `  ${m.endpoint} (key ${m.key.slice(0, 16)}): ${m.explanation || 'no recording'}`);
  throw new Error(
    [`plaid-vcr: ${misses.length} request(s) of this test had no recording (session ${name}):`, ...lines,
      'record them with PLAID_VCR_MODE=record-missing'].join('\n'),
  );
});
