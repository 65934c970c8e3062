// Tests of an app's Plaid calls, each in its own plaid-vcr session (see client.js). Replay (the
// default) needs no network and no Plaid keys: `npx jest`. Record against Plaid's sandbox:
// `PLAID_VCR_MODE=record npx jest` with PLAID_CLIENT_ID and PLAID_SECRET set for plaid-vcr (the
// tests' own credentials are dummies). Two files, so jest runs them in parallel workers.
const { plaidClient, accessToken } = require('./client');

test('identity names the owners', async () => {
  const client = plaidClient();
  const { data } = await client.identityGet({ access_token: await accessToken(client) });
  expect(data.accounts[0].owners[0].names.length).toBeGreaterThan(0);
});

describe('each institution', () => {
  test.each(['ins_109508', 'ins_109509'])('gets its own item: %s', async (institution) => {
    expect(await accessToken(plaidClient(), institution)).toMatch(/^access-sandbox-/);
  });
});
