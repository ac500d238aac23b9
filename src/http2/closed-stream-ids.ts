/** Streams we reset, remembered so late frames on them are ignored rather than a connection error. */
const RESET_MEMORY = 128;
/** Ranges of skipped stream ids remembered (a client normally skips none). */
const SKIP_MEMORY = 16;

/**
 * What a connection remembers of stream ids it no longer tracks: the last streams we reset (frames
 * the peer had in flight on them are ignored, RFC 9113 §5.1) and the last ranges of ids the peer
 * jumped over (those streams are implicitly closed, §5.1.1: using one later is a PROTOCOL_ERROR).
 * Two small rings, made on first use: most connections never need them.
 */
export class ClosedStreamIds {
  private resets: Int32Array | null = null;
  private skips: Int32Array | null = null;
  private resetNext = 0;
  private skipNext = 0;

  wasReset(id: number): boolean {
    const r = this.resets;
    if (r === null) return false;
    for (let i = 0; i < RESET_MEMORY; i++) if (r[i] === id) return true;
    return false;
  }

  rememberReset(id: number): void {
    if (this.resets === null) this.resets = new Int32Array(RESET_MEMORY);
    this.resets[this.resetNext] = id;
    this.resetNext = (this.resetNext + 1) % RESET_MEMORY;
  }

  wasSkipped(id: number): boolean {
    const r = this.skips;
    if (r === null) return false;
    for (let i = 0; i < r.length; i += 2) if (id >= r[i]! && id <= r[i + 1]!) return true;
    return false;
  }

  rememberSkip(from: number, to: number): void {
    if (this.skips === null) this.skips = new Int32Array(SKIP_MEMORY * 2);
    this.skips[this.skipNext * 2] = from;
    this.skips[this.skipNext * 2 + 1] = to;
    this.skipNext = (this.skipNext + 1) % SKIP_MEMORY;
  }
}
