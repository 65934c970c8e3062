// Tests of an app's Plaid calls, each in its own plaid-vcr session (see client.js). Replay (the
// default) needs no network and no Plaid keys: `npx jest`. Record against Plaid's sandbox:
// `PLAID_VCR_MODE=record npx jest` with PLAID_CLIENT_ID and PLAID_SECRET set for plaid-vcr (the
// tests' own credentials are dummies). Two files, so jest runs them in parallel workers.
const { plaidClient, accessToken } = require('./client');

test('a new item has accounts', async () => {
  const client = plaidClient();
  const { data } = await client.accountsGet({ access_token: await accessToken(client) });
  expect(data.accounts.length).toBeGreaterThan(0);
});

// Passes as recorded; with EXAMPLE_UNRECORDED=1 it asks for something never recorded, and fails
// with plaid-vcr's explanation: what differs from the closest recording.
test('a request never recorded fails with the explanation', async () => {
  const client = plaidClient();
  const request = { access_token: await accessToken(client) };
  if (process.env.EXAMPLE_UNRECORDED) request.options = { account_ids: ['never-recorded'] };
  const { data } = await client.accountsGet(request);
  expect(data.accounts.length).toBeGreaterThan(0);
});
