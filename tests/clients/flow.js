// The sandbox flow through plaid-vcr with the official Node client (npm `plaid`).
// Env: PLAID_VCR_BASE (http://127.0.0.1:PORT/plaid-compatible), PLAID_VCR_MODE (record|replay),
// CLIENT_ID / SECRET (optional: without them the client sends no credentials), PLAID_VCR_KID
// (optional: a webhook key id to fetch with /webhook_verification_key/get), PLAID_VCR_SESSION
// (optional: the session to name in a Plaid-VCR-Session header).
// Prints one JSON line of what it saw; exits 1 with a message when something is off.
const { Configuration, PlaidApi } = require('plaid');

const base = process.env.PLAID_VCR_BASE;
const mode = process.env.PLAID_VCR_MODE;
const headers = {};
if (process.env.CLIENT_ID) headers['PLAID-CLIENT-ID'] = process.env.CLIENT_ID;
if (process.env.SECRET) headers['PLAID-SECRET'] = process.env.SECRET;
if (process.env.PLAID_VCR_SESSION) headers['Plaid-VCR-Session'] = process.env.PLAID_VCR_SESSION;
const client = new PlaidApi(new Configuration({ basePath: base, baseOptions: { headers } }));

function check(condition, message) {
  if (!condition) {
    console.error(`flow.js: ${message}`);
    process.exit(1);
  }
}

// What a failed call surfaced to the caller: the client's normal error, our body inside.
async function failure(call) {
  try {
    await call();
  } catch (e) {
    return { status: e.response && e.response.status, code: e.response && e.response.data && e.response.data.error_code };
  }
  return null;
}

async function main() {
  const created = await client.sandboxPublicTokenCreate({ institution_id: 'ins_109508', initial_products: ['identity', 'auth'] });
  check(created.data.public_token.startsWith('public-sandbox-'), 'public token shape');
  const exchanged = await client.itemPublicTokenExchange({ public_token: created.data.public_token });
  const token = exchanged.data.access_token;
  check(token.startsWith('access-sandbox-'), 'access token shape');
  const identity = await client.identityGet({ access_token: token });
  const ids = identity.data.accounts.map((a) => a.account_id);
  check(identity.data.accounts[0].owners[0].names.length > 0, 'owners have names');
  const filtered = await client.identityGet({ access_token: token, options: { account_ids: [ids[0]] } });
  const accounts = await client.accountsGet({ access_token: token });
  const out = {
    client: 'plaid-node',
    token,
    accounts: identity.data.accounts.length,
    filtered_accounts: filtered.data.accounts.length,
    accounts_get: accounts.data.accounts.length,
    owner_email: identity.data.accounts[0].owners[0].emails[0].data,
  };
  if (mode === 'replay') {
    out.miss = await failure(() => client.identityGet({ access_token: 'access-sandbox-00000000-0000-4000-8000-000000000000' }));
    const anonymous = new PlaidApi(new Configuration({ basePath: base }));
    out.no_credentials = await failure(() => anonymous.accountsGet({ access_token: token }));
  }
  if (process.env.PLAID_VCR_KID) {
    // plaid-vcr's own webhook signing key.
    const { key } = (await client.webhookVerificationKeyGet({ key_id: process.env.PLAID_VCR_KID })).data;
    out.webhook_key = { kid: key.kid, alg: key.alg, crv: key.crv, kty: key.kty, x: key.x.length, expired_at: key.expired_at };
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  const data = e.response ? JSON.stringify(e.response.data) : '';
  console.error(`flow.js: ${e.message} ${data}`);
  process.exit(1);
});
