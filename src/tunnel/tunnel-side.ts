import type { Buffer } from 'node:buffer';

/**
 * What one end of a tunnel tells the splice that joins it to the other end. The side passes itself,
 * so one splice object listens to both ends (no closures per tunnel).
 */
export interface SideEvents {
  /** Bytes `buf[start, end)`; `buf` may be lent (a view of a shared read buffer): copy what is kept. */
  onSideData(side: TunnelSide, buf: Buffer, start: number, end: number): void;
  /** The peer ended its output cleanly (FIN, END_STREAM). */
  onSideEnd(side: TunnelSide): void;
  /** The side is gone: both directions finished (`abrupt` false), or a reset, an error, a timeout. */
  onSideClosed(side: TunnelSide, abrupt: boolean): void;
  /** A write that returned false has gone out: the other side may be read again. */
  onSideWritable(side: TunnelSide): void;
}

/**
 * One end of a tunnel as a splice drives it: a TCP (or TLS) socket, or an HTTP/2 stream. Not a
 * Node stream: no pipe state, no per-chunk events or buffers beyond what the transport needs, which
 * is most of what an idle tunnel used to cost (see bench/RESULTS.md, ws-h2-idle).
 */
export interface TunnelSide {
  /** Start reading into `events` (bytes that arrived before the tunnel was up come first). */
  attach(events: SideEvents): void;
  /** Output; false when the caller should stop reading the other side until `onSideWritable`. */
  write(buf: Buffer, start: number, end: number): boolean;
  /** Our output ends (FIN / END_STREAM) once what is queued has gone. */
  end(): void;
  /** Cut abruptly (TCP RST, RST_STREAM CONNECT_ERROR). */
  reset(): void;
  /** Closed now without a reset where the transport has one (a TCP socket: FIN); a stream is reset. */
  close(): void;
  pause(): void;
  resume(): void;
  /** Closed (no more events follow but the `onSideClosed` that says so). */
  readonly gone: boolean;
}
