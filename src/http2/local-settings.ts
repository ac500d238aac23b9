import type { Buffer } from 'node:buffer';
import type { ConnectionOptions, Role } from './connection-types.ts';
import {
  SETTINGS_ENABLE_CONNECT_PROTOCOL,
  SETTINGS_ENABLE_PUSH,
  SETTINGS_HEADER_TABLE_SIZE,
  SETTINGS_INITIAL_WINDOW_SIZE,
  SETTINGS_MAX_CONCURRENT_STREAMS,
  SETTINGS_MAX_HEADER_LIST_SIZE,
} from './frame.ts';
import { encodeSettings, type Settings } from './settings.ts';

/**
 * What the connections made with one options object share (a listener's all use the same): our
 * settings, and our first SETTINGS payload per role. Per connection they were two objects and the
 * garbage of building the payload, for every idle connection.
 */
export interface Shared {
  local: Settings;
  settings: (Buffer | null)[];
}
const sharedByOpts = new WeakMap<ConnectionOptions, Shared>();

export function sharedOf(opts: ConnectionOptions): Shared {
  let sh = sharedByOpts.get(opts);
  if (sh === undefined) {
    const local: Settings = Object.freeze({
      headerTableSize: opts.headerTableSize,
      enablePush: false,
      maxConcurrentStreams: opts.maxConcurrentStreams,
      initialWindowSize: opts.initialWindowSize,
      maxFrameSize: 16384,
      maxHeaderListSize: opts.maxHeaderListSize,
      enableConnectProtocol: opts.enableConnectProtocol,
    });
    sh = { local, settings: [null, null] };
    sharedByOpts.set(opts, sh);
  }
  return sh;
}

/** Our SETTINGS payload for `role` (server: 0, client: 1). */
export function settingsPayload(sh: Shared, role: Role): Buffer {
  const i = role === 'server' ? 0 : 1;
  const cached = sh.settings[i];
  if (cached != null) return cached;
  const local = sh.local;
  const pairs: [number, number][] = [
    [SETTINGS_MAX_CONCURRENT_STREAMS, local.maxConcurrentStreams],
    [SETTINGS_INITIAL_WINDOW_SIZE, local.initialWindowSize],
    [SETTINGS_MAX_HEADER_LIST_SIZE, local.maxHeaderListSize],
    [SETTINGS_ENABLE_PUSH, 0],
  ];
  if (local.headerTableSize !== 4096) pairs.push([SETTINGS_HEADER_TABLE_SIZE, local.headerTableSize]);
  if (role === 'server' && local.enableConnectProtocol) pairs.push([SETTINGS_ENABLE_CONNECT_PROTOCOL, 1]);
  const payload = encodeSettings(pairs);
  sh.settings[i] = payload;
  return payload;
}
