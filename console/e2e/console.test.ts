// The console in a real browser against the real platform: Chromium (headless, driven by
// playwright-core) opens the console the gateway serves, and every call goes through the
// gateway to the services, as it does for a person. The scenarios run in order and share the
// platform: a visitor signs up and writes posts; a member is refused the admin pages; the
// administrator reads the audit log and manages roles; then logins are throttled.
//
// Screenshots of the main pages (1280x800, and the posts at 390x844 as on a phone) go to
// BASALT_CONSOLE_SCREENSHOTS when it is set (npm run screenshots writes docs/images), else to a
// temporary folder.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";

import type { Browser, BrowserContext, Page, Response } from "playwright-core";

import { launchChromium, startPlatform, type Platform } from "./platform.js";

const shots = process.env.BASALT_CONSOLE_SCREENSHOTS
  ? resolve(process.env.BASALT_CONSOLE_SCREENSHOTS)
  : mkdtempSync(join(tmpdir(), "basalt-console-shots-"));
mkdirSync(shots, { recursive: true });

const member = {
  name: "Ada Lovelace",
  email: `ada-${Date.now()}@example.com`,
  password: "analytical engine notes",
};
const postTitle = "Notes on the Analytical Engine";
const postBody = "It weaves algebraic patterns just as the Jacquard loom weaves flowers and leaves.";

let platform: Platform;
let browser: Browser;
let postId = "";
let memberId = "";

before(async () => {
  platform = await startPlatform();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await platform?.stop();
});

/**
 * inPage runs a scenario in a fresh browser context (a new sessionStorage). When it fails, the
 * page's text and a screenshot (failed-<name>.png) are kept to show what the browser showed.
 */
async function inPage(name: string, scenario: (page: Page) => Promise<void>): Promise<void> {
  const context: BrowserContext = await browser.newContext({ viewport: { width: 1280, height: 800 }, baseURL: platform.gateway });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  page.on("pageerror", (err) => console.error("page error:", err));
  try {
    await scenario(page);
  } catch (err) {
    const shot = join(shots, `failed-${name}.png`);
    await page.screenshot({ path: shot }).catch(() => {});
    const text = await page.locator("body").innerText().catch(() => "");
    console.error(`${name} failed at ${page.url()}; screenshot ${shot}; the page said:\n${text}`);
    throw err;
  } finally {
    await context.close();
  }
}

async function shoot(page: Page, name: string): Promise<void> {
  // Wait for the page's calls and fonts so the picture shows the page as a person sees it.
  await page.waitForLoadState("networkidle");
  await page.evaluate(() => document.fonts.ready);
  await page.screenshot({ path: join(shots, `console-${name}.png`) });
}

/** rpc waits for the answer of a Connect call to procedure ("AuthService/Login"). */
function rpc(page: Page, procedure: string): Promise<Response> {
  return page.waitForResponse((r) => new URL(r.url()).pathname.endsWith(`.${procedure}`));
}

async function logIn(page: Page, email: string, password: string): Promise<void> {
  await page.goto("/console/login");
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { level: 1, name: "Posts" }).waitFor();
}

/** stored reads the session the console keeps in sessionStorage. */
function stored(page: Page): Promise<{ accessToken: string; refreshToken: string; expiresAt: number } | null> {
  return page.evaluate(() => JSON.parse(sessionStorage.getItem("basalt.console.session") ?? "null"));
}

