import type { Buffer } from 'node:buffer';
import type { ErrorCode } from '../core/errors.ts';
import type { RequestHead } from '../http1/request-head.ts';
import type { ClientOrigin } from '../proxy-protocol/client-origin.ts';
import type { Downstream, DownstreamContext } from './downstream.ts';

/**
 * The client side of a request muxgate sends on its own: a cache's background revalidation
 * (stale-while-revalidate), made from a client's request that was already answered from the stale
 * object. It forwards as that request did (same forwarding fields, same client for the PROXY header
 * and hashing) and throws the answer away: the cache keeps what it stores.
 */
export class BackgroundDownstream implements Downstream {
  readonly ctx: DownstreamContext;
  readonly peer: string;
  readonly h2 = false;
  readonly background = true;
  private readonly fields: string;
  private readonly from: ClientOrigin;

  constructor(like: Downstream, forwardingFields: string) {
    this.ctx = like.ctx;
    this.peer = like.peer;
    this.from = like.origin();
    this.fields = forwardingFields;
  }

  origin(): ClientOrigin {
    return this.from;
  }

  forwardingFields(_head: RequestHead): string {
    return this.fields;
  }

  queue(_data: Buffer | string): void {}
  sendError(_code: ErrorCode, _close: boolean, _headOnly: boolean, _extra?: readonly string[]): void {}
  pauseForBody(): void {}
  resumeForBody(): void {}
  onExchangeDone(_keepAlive: boolean): void {}
  destroy(): void {}
}
