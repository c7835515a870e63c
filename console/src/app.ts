// The console's shell: the header and navigation, the current user, and a router over the
// History API. Pages live under /console/ (Vite's base); the gateway answers every path there
// that is not a file with index.html, so a reload or a bookmark of any page works.

import type { User } from "@basaltplatform/api/basalt/identity/v1/identity_service_pb.js";
import { Code } from "@connectrpc/connect";

import * as api from "./api.ts";
import { h, Notice, replace } from "./dom.ts";
import { describe } from "./errors.ts";
import * as session from "./session.ts";

export interface Context {
  /** me is the logged-in user; set on every page that needs a session. */
  me: User;
  /** can reports whether the user's roles grant a permission (wildcards included). */
  can(permission: string): boolean;
  /** query is the page URL's query. */
  query: URLSearchParams;
  /** notice is the page's message area, above its content. */
  notice: Notice;
  /** go shows another page, with an optional message on it. */
  go(path: string, flash?: string): void;
}

export interface Page {
  title: string;
  /** public pages (log in, sign up) need no session. */
  public?: boolean;
  render(main: HTMLElement, ctx: Context): Promise<void> | void;
}

const base = import.meta.env.BASE_URL.replace(/\/$/, ""); // "/console"

/** href is the URL of a console page ("/posts" → "/console/posts"). */
export function href(path: string): string {
  return base + path;
}

/** link is an anchor to a console page that navigates without reloading. */
export function link(path: string, text: string, attrs: Record<string, string> = {}): HTMLAnchorElement {
  return h("a", { href: href(path), "data-link": "", ...attrs }, text);
}

let pages: Record<string, Page> = {};
let me: User | undefined;
let grants: string[] = [];
let flash: string | undefined;
let rendering = 0;

const header = h("header", { class: "top" });
const main = h("main", { id: "main", tabindex: "-1" });

