// Types of plaid-vcr's Node API.

export type Mode = 'replay' | 'record' | 'record-missing';

export interface StartOptions {
  /** The cassette directory. */
  cassette?: string;
  /** replay (default), record, or record-missing. */
  mode?: Mode;
  /** More arguments for the plaid-vcr binary, e.g. ['--strict']. */
  args?: string[];
  /** Where to run it. */
  cwd?: string;
}

export interface Entry {
  endpoint: string;
  key: string;
  file?: string;
  recorded_at?: string;
  explanation?: string;
}

export interface FaultRule {
  /** A Plaid error code, or delay=MS, reset, truncate, timeout. */
  error_code: string;
  /** The endpoint it applies to; any if absent. */
  endpoint?: string | null;
  /** How many matching requests go through first (default 0). */
  after?: number;
  /** How many fail (default 1); null until removed. */
  times?: number | null;
}

export interface SessionReport {
  requests: number;
  hits: number;
  misses: Entry[];
  recorded: Entry[];
  errors: number;
  recordings: number;
  unused: Entry[];
  webhooks: { delivered: number; failed: number };
}

export interface SessionCounts {
  name: string;
  requests: number;
  hits: number;
  misses: number;
  recorded: number;
  errors: number;
  recordings: number;
  unused: number;
}

export declare class PlaidVcr {
  /** http://127.0.0.1:PORT */
  readonly origin: string;
  /** The base URL for a Plaid client in the default session. */
  readonly url: string;
  /** Its summary, once stopped. */
  summary: string;
  exitCode?: number | null;
  /** The base URL that puts a Plaid client's requests in session `name`. */
  sessionUrl(name: string): string;
  report(): Promise<{ sessions: SessionCounts[] }>;
  report(name: string): Promise<SessionReport | null>;
  endSession(name: string): Promise<SessionReport | null>;
  addFault(name: string, rule: FaultRule): Promise<{ faults: unknown[] } | null>;
  clearFaults(name: string): Promise<{ removed: unknown[] } | null>;
  /** Stops it with SIGTERM; resolves with every session's counts. */
  stop(): Promise<{ sessions: SessionCounts[] } | null>;
}

export declare const MODES: Record<Mode, string[]>;
export declare function startPlaidVcr(options?: StartOptions): Promise<PlaidVcr>;
export declare function connectPlaidVcr(origin: string): PlaidVcr;
export declare function binaryPath(): string;
export declare function sessionName(testName: string): string;
