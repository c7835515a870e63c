// Turns a failed call into a message for people, from its Connect code. Services send field
// violations (google.rpc.BadRequest) and retry delays (google.rpc.RetryInfo, and a Retry-After
// header) as error details; both are decoded here.

import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";

export interface Problem {
  /** message is what to tell the user. */
  message: string;
  /** fields maps a request field ("display_name") to what is wrong with it. */
  fields: Map<string, string>;
  code?: Code;
}

export interface Wording {
  /** action completes "You do not have permission to …" ("list users"). */
  action?: string;
  /** unauthenticated replaces the message for that code (a wrong password on Login). */
  unauthenticated?: string;
}

/** describe explains err for people. */
export function describe(err: unknown, wording: Wording = {}): Problem {
  if (!(err instanceof ConnectError)) {
    return { message: err instanceof Error ? err.message : String(err), fields: new Map() };
  }
  const fields = fieldViolations(err);
  const p = (message: string): Problem => ({ message, fields, code: err.code });
  switch (err.code) {
    case Code.Unauthenticated:
      return p(wording.unauthenticated ?? "Your session has ended. Log in again.");
    case Code.ResourceExhausted: {
      const secs = retryAfter(err);
      return p(secs ? `Too many attempts; try again in ${secs} s.` : "Too many attempts; try again later.");
    }
    case Code.PermissionDenied:
      return p(`You do not have permission to ${wording.action ?? "do this"}.`);
    case Code.InvalidArgument:
      if (fields.size > 0) {
        return p([...fields].map(([f, d]) => `${label(f)}: ${d}${/[.!?]$/.test(d) ? "" : "."}`).join(" "));
      }
      return p(sentence(err.rawMessage));
    case Code.Unavailable:
      return p("The platform is not reachable right now; try again shortly.");
    case Code.DeadlineExceeded:
      return p("The platform took too long to answer; try again.");
    default:
      return p(sentence(err.rawMessage || err.code.toString()));
  }
}

function sentence(s: string): string {
  const t = s.trim();
  if (!t) return "Something went wrong.";
  return t[0].toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
}

/** label turns a proto field path into words: "display_name" → "Display name". */
export function label(field: string): string {
  return sentence(field.replaceAll("_", " ").replace(/\.$/, "")).replace(/\.$/, "");
}

/** retryAfter is the delay, in whole seconds, the server asked for, or 0. */
export function retryAfter(err: ConnectError): number {
  const header = err.metadata.get("Retry-After");
  if (header && /^\d+$/.test(header.trim())) return Math.max(1, Number(header.trim()));
  for (const d of err.details) {
    if ("type" in d && d.type === "google.rpc.RetryInfo") {
      const secs = retryInfoSeconds(d.value);
      if (secs > 0) return secs;
    }
  }
  const m = /retry after (\d+)\s*s/i.exec(err.rawMessage);
  return m ? Math.max(1, Number(m[1])) : 0;
}

// google.rpc.RetryInfo { google.protobuf.Duration retry_delay = 1; }
// google.protobuf.Duration { int64 seconds = 1; int32 nanos = 2; }
function retryInfoSeconds(bytes: Uint8Array): number {
  let seconds = 0;
  let nanos = 0;
  eachField(bytes, (r, no, wt) => {
    if (no !== 1 || wt !== WireType.LengthDelimited) return false;
    eachField(r.bytes(), (d, n, w) => {
      if (n === 1 && w === WireType.Varint) seconds = Number(d.int64());
      else if (n === 2 && w === WireType.Varint) nanos = d.int32();
      else return false;
      return true;
    });
    return true;
  });
  return seconds + (nanos > 0 ? 1 : 0);
}

// google.rpc.BadRequest { repeated FieldViolation field_violations = 1; }
// FieldViolation { string field = 1; string description = 2; ... }
function fieldViolations(err: ConnectError): Map<string, string> {
  const out = new Map<string, string>();
  for (const d of err.details) {
    if (!("type" in d) || d.type !== "google.rpc.BadRequest") continue;
    try {
      eachField(d.value, (r, no, wt) => {
        if (no !== 1 || wt !== WireType.LengthDelimited) return false;
        let field = "";
        let description = "";
        eachField(r.bytes(), (v, n, w) => {
          if (n === 1 && w === WireType.LengthDelimited) field = v.string();
          else if (n === 2 && w === WireType.LengthDelimited) description = v.string();
          else return false;
          return true;
        });
        if (field && !out.has(field)) out.set(field, description);
        return true;
      });
    } catch {
      // A detail that does not decode adds nothing; the message still says what is wrong.
    }
  }
  return out;
}

/** eachField calls fn for every field; fn reads the value and returns true, or false to skip it. */
function eachField(bytes: Uint8Array, fn: (r: BinaryReader, no: number, wt: WireType) => boolean): void {
  const r = new BinaryReader(bytes);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (!fn(r, no, wt)) r.skip(wt, no);
  }
}
