// The console's clients of the platform. Every call goes to the gateway, which serves the
// console, so the base URL is the page's own origin and no CORS is involved.
//
// An interceptor sends the access token as "Authorization: Bearer" and keeps it fresh: a token
// about to expire is refreshed before the call, and a call answered unauthenticated is retried
// once after a refresh. Refreshes are single-flight: calls that need one while it runs wait
// for the same one, since a refresh token works only once. When the refresh fails the session
// is over: the tokens are dropped and the console shows the login page (unless the refresh got
// no answer at all, which says nothing about the session).

import { AuditService } from "@basaltplatform/api/basalt/audit/v1/audit_service_pb.js";
import { AuthService } from "@basaltplatform/api/basalt/auth/v1/auth_service_pb.js";
import { AuthzService } from "@basaltplatform/api/basalt/authz/v1/authz_service_pb.js";
import { BlogService } from "@basaltplatform/api/basalt/blog/v1/blog_service_pb.js";
import { IdentityService } from "@basaltplatform/api/basalt/identity/v1/identity_service_pb.js";
import { Code, ConnectError, createClient, type Interceptor } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";

import * as session from "./session.ts";

const baseUrl = window.location.origin;

// Methods that carry no access token and are never retried after a refresh: they start, renew
// or end a session themselves.
const sessionMethods = new Set(["Register", "Login", "Refresh", "Logout"]);

// ended marks the error of a call that needed a session when there is none (any more). A
// subclass would not do: ConnectError's instanceof accepts any ConnectError.
const ended = Symbol("session ended");

function sessionEnded(): ConnectError {
  return new ConnectError("your session has ended; log in again", Code.Unauthenticated, undefined, undefined, ended);
}

/** isSessionEnded reports whether err says the session ended (and the login page is shown). */
export function isSessionEnded(err: unknown): boolean {
  return err instanceof ConnectError && err.cause === ended;
}

let onEnded: () => void = () => {};

/** whenSessionEnds registers what to do when a refresh fails (show the login page). */
export function whenSessionEnds(fn: () => void): void {
  onEnded = fn;
}

// Refresh goes through its own transport, without the interceptor below.
const plainAuth = createClient(AuthService, createConnectTransport({ baseUrl }));

const transient = new Set([Code.Unavailable, Code.DeadlineExceeded, Code.Canceled, Code.ResourceExhausted]);

let refreshing: Promise<session.Stored> | undefined;

/**
 * refresh exchanges the refresh token for new tokens, once for any number of callers. used is
 * the access token the caller sent: when the stored one is already newer (another call
 * refreshed meanwhile) and fresh, that one is returned without a new refresh.
 */
function refresh(used?: string): Promise<session.Stored> {
  const current = session.load();
  if (!current) return Promise.reject(sessionEnded());
  if (used !== undefined && current.accessToken !== used && !session.expiring(current)) {
    return Promise.resolve(current);
  }
  refreshing ??= plainAuth
    .refresh({ refreshToken: current.refreshToken })
    .then((res) => session.save(res.tokens))
    .catch((err: unknown) => {
      if (err instanceof ConnectError && transient.has(err.code)) {
        // The refresh did not get an answer (or was throttled): the session may well be
        // alive, so it is kept and the call fails with this error.
        throw err;
      }
      session.clear();
      onEnded();
      throw sessionEnded();
    })
    .finally(() => {
      refreshing = undefined;
    });
  return refreshing;
}

const bearer: Interceptor = (next) => async (req) => {
  if (req.service.typeName === AuthService.typeName && sessionMethods.has(req.method.name)) {
    return next(req);
  }
  let s = session.load();
  if (!s) {
    // Public methods (posts are public to read) work without a session; the others will be
    // answered unauthenticated, which the pages turn into the login page.
    return next(req);
  }
  if (session.expiring(s)) {
    s = await refresh(s.accessToken);
  }
  req.header.set("Authorization", `Bearer ${s.accessToken}`);
  try {
    return await next(req);
  } catch (err) {
    // A unary call is retried once with a fresh token. The gateway refuses an expired token;
    // a service refuses one whose session ended, and then the refresh fails too.
    if (!(err instanceof ConnectError) || err.code !== Code.Unauthenticated || req.stream) {
      throw err;
    }
    const fresh = await refresh(s.accessToken);
    req.header.set("Authorization", `Bearer ${fresh.accessToken}`);
    return await next(req);
  }
};

const transport = createConnectTransport({ baseUrl, interceptors: [bearer] });

export const auth = createClient(AuthService, transport);
export const identity = createClient(IdentityService, transport);
export const authz = createClient(AuthzService, transport);
export const audit = createClient(AuditService, transport);
export const blog = createClient(BlogService, transport);
