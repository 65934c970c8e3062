// A "last 30 days" view: its requests carry dates relative to today, and it shows what is
// recent. A year after recording, --shift-dates still answers it: run with
// PLAID_VCR_ARGS="--shift-dates --today=DAY" and EXAMPLE_TODAY=DAY for the app's own clock.
const { plaidClient, accessToken } = require('./client');

const day = (date) => date.toISOString().slice(0, 10);
const today = () => (process.env.EXAMPLE_TODAY ? new Date(`${process.env.EXAMPLE_TODAY}T00:00:00Z`) : new Date());

test('the last 30 days of transactions are recent', async () => {
  const client = plaidClient();
  const end = day(today());
  const start = day(new Date(today().getTime() - 30 * 86400 * 1000));
  const { data } = await client.transactionsGet({ access_token: await accessToken(client), start_date: start, end_date: end });
  expect(data.transactions.length).toBeGreaterThan(0);
  for (const transaction of data.transactions) {
    expect(transaction.date >= start && transaction.date <= end).toBe(true);
  }
});
