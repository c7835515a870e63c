import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Session } from "@basaltplatform/api/basalt/auth/v1/auth_service_pb.js";

import type { Page } from "../app.ts";
import { logOut } from "../app.ts";
import * as api from "../api.ts";
import { busy, h, replace, when } from "../dom.ts";
import { describe } from "../errors.ts";

export const sessions: Page = {
  title: "My sessions",
  async render(main, ctx) {
    const body = h("tbody");
    const table = h(
      "table",
      {},
      h("caption", {}, "Where you are logged in, newest first. Revoking a session logs that device out."),
      h(
        "thead",
        {},
        h("tr", {}, ["Started", "Last refreshed", "Expires", "Address", "Browser", ""].map((c) => h("th", { scope: "col" }, c))),
      ),
      body,
    );
    main.append(h("div", { class: "scroll" }, table));

    const load = async () => {
      const res = await api.auth.listSessions({});
      replace(body, res.sessions.map(row));
      if (res.sessions.length === 0) replace(body, h("tr", {}, h("td", { colspan: 6 }, "No active sessions.")));
    };

    const row = (s: Session) => {
      const action = s.current
        ? h("button", { type: "button", class: "secondary" }, "Log out")
        : h("button", { type: "button", class: "danger", "aria-label": `Revoke the session started ${started(s)}` }, "Revoke");
      action.addEventListener("click", () => {
        if (s.current) {
          void logOut();
          return;
        }
        void busy(action, async () => {
          try {
            await api.auth.revokeSession({ sessionId: s.id });
            await load();
            ctx.notice.show("ok", "The session was revoked.");
          } catch (err) {
            ctx.notice.show("error", describe(err, { action: "revoke this session" }).message);
          }
        });
      });
      return h(
        "tr",
        s.current ? { class: "current" } : {},
        h("td", { class: "when" }, started(s), s.current ? h("span", { class: "badge" }, "this session") : null),
        h("td", { class: "when" }, when(s.lastRefreshTime && timestampDate(s.lastRefreshTime))),
        h("td", { class: "when" }, when(s.expireTime && timestampDate(s.expireTime))),
        h("td", {}, s.ip || "–"),
        h("td", { title: s.userAgent }, browser(s.userAgent)),
        h("td", { class: "row-actions" }, action),
      );
    };

    try {
      await load();
    } catch (err) {
      ctx.notice.show("error", describe(err, { action: "list your sessions" }).message);
    }
  },
};

// Browsers by the token that tells them apart, the most specific first (Edge and Opera also
// say Chrome; Chrome also says Safari).
const browsers: [RegExp, string][] = [
  [/Edg\/(\d+)/, "Edge"],
  [/OPR\/(\d+)/, "Opera"],
  [/Firefox\/(\d+)/, "Firefox"],
  [/HeadlessChrome\/(\d+)/, "Headless Chrome"],
  [/Chrome\/(\d+)/, "Chrome"],
  [/Version\/(\d+).*Safari/, "Safari"],
];

/** browser names the browser and system of a User-Agent header: "Chrome 156 on Linux". */
function browser(ua: string): string {
  if (!ua) return "–";
  let name = ua.split(" ")[0];
  for (const [re, label] of browsers) {
    const m = re.exec(ua);
    if (m) {
      name = `${label} ${m[1]}`;
      break;
    }
  }
  const system = /Android|iPhone|iPad|Windows|Mac OS X|CrOS|Linux/.exec(ua)?.[0];
  const systems: Record<string, string> = { "Mac OS X": "macOS", CrOS: "ChromeOS" };
  return system ? `${name} on ${systems[system] ?? system}` : name;
}

function started(s: Session): string {
  return when(s.createTime && timestampDate(s.createTime));
}
