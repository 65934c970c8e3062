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

module.exports = { plaidClient, accessToken };
