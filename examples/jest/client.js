// The app's Plaid client, pointed at plaid-vcr: the current test's own session (plaidVcrUrl()).
const { Configuration, PlaidApi } = require('plaid');
const { plaidVcrUrl } = require('plaid-vcr/jest');

function plaidClient() {
  return new PlaidApi(
    new Configuration({
      basePath: plaidVcrUrl(),
      baseOptions: { headers: { 'PLAID-CLIENT-ID': 'example-id', 'PLAID-SECRET': 'example-secret' } },
    }),
  );
}

async function accessToken(client, institution = 'ins_109508') {
  const created = await client.sandboxPublicTokenCreate({ institution_id: institution, initial_products: ['auth'] });
  const exchanged = await client.itemPublicTokenExchange({ public_token: created.data.public_token });
  return exchanged.data.access_token;
}

// The accounts; or, when the item needs a new login, a link token for Link's update mode.
async function accountsOrUpdateMode(client, token) {
  try {
    return ['accounts', (await client.accountsGet({ access_token: token })).data.accounts];
  } catch (e) {
    if (!e.response || e.response.data.error_code !== 'ITEM_LOGIN_REQUIRED') throw e;
  }
  const update = await client.linkTokenCreate({
    client_name: 'Example app',
    language: 'en',
    country_codes: ['US'],
    user: { client_user_id: 'user-1' },
    access_token: token,
  });
  return ['update-mode', update.data.link_token];
}

// The accounts, retrying a rate limit with exponential back-off (`sleep(seconds)`).
async function accountsWithBackOff(client, token, sleep, attempts = 5) {
  let wait = 0.1;
  for (let attempt = 1; attempt < attempts; attempt += 1) {
    try {
      return (await client.accountsGet({ access_token: token })).data.accounts;
    } catch (e) {
      if (!e.response || e.response.status !== 429 || e.response.data.error_type !== 'RATE_LIMIT_EXCEEDED') throw e;
      await sleep(wait);
      wait *= 2;
    }
  }
  return (await client.accountsGet({ access_token: token })).data.accounts;
}

module.exports = { plaidClient, accessToken, accountsOrUpdateMode, accountsWithBackOff };
