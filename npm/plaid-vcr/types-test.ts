// Compiled by `tsc` (never run): the declared API is what a TypeScript user writes against.
import { startPlaidVcr, sessionName, type PlaidVcr, type SessionReport } from './lib/index';
import { plaidVcrUrl, plaidVcrFault } from './jest/index';

async function use(): Promise<void> {
  const vcr: PlaidVcr = await startPlaidVcr({ cassette: 'cassettes/app', mode: 'replay', args: ['--strict'] });
  const url: string = vcr.sessionUrl(sessionName('link › updates an item'));
  const report: SessionReport | null = await vcr.report('tests/a');
  const misses: number = report ? report.misses.length : 0;
  const base: string = plaidVcrUrl();
  await plaidVcrFault({ error_code: 'ITEM_LOGIN_REQUIRED', endpoint: '/accounts/get', times: null });
  await vcr.addFault('tests/a', { error_code: 'RATE_LIMIT_EXCEEDED' });
  await vcr.stop();
  void [url, misses, base, vcr.url];
}
void use;
