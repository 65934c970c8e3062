// Types of plaid-vcr's jest helper.
import type { FaultRule, PlaidVcr } from '../lib/index';

/** The base URL for the current test's Plaid client, in its own session. */
export declare function plaidVcrUrl(): string;
/** The current test's session name: `<test file>/<full test name>`, escaped. */
export declare function currentSession(): string;
/** The plaid-vcr the run's globalSetup started. */
export declare function sessionState(): PlaidVcr;
/** Adds a fault rule to the current test's session. */
export declare function plaidVcrFault(rule: FaultRule): Promise<unknown>;
/** Removes the current test's fault rules. */
export declare function clearPlaidVcrFaults(): Promise<unknown>;
