import type { Buffer } from 'node:buffer';
import type { FloodLimits } from './flood-guard.ts';
import type { Http2Stream } from './stream.ts';

// The contract between an HTTP/2 connection and its owner (a listener's or a pool's connection class):
// its role, its limits, how it ended, and what it tells the owner.

export type Role = 'server' | 'client';

/** Limits and advertised settings of one connection; every value comes from config. */
export interface ConnectionOptions {
  maxConcurrentStreams: number;
  /** Per-stream receive window we advertise. */
  initialWindowSize: number;
  /** Receive window of the whole connection. */
  connectionWindowSize: number;
  /** Largest decoded header list we accept (SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListSize: number;
  /** Largest encoded header block (HEADERS + CONTINUATION) before the connection is closed. */
  maxHeaderBlockBytes: number;
  /** Our HPACK dynamic table (SETTINGS_HEADER_TABLE_SIZE). */
  headerTableSize: number;
  /** Server: advertise RFC 8441 extended CONNECT. */
  enableConnectProtocol: boolean;
  /** No SETTINGS ACK within this: SETTINGS_TIMEOUT. */
  settingsTimeoutMs: number;
  /** A stream whose output makes no progress this long (the peer keeps its window at 0) is reset. */
  stallTimeoutMs: number;
  floods: FloodLimits;
}

/** Why a connection ended badly, for the owner's log and counters. */
export interface ConnectionFailure {
  /** The HTTP/2 error code sent in GOAWAY (or received in one). */
  h2code: number;
  /** A stable muxgate code: 'h2_protocol_error', 'rapid_reset', 'h2_ping_flood'... */
  code: string;
  detail: string;
  /** We detected it (true) or the peer's GOAWAY said so (false). */
  local: boolean;
}

export interface ConnectionHandler {
  /**
   * Server role: the peer opened a stream. `fields` is the decoded header list, flat as
   * [name, value, ...] (latin1, unvalidated: the owner applies the message rules), or null when the
   * list was larger than max_header_list_size (answer 431).
   */
  onStream(stream: Http2Stream, fields: readonly string[] | null, endStream: boolean): void;
  /** The peer sent GOAWAY: no stream above `lastStreamId` was or will be processed. */
  onGoaway(lastStreamId: number, code: number): void;
  /** A PING we sent was answered. */
  onPingAck?(payload: Buffer): void;
  /** The peer's SETTINGS were applied (the first one completes the handshake; `remote` has them). */
  onSettings?(): void;
  /** The engine reset a stream for a reason worth counting ('h2_content_length_mismatch'...). */
  onStreamError?(stream: Http2Stream, code: string): void;
  /** A stream left the table (ended both ways, reset either way, or the connection went). */
  onStreamClosed?(stream: Http2Stream): void;
  /** A stream's output made no progress for stall_timeout (the peer's window stayed shut): it is reset. */
  onStall?(stream: Http2Stream): void;
  /** Once, when the connection is gone (the socket closed); `failure` when it ended badly. */
  onClose(failure: ConnectionFailure | null): void;
}