describe("the console", { timeout: 600_000 }, () => {
  it("is served by the gateway with its security headers", async () => {
    const res = await fetch(`${platform.gateway}/console/posts`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type") ?? "", /^text\/html/);
    assert.match(res.headers.get("content-security-policy") ?? "", /default-src 'self'; connect-src 'self'; frame-ancestors 'none'/);
    assert.equal(res.headers.get("x-content-type-options"), "nosniff");
    assert.match(await res.text(), /<title>Basalt console<\/title>/);
  });

  it("lets a visitor sign up, write, edit and delete posts, see their sessions and log out", () =>
    inPage("visitor", async (page) => {
      await page.goto("/console/");
      await page.getByRole("heading", { level: 1, name: "Log in" }).waitFor();
      assert.match(page.url(), /\/console\/login$/);
      await shoot(page, "login");

      // A wrong password is answered plainly (and the same for an unknown email).
      await page.getByLabel("Email").fill(`nobody-${Date.now()}@example.com`);
      await page.getByLabel("Password").fill("not the password");
      const refused = rpc(page, "AuthService/Login");
      await page.getByRole("button", { name: "Log in" }).click();
      assert.equal((await refused).status(), 401);
      await page.getByRole("alert").filter({ hasText: "Wrong email or password." }).waitFor();

      // Sign up; a password the service refuses shows the service's words next to the field.
      await page.getByRole("link", { name: "Sign up" }).first().click();
      await page.getByRole("heading", { level: 1, name: "Sign up" }).waitFor();
      await page.getByLabel("Name").fill(member.name);
      await page.getByLabel("Email").fill(member.email);
      await page.getByLabel("Password").fill("short");
      const invalid = rpc(page, "AuthService/Register");
      await page.getByRole("button", { name: "Create account" }).click();
      assert.equal((await invalid).status(), 400);
      await page.getByRole("alert").filter({ hasText: "Password: must be at least 8 characters." }).waitFor();
      assert.equal(await page.getByLabel("Password").getAttribute("aria-invalid"), "true");
      await page.getByText("must be at least 8 characters", { exact: true }).waitFor();
      await page.getByLabel("Password").fill(member.password);
      await page.getByRole("button", { name: "Create account" }).click();
      await page.getByRole("heading", { level: 1, name: "Posts" }).waitFor();
      const session = await stored(page);
      assert.ok(session?.accessToken && session.refreshToken, "the tokens are kept in sessionStorage");
      memberId = JSON.parse(Buffer.from(session.accessToken.split(".")[1], "base64url").toString()).sub;

      // Write a post; it is listed.
      await page.getByLabel("Title").fill(postTitle + " (draft)");
      await page.getByLabel("Text").fill(postBody);
      const created = rpc(page, "BlogService/CreatePost");
      await page.getByRole("button", { name: "Publish" }).click();
      const createdRes = await created;
      assert.equal(createdRes.status(), 200);
      postId = ((await createdRes.json()) as { post: { postId: string } }).post.postId;
      assert.ok(postId, "CreatePost answered the post's id");
      // The only post so far (the list is newest first).
      const post = page.getByRole("article").first();
      await post.getByRole("heading", { name: postTitle + " (draft)" }).waitFor();
      await post.locator(".meta").filter({ hasText: `by ${member.name} (you) ·` }).waitFor();

      // Edit it.
      await post.getByRole("button", { name: "Edit" }).click();
      await post.getByLabel("Title").fill(postTitle);
      await post.getByRole("button", { name: "Save" }).click();
      await page.getByRole("article").getByRole("heading", { name: postTitle, exact: true }).waitFor();

      // A second post, deleted again.
      await page.getByLabel("Title").first().fill("A post to delete");
      await page.getByRole("button", { name: "Publish" }).click();
      const doomed = page.getByRole("article").filter({ hasText: "A post to delete" });
      await doomed.getByRole("button", { name: "Delete" }).click();
      await doomed.getByRole("button", { name: "Yes, delete" }).click();
      await page.getByRole("status").filter({ hasText: "Deleted “A post to delete”." }).waitFor();
      await doomed.waitFor({ state: "detached" });
      await page.reload();
      await page.getByRole("heading", { name: postTitle, exact: true }).waitFor();
      assert.equal(await page.getByRole("heading", { name: "A post to delete" }).count(), 0);
      await shoot(page, "posts");

      // Sessions: the current one is marked; a login in another browser is listed too.
      const other = await browser.newContext({ baseURL: platform.gateway });
      const otherPage = await other.newPage();
      await logIn(otherPage, member.email, member.password);
      await page.getByRole("link", { name: "Sessions" }).click();
      await page.getByRole("heading", { level: 1, name: "My sessions" }).waitFor();
      await page.getByRole("row").filter({ hasText: "this session" }).waitFor();
      const otherRow = page.getByRole("row").filter({ has: page.getByRole("button", { name: /^Revoke the session/ }) });
      await otherRow.waitFor();
      await shoot(page, "sessions");

      // Revoking the other session logs the other browser out: its calls are refused, its
      // refresh fails, and it shows the login page.
      await otherRow.getByRole("button", { name: /^Revoke/ }).click();
      await page.getByRole("status").filter({ hasText: "The session was revoked." }).waitFor();
      assert.equal(await otherRow.count(), 0);
      for (let i = 0; i < 30 && !/\/console\/login/.test(otherPage.url()); i++) {
        await otherPage.goto("/console/sessions");
        await otherPage.waitForLoadState("networkidle");
      }
      await otherPage.getByRole("status").filter({ hasText: "Your session has ended. Log in again." }).waitFor();
      await other.close();

      // A token the gateway refuses is refreshed once and the call retried: the page still loads.
      await page.evaluate(() => {
        const s = JSON.parse(sessionStorage.getItem("basalt.console.session")!);
        s.accessToken = "not-a-token";
        sessionStorage.setItem("basalt.console.session", JSON.stringify(s));
      });
      let refreshes = 0;
      page.on("request", (r) => {
        if (r.url().endsWith(".AuthService/Refresh")) refreshes++;
      });
      await page.reload();
      await page.getByRole("row").filter({ hasText: "this session" }).waitFor();
      assert.equal(refreshes, 1, "one refresh for the refused token");
      const refreshed = await stored(page);
      assert.ok(refreshed && refreshed.accessToken !== "not-a-token" && refreshed.refreshToken !== session.refreshToken);

      // A token about to expire is refreshed before the call.
      await page.evaluate(() => {
        const s = JSON.parse(sessionStorage.getItem("basalt.console.session")!);
        s.expiresAt = Date.now() + 5_000;
        sessionStorage.setItem("basalt.console.session", JSON.stringify(s));
      });
      const unauthenticated: string[] = [];
      page.on("response", (r) => {
        if (r.status() === 401) unauthenticated.push(r.url());
      });
      await page.reload();
      await page.getByRole("row").filter({ hasText: "this session" }).waitFor();
      assert.equal(refreshes, 2, "one refresh for the expiring token");
      assert.deepEqual(unauthenticated, [], "no call went out with the expiring token");
      const dead = await stored(page);

      // Log out; the pages then ask for a login.
      await page.getByRole("button", { name: "Log out" }).first().click();
      await page.getByRole("heading", { level: 1, name: "Log in" }).waitFor();
      await page.getByRole("status").filter({ hasText: "You are logged out." }).waitFor();
      assert.equal(await stored(page), null);
      await page.goto("/console/sessions");
      await page.getByRole("heading", { level: 1, name: "Log in" }).waitFor();
      await page.getByRole("status").filter({ hasText: "Log in to continue." }).waitFor();

      // The logged-out session's tokens no longer refresh: the console goes to the login page.
      await page.evaluate((s) => sessionStorage.setItem("basalt.console.session", JSON.stringify({ ...s, expiresAt: 0 })), dead);
      await page.goto("/console/sessions");
      await page.getByRole("status").filter({ hasText: "Your session has ended. Log in again." }).waitFor();
      assert.equal(await stored(page), null);
    }));

  it("refuses the admin pages to a member", () =>
    inPage("member", async (page) => {
      await logIn(page, member.email, member.password);
      assert.equal(await page.getByRole("list", { name: "Administration" }).count(), 0, "no admin navigation for a member");
      for (const [path, permission, procedure] of [
        ["/console/admin/users", "You do not have permission to list users.", "IdentityService/ListUsers"],
        ["/console/admin/roles", "You do not have permission to manage roles.", "AuthzService/ListRoles"],
        ["/console/admin/audit", "You do not have permission to read the audit log.", "AuditService/ListEvents"],
      ]) {
        const denied = rpc(page, procedure);
        await page.goto(path);
        const res = await denied;
        assert.equal(res.status(), 403, `${procedure} answers 403`);
        assert.equal(((await res.json()) as { code: string }).code, "permission_denied");
        await page.getByRole("alert").filter({ hasText: permission }).waitFor();
        assert.equal(await page.getByRole("table").count(), 0, `${path} shows no table`);
      }
    }));

  it("shows the administrator the post's audit events, a verified log, users and roles", () =>
    inPage("administrator", async (page) => {
      await logIn(page, platform.adminEmail, platform.adminPassword);
      await page.getByRole("list", { name: "Administration" }).waitFor();

      // Users: the member is listed.
      await page.getByRole("link", { name: "Users" }).click();
      await page.getByRole("row").filter({ hasText: member.email }).waitFor();

      // Audit log: the post's events arrive through the blog's outbox; filter by the service.
      await page.getByRole("link", { name: "Audit log" }).click();
      await page.getByRole("heading", { level: 1, name: "Audit log" }).waitFor();
      await page.getByLabel("Service").fill("blog");
      const rows = page.getByRole("row").filter({ hasText: postId });
      for (let i = 0; ; i++) {
        await page.getByRole("button", { name: "Search" }).click();
        await page.waitForLoadState("networkidle");
        if ((await rows.count()) >= 2 || i >= 60) break;
        await page.waitForTimeout(500);
      }
      assert.ok((await rows.count()) >= 2, `the post's creation and change are listed (${await rows.count()} rows name ${postId})`);
      assert.match(page.url(), /service=blog/, "the filter is in the URL");
      await page.getByRole("button", { name: "Verify log" }).click();
      const verdict = page.getByRole("status").filter({ hasText: /^Verified: the chain is intact \(ok\)\. \d+ events/ });
      await verdict.waitFor();
      const count = Number(/(\d+) events/.exec((await verdict.textContent()) ?? "")?.[1]);
      assert.ok(count >= 3, `VerifyLog checked ${count} events`);
      await shoot(page, "audit");

      // Roles: create a role, give it to the member, change it, and see the binding.
      await page.getByRole("link", { name: "Roles" }).click();
      await page.getByRole("row").filter({ hasText: "admin" }).first().waitFor();
      const roleForm = page.getByRole("form", { name: "New role" });
      await roleForm.getByLabel("Name").fill("blog-editor");
      await roleForm.getByLabel("Description").fill("Edits anyone's posts");
      await roleForm.getByLabel("Permissions").fill("blog.posts.manage\nblog.posts.create");
      await roleForm.getByRole("button", { name: "Create role" }).click();
      await page.getByRole("status").filter({ hasText: "Created role blog-editor." }).waitFor();
      await page.getByRole("button", { name: "Edit role blog-editor" }).click();
      const editForm = page.getByRole("form", { name: "Edit role blog-editor" });
      await editForm.getByLabel("Description").fill("Edits and deletes anyone's posts");
      await editForm.getByRole("button", { name: "Save role" }).click();
      await page.getByRole("cell", { name: "Edits and deletes anyone's posts" }).waitFor();
      const assign = page.getByRole("form", { name: "Assign a role" });
      await assign.getByLabel("Subject").fill(memberId);
      await assign.getByLabel("Role").fill("blog-editor");
      await assign.getByRole("button", { name: "Assign role" }).click();
      await page.getByRole("status").filter({ hasText: `Assigned role blog-editor to ${memberId}.` }).waitFor();
      const filters = page.getByRole("search", { name: "Filter role bindings" });
      await filters.getByLabel("Subject (user id)").fill(memberId);
      await filters.getByRole("button", { name: "Show bindings" }).click();
      await page.getByRole("row").filter({ hasText: "blog-editor" }).filter({ hasText: memberId }).waitFor();
      await page.getByRole("row").filter({ hasText: "member" }).filter({ hasText: memberId }).waitFor();
      await page.evaluate(() => window.scrollTo(0, 0));
      await shoot(page, "roles");

      // Revoke the binding, then delete the role, which a bound role could not be.
      await page.getByRole("button", { name: `Revoke blog-editor from ${memberId}` }).click();
      await page.getByRole("status").filter({ hasText: `Revoked role blog-editor from ${memberId}.` }).waitFor();
      await page.getByRole("button", { name: "Delete role blog-editor" }).click();
      await page.getByRole("status").filter({ hasText: "Deleted role blog-editor." }).waitFor();
    }));

  it("names each post's author, by their new name after a rename, and shows posts while identity is paused", () =>
    inPage("authors", async (page) => {
      // The profiles are public over REST too: ids repeat the query parameter; an unknown id
      // is absent and a repeated one answered once.
      const unknown = "0193e6c4-7d43-7b5e-9f3a-3c1d2e4f5a6b";
      const profiles = await fetch(`${platform.gateway}/v1/profiles?user_ids=${memberId}&user_ids=${unknown}&user_ids=${memberId}`);
      assert.equal(profiles.status, 200);
      assert.deepEqual(await profiles.json(), { profiles: [{ userId: memberId, displayName: member.name }] });

      await logIn(page, platform.adminEmail, platform.adminPassword);
      const post = page.getByRole("article").filter({ has: page.getByRole("heading", { name: postTitle, exact: true }) });
      const byline = (text: string) => post.locator(".meta").filter({ hasText: `by ${text} ·` });
      await byline(member.name).waitFor();

      // The member renames themselves (over REST, as any client may); the posts show the new
      // name the next time they are listed.
      const login = await fetch(`${platform.gateway}/v1/auth/login`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ email: member.email, password: member.password }),
      });
      assert.equal(login.status, 200);
      const { tokens } = (await login.json()) as { tokens: { accessToken: string } };
      const renamed = "Augusta Ada King";
      const rename = await fetch(`${platform.gateway}/v1/users/${memberId}`, {
        method: "PATCH",
        headers: { "Content-Type": "application/json", Authorization: `Bearer ${tokens.accessToken}` },
        body: JSON.stringify({ displayName: renamed }),
      });
      assert.equal(rename.status, 200);
      await page.getByRole("link", { name: "Posts" }).click();
      await byline(renamed).waitFor();
      assert.equal(await byline(member.name).count(), 0, "the old name is gone");

      // identity stops answering (its process paused, as a hung service is): the posts are still
      // listed, and once the console stops waiting for the names, the author's id stands in.
      platform.signal("identity", "SIGSTOP");
      try {
        const listed = rpc(page, "BlogService/ListPosts");
        await page.getByRole("link", { name: "Posts" }).click();
        assert.equal((await listed).status(), 200);
        await byline(`user ${memberId.slice(-8)}`).waitFor();
        await page.getByRole("status").filter({ hasText: "The authors' names cannot be loaded right now" }).waitFor();
      } finally {
        platform.signal("identity", "SIGCONT");
      }
      // identity answers again: the names are back.
      for (let i = 0; i < 30 && (await byline(renamed).count()) === 0; i++) {
        await page.getByRole("link", { name: "Posts" }).click();
        await page.waitForLoadState("networkidle");
      }
      await byline(renamed).waitFor();
      assert.equal(await page.getByRole("status").filter({ hasText: "The authors' names cannot be loaded" }).count(), 0);
    }));

  it("fits a 390 px wide screen: no sideways scrolling, every link shown, reached and followed", () =>
    inPage("narrow", async (page) => {
      await page.setViewportSize({ width: 390, height: 844 });
      const scrollsSideways = () => page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth);
      const nav = page.getByRole("navigation", { name: "Main" });

      await page.goto("/console/login");
      await page.getByRole("heading", { level: 1, name: "Log in" }).waitFor();
      assert.equal(await scrollsSideways(), false, "the login page scrolls sideways");
      for (const name of ["Log in", "Sign up"]) assert.ok(await nav.getByRole("link", { name }).isVisible(), `${name} is shown`);

      await logIn(page, platform.adminEmail, platform.adminPassword);
      const pages: [string, string][] = [
        ["Posts", "Posts"],
        ["Sessions", "My sessions"],
        ["Users", "Users"],
        ["Roles", "Roles"],
        ["Audit log", "Audit log"],
      ];
      const links = nav.getByRole("link");
      assert.deepEqual(await links.allInnerTexts(), pages.map(([link]) => link), "the navigation lists every page");

      // Every link is reached from the keyboard, in order, after the skip link.
      await page.locator("a.skip").focus();
      const reached: string[] = [];
      for (let i = 0; i < 12 && reached.length < pages.length; i++) {
        await page.keyboard.press("Tab");
        const focused = await page.evaluate(() => (document.activeElement?.closest("nav") ? document.activeElement.textContent : null));
        if (focused) reached.push(focused);
      }
      assert.deepEqual(reached, pages.map(([link]) => link), "Tab reaches every link");

      // Every link is shown inside the screen and works; no page scrolls sideways.
      for (const [link, heading] of pages) {
        const a = nav.getByRole("link", { name: link, exact: true });
        const box = await a.boundingBox();
        assert.ok(box && box.x >= 0 && box.x + box.width <= 390 && box.y + box.height <= 844, `${link} lies on the screen: ${JSON.stringify(box)}`);
        await a.click();
        await page.getByRole("heading", { level: 1, name: heading }).waitFor();
        assert.equal(await a.getAttribute("aria-current"), "page");
        await page.waitForLoadState("networkidle");
        assert.equal(await scrollsSideways(), false, `${heading} scrolls sideways at 390 px`);
      }
      await nav.getByRole("link", { name: "Posts", exact: true }).click();
      await page.getByRole("heading", { level: 1, name: "Posts" }).waitFor();
      await page.getByRole("article").first().waitFor();
      assert.equal(await scrollsSideways(), false, "Posts scrolls sideways at 390 px");
      await shoot(page, "posts-390");
    }));

  it("tells how long to wait when logins are throttled", () =>
    inPage("throttled", async (page) => {
      await page.goto("/console/login");
      const email = `guess-${Date.now()}@example.com`;
      let throttled: Response | undefined;
      for (let i = 0; i < 12 && !throttled; i++) {
        await page.getByLabel("Email").fill(email);
        await page.getByLabel("Password").fill(`guess ${i}`);
        const answered = rpc(page, "AuthService/Login");
        await page.getByRole("button", { name: "Log in" }).click();
        const res = await answered;
        if (res.status() === 429) throttled = res;
      }
      assert.ok(throttled, "the gateway throttles logins");
      const wait = Number(throttled.headers()["retry-after"]);
      assert.ok(wait >= 1, "with a Retry-After");
      await page.getByRole("alert").filter({ hasText: /^Too many attempts; try again in \d+ s\.$/ }).waitFor();
    }));
});

