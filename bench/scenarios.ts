// Benchmark scenarios. Adding one is a table entry: a backend path (see
// `backendNginxConfig` in servers.ts for what the backend serves), the wrk
// arguments (and lua script, if any) and a sanity check run once against every
// proxy before loading it.

import { fileURLToPath } from 'node:url';

export interface ScenarioCheck {
  method: 'GET' | 'POST';
  /** request body size in bytes (POST) */
  requestBytes?: number;
  /** expected response body size in bytes */
  responseBytes: number;
}

export interface Scenario {
  name: string;
  description: string;
  /** path requested on the proxy (and forwarded as-is to the backend) */
  path: string;
  /** wrk arguments besides -d, --latency, -s and the URL */
  wrkArgs: readonly string[];
  /** lua script (absolute path), if any */
  script?: string;
  check: ScenarioCheck;
}

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

export const RESPONSE_12B = 'hello world\n';
export const RESPONSE_64K_BYTES = 64 * 1024;
export const REQUEST_16K_BYTES = 16 * 1024;

export const scenarios: readonly Scenario[] = [
  {
    name: 'get-12b',
    description: 'GET, 12-byte response body',
    path: '/',
    wrkArgs: ['-t1', '-c50'],
    check: { method: 'GET', responseBytes: 12 },
  },
  {
    name: 'get-64k',
    description: 'GET, 64 KiB response body (static file on the backend)',
    path: '/64k',
    wrkArgs: ['-t1', '-c50'],
    check: { method: 'GET', responseBytes: RESPONSE_64K_BYTES },
  },
  {
    name: 'post-16k',
    description: 'POST with a 16 KiB request body, 12-byte response body',
    path: '/post',
    wrkArgs: ['-t1', '-c50'],
    script: here('./post-16k.lua'),
    check: { method: 'POST', requestBytes: REQUEST_16K_BYTES, responseBytes: 12 },
  },
  // Latency at a fixed rate, idle-connection memory and workers are measured
  // otherwise: bench/fixed-rate.ts, bench/idle-memory.ts, bench/workers.ts.
];

/** get-12b's GET / is also what the other figures request (its sanity check, and wrk arguments for nginx's maximum). */
export const GET_12B: Scenario = scenarios.find((s) => s.name === 'get-12b')!;
