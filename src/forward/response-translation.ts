import { Buffer } from 'node:buffer';
import { type H1ResponseHead, h1ResponseHead, h2ResponseStatus } from './h2-translate.ts';

/**
 * The last response head an HTTP/2 upstream connection's answers were checked and translated from,
 * kept with what was made of it. The connection's HPACK decoder hands out the same list again for an
 * equal header block (HpackDecoder.decodeList), so a backend answering one resource over and over
 * (the same Server, Date, Content-Type and Content-Length) is checked and rewritten as HTTP/1.1 once
 * per distinct head, not per response. Keyed by the list's identity: a list is never changed once
 * decoded (its receivers get it read-only), so the same list always means the same verdict and text.
 * One per upstream connection, since each has its own decoder.
 */
export class ResponseTranslation {
  private statusFields: readonly string[] | null = null;
  private statusClean = false;
  private statusOf = -1;
  private headFields: readonly string[] | null = null;
  /** The status and the three flags the HTTP/1.1 head depends on, packed. */
  private headKey = -1;
  private headVia: string | null = null;
  private head: H1ResponseHead | null = null;
  /** The kept head's text was made flat (one piece): rewritten whole, it is written faster than the rope it was built as. */
  private flat = false;

  /** h2ResponseStatus(fields, clean), from the last answer when the list is the same one. */
  status(fields: readonly string[], clean: boolean): number {
    if (fields === this.statusFields && clean === this.statusClean) return this.statusOf;
    const status = h2ResponseStatus(fields, clean);
    this.statusFields = fields;
    this.statusClean = clean;
    this.statusOf = status;
    return status;
  }

  /** h1ResponseHead(...), the same (read-only) result when the list and every other input are the same. */
  h1Head(
    fields: readonly string[],
    status: number,
    via: string | null,
    http10: boolean,
    noBody: boolean,
    close: boolean,
  ): H1ResponseHead | null {
    const key = status * 8 + (http10 ? 1 : 0) + (noBody ? 2 : 0) + (close ? 4 : 0);
    if (fields === this.headFields && key === this.headKey && via === this.headVia) {
      const kept = this.head;
      if (this.flat || kept === null) return kept;
      // Asked for a second time: worth one copy into a flat string (a head seen once never pays it).
      this.flat = true;
      return (this.head = { ...kept, text: Buffer.from(kept.text, 'latin1').toString('latin1') });
    }
    const head = h1ResponseHead(fields, status, via, http10, noBody, close);
    this.headFields = fields;
    this.headKey = key;
    this.headVia = via;
    this.head = head;
    this.flat = false;
    return head;
  }
}