describe("the REST reference page", { timeout: 120_000 }, () => {
  it("lists every operation of the OpenAPI document, with nothing loaded from elsewhere", () =>
    inPage("docs", async (page) => {
      const elsewhere: string[] = [];
      page.on("request", (req) => {
        if (new URL(req.url()).origin !== new URL(platform.gateway).origin) elsewhere.push(req.url());
      });
      const doc = (await (await fetch(`${platform.gateway}/openapi.json`)).json()) as {
        paths: Record<string, Record<string, { summary: string }>>;
      };
      const summaries = Object.values(doc.paths).flatMap((item) => Object.values(item).map((op) => op.summary));
      assert.ok(summaries.length > 20, `the document lists ${summaries.length} operations`);

      const res = await page.goto("/docs/");
      assert.equal(res?.status(), 200);
      assert.match(res?.headers()["content-security-policy"] ?? "", /^default-src 'self'; connect-src 'self'/);
      await page.getByRole("heading", { level: 1, name: "Basalt API" }).waitFor();
      // Each operation is a link in the side bar, named after it and its HTTP method.
      for (const summary of summaries) {
        await page.getByRole("link", { name: new RegExp(`^${summary}\\b`) }).first().waitFor();
      }
      // The page's stylesheet applies (a file of the gateway's, not inline style).
      const font = await page.getByRole("heading", { level: 1, name: "Basalt API" }).evaluate((h) => getComputedStyle(h).fontFamily);
      assert.doesNotMatch(font, /^"?Times/, "Scalar's stylesheet is applied");
      await page.screenshot({ path: join(shots, "docs.png") });
      assert.deepEqual(elsewhere, [], "every request stays on the gateway's origin");
    }));
});
