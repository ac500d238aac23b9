/**
 * Finds the end of an HTTP/1.1 head (the empty line) in a buffer, insisting on CRLF line endings:
 * a bare LF is a classic request-smuggling ingredient (RFC 9112 §2.2 lets a recipient accept it; we
 * do not), so it is reported at once instead of waiting for a CRLF that never comes.
 *
 * Returns the index just past the terminating CRLFCRLF, NEED_MORE, or BARE_LF.
 * `from` lets callers resume a scan where the previous chunk ended.
 */
export const NEED_MORE = -1;
export const BARE_LF = -2;

export function findHeadEnd(buf: Uint8Array, start: number, from: number, end: number): number {
  let pos = Math.max(from, start);
  while (pos < end) {
    const lf = nextLf(buf, pos, end);
    if (lf === -1 || lf >= end) return NEED_MORE;
    if (lf === start || buf[lf - 1] !== 13) return BARE_LF;
    // An empty line: CRLF directly after the previous line's CRLF.
    if (lf - 3 >= start && buf[lf - 2] === 10 && buf[lf - 3] === 13) return lf + 1;
    pos = lf + 1;
  }
  return NEED_MORE;
}

/** Where a resumed scan can safely start, given the bytes already scanned. */
export function resumeFrom(start: number, scannedEnd: number): number {
  return Math.max(scannedEnd - 3, start);
}

/**
 * Index of the next LF in buf[pos, end), or -1. Heads are short lines: a plain loop over the first
 * bytes costs less than a call into C++ per line; long stretches go to `indexOf` (memchr).
 */
function nextLf(buf: Uint8Array, pos: number, end: number): number {
  const stop = Math.min(end, pos + 128);
  for (let i = pos; i < stop; i++) if (buf[i] === 10) return i;
  if (stop === end) return -1;
  return buf.indexOf(10, stop);
}
