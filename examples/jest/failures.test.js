// How the app handles Plaid's failures, on demand: plaid-vcr fails this test's requests as Plaid
// would (plaidVcrFault(); docs/failures.md).
const { plaidVcrFault, clearPlaidVcrFaults } = require('plaid-vcr/jest');
const { plaidClient, accessToken, accountsOrUpdateMode, accountsWithBackOff } = require('./client');

test('login required sends the user through update mode', async () => {
  const client = plaidClient();
  const token = await accessToken(client);
  await plaidVcrFault({ error_code: 'ITEM_LOGIN_REQUIRED', endpoint: '/accounts/get' });
  const [outcome, linkToken] = await accountsOrUpdateMode(client, token);
  expect(outcome).toBe('update-mode');
  expect(linkToken).toMatch(/^link-sandbox-/);
  // The item stays in that state until the user relinks.
  expect((await accountsOrUpdateMode(client, token))[0]).toBe('update-mode');
  await clearPlaidVcrFaults(); // the user went through Link's update mode
  const [after, accounts] = await accountsOrUpdateMode(client, token);
  expect(after).toBe('accounts');
  expect(accounts.length).toBeGreaterThan(0);
});

test('rate limits are retried with back-off', async () => {
  const client = plaidClient();
  const token = await accessToken(client);
  await plaidVcrFault({ error_code: 'RATE_LIMIT_EXCEEDED', endpoint: '/accounts/get', times: 2 });
  const waits = [];
  const accounts = await accountsWithBackOff(client, token, async (s) => waits.push(s));
  expect(accounts.length).toBeGreaterThan(0);
  expect(waits).toEqual([0.1, 0.2]);
});
