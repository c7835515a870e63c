// The console keeps a session's tokens in sessionStorage, under one key.
//
// sessionStorage rather than localStorage: it belongs to one tab and ends with it, so tokens do
// not linger on disk after the browser closes, and no two tabs ever hold the same refresh token
// (refresh tokens work once; two tabs refreshing with the same one would look like a stolen
// token to the auth service, which then ends the whole session). It survives a reload, so a
// reload does not log the user out. Script on the page can read it, as it could read anything
// in memory: the gateway's Content-Security-Policy allows only the console's own scripts, and
// the console never inserts HTML it did not write.

import type { Tokens } from "@basaltplatform/api/basalt/auth/v1/auth_service_pb.js";

export interface Stored {
  accessToken: string;
  refreshToken: string;
  /** expiresAt is when the access token expires, in milliseconds since the epoch. */
  expiresAt: number;
}

const key = "basalt.console.session";

export function load(): Stored | undefined {
  const raw = sessionStorage.getItem(key);
  if (!raw) return undefined;
  try {
    const s = JSON.parse(raw) as Partial<Stored>;
    if (typeof s.accessToken === "string" && typeof s.refreshToken === "string" && typeof s.expiresAt === "number") {
      return s as Stored;
    }
  } catch {
    // A damaged entry is the same as none.
  }
  sessionStorage.removeItem(key);
  return undefined;
}

export function save(t: Tokens | undefined): Stored {
  if (!t || !t.accessToken || !t.refreshToken) {
    throw new Error("the auth service answered without tokens");
  }
  const s: Stored = {
    accessToken: t.accessToken,
    refreshToken: t.refreshToken,
    expiresAt: Date.now() + t.expiresIn * 1000,
  };
  sessionStorage.setItem(key, JSON.stringify(s));
  return s;
}

export function clear(): void {
  sessionStorage.removeItem(key);
}

/** expiring reports whether the access token expires within the next 30 seconds. */
export function expiring(s: Stored, now = Date.now()): boolean {
  return s.expiresAt - now < 30_000;
}