/** start mounts the console into root and shows the page of the current URL. */
export function start(root: HTMLElement, routes: Record<string, Page>): void {
  pages = routes;
  replace(root, h("a", { class: "skip", href: "#main" }, "Skip to content"), header, main);
  document.addEventListener("click", (e) => {
    const a = (e.target as Element | null)?.closest?.("a[data-link]");
    if (!(a instanceof HTMLAnchorElement) || e.defaultPrevented || e.button !== 0) return;
    if (e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(a.pathname + a.search);
  });
  window.addEventListener("popstate", () => void show());
  api.whenSessionEnds(() => {
    me = undefined;
    grants = [];
    go("/login", "Your session has ended. Log in again.");
  });
  void show();
}

function navigate(url: string, replaceState = false): void {
  if (replaceState) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  void show();
}

/** go shows the console page at path, with an optional message on it. */
export function go(path: string, message?: string): void {
  flash = message;
  navigate(href(path));
}

/** signedIn records a new session (after Login or Register) and shows the next page. */
export async function signedIn(next: string): Promise<void> {
  me = undefined;
  go(next.startsWith("/") && !next.startsWith("//") ? next : "/posts");
}

/** logOut ends the session at the auth service (best effort) and forgets its tokens. */
export async function logOut(): Promise<void> {
  const s = session.load();
  session.clear();
  me = undefined;
  grants = [];
  if (s) {
    try {
      await api.auth.logout({ refreshToken: s.refreshToken });
    } catch {
      // The tokens are gone from this tab either way; the session expires on its own.
    }
  }
  go("/login", "You are logged out.");
}

function currentPath(): string {
  const p = location.pathname.startsWith(base) ? location.pathname.slice(base.length) : location.pathname;
  return p === "" ? "/" : p.replace(/\/+$/, "") || "/";
}

async function show(): Promise<void> {
  const turn = ++rendering;
  const path = currentPath();
  const query = new URLSearchParams(location.search);
  const message = flash;
  flash = undefined;
  const signed = session.load() !== undefined;
  if (path === "/") {
    navigate(href(signed ? "/posts" : "/login"), true);
    return;
  }
  const page = pages[path];
  if (page && !page.public && !signed) {
    flash = message ?? "Log in to continue.";
    navigate(href("/login") + "?next=" + encodeURIComponent(path + location.search), true);
    return;
  }
  const notice = new Notice();
  if (page && !page.public) {
    try {
      await loadMe();
    } catch (err) {
      if (turn !== rendering) return;
      if (api.isSessionEnded(err)) return; // whenSessionEnds shows the login page
      renderShell(path);
      replace(main, h("h1", {}, "Basalt console"), notice.el);
      notice.show("error", describe(err).message);
      return;
    }
  }
  if (turn !== rendering) return;
  renderShell(path);
  const title = page?.title ?? "Page not found";
  document.title = `${title} · Basalt console`;
  replace(main, h("h1", { tabindex: "-1" }, title), notice.el);
  if (message) notice.show("info", message);
  if (!page) {
    main.append(h("p", {}, "There is no such page. ", link("/", "Go to the start page"), "."));
  } else {
    const ctx: Context = { me: me!, can, query, notice, go };
    try {
      await page.render(main, ctx);
    } catch (err) {
      if (turn === rendering && !api.isSessionEnded(err)) notice.show("error", describe(err).message);
    }
  }
  if (turn === rendering) main.querySelector<HTMLElement>("h1")?.focus({ preventScroll: true });
}

async function loadMe(): Promise<void> {
  if (me) return;
  const res = await api.identity.getCurrentUser({});
  const user = res.user;
  if (!user) throw new Error("the identity service answered without a user");
  try {
    const perms = await api.authz.listSubjectPermissions({ subject: user.id });
    grants = perms.grants.filter((g) => g.resource === "").map((g) => g.permission);
  } catch {
    grants = []; // Navigation then shows no admin pages; the pages themselves still ask.
  }
  me = user;
}

/** can reports whether a permission is granted everywhere by the user's roles. */
export function can(permission: string): boolean {
  return grants.some((g) => g === "*" || g === permission || (g.endsWith(".*") && permission.startsWith(g.slice(0, -1))));
}

function renderShell(path: string): void {
  const item = (to: string, text: string) =>
    h("li", {}, link(to, text, path === to || path.startsWith(to + "/") ? { "aria-current": "page" } : {}));
  const nav = h("nav", { "aria-label": "Main" });
  const who = h("div", { class: "who" });
  if (me && session.load()) {
    const admin = [
      can("identity.users.read") ? item("/admin/users", "Users") : null,
      can("authz.roles.manage") ? item("/admin/roles", "Roles") : null,
      can("audit.events.read") ? item("/admin/audit", "Audit log") : null,
    ].filter((x) => x !== null);
    replace(nav, h("ul", {}, item("/posts", "Posts"), item("/sessions", "Sessions")));
    if (admin.length > 0) {
      nav.append(h("ul", { class: "admin", "aria-label": "Administration" }, h("li", { class: "tag" }, "Admin"), admin));
    }
    const out = h("button", { type: "button", class: "secondary" }, "Log out");
    out.addEventListener("click", () => void logOut());
    replace(who, h("span", { class: "name" }, me.displayName || me.email), out);
  } else {
    replace(nav, h("ul", {}, item("/login", "Log in"), item("/signup", "Sign up")));
  }
  replace(header, h("a", { class: "brand", href: href("/"), "data-link": "" }, "Basalt"), nav, who);
}

/**
 * fail shows why a call failed on the page. When the caller lacks the permission, the page's
 * controls are hidden as well, since none of them can work.
 */
export function fail(ctx: Context, err: unknown, action: string, ...content: HTMLElement[]): void {
  if (api.isSessionEnded(err)) return;
  const p = describe(err, { action });
  ctx.notice.show("error", p.message);
  if (p.code === Code.PermissionDenied) {
    for (const el of content) el.hidden = true;
  }
}
