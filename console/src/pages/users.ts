import { timestampDate } from "@bufbuild/protobuf/wkt";
import { UserStatus, type User } from "@basaltplatform/api/basalt/identity/v1/identity_service_pb.js";

import type { Page } from "../app.ts";
import { fail, link } from "../app.ts";
import * as api from "../api.ts";
import { busy, field, h, pager, replace, when } from "../dom.ts";

const statusNames: Record<UserStatus, string> = {
  [UserStatus.UNSPECIFIED]: "any",
  [UserStatus.ACTIVE]: "active",
  [UserStatus.DISABLED]: "disabled",
};

export const users: Page = {
  title: "Users",
  async render(main, ctx) {
    const prefix = h("input", { name: "email_prefix", type: "search", autocomplete: "off" });
    const status = h(
      "select",
      { name: "status" },
      [UserStatus.UNSPECIFIED, UserStatus.ACTIVE, UserStatus.DISABLED].map((s) => h("option", { value: s }, statusNames[s])),
    );
    const search = h("button", { type: "submit" }, "Search");
    const form = h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter users" },
      field("Email starts with", prefix),
      field("Status", status),
      h("div", { class: "actions" }, search),
    );
    const body = h("tbody");
    const table = h(
      "table",
      {},
      h("caption", {}, "Users in the order they were created."),
      h("thead", {}, h("tr", {}, ["Email", "Name", "Status", "Email verified", "Created", "User id", ""].map((c) => h("th", { scope: "col" }, c)))),
      body,
    );
    const wrap = h("div", { class: "scroll" }, table);
    const more = h("button", { type: "button", class: "secondary", hidden: true }, "Next page");

    const row = (u: User) =>
      h(
        "tr",
        {},
        h("td", {}, u.email),
        h("td", {}, u.displayName),
        h("td", {}, h("span", { class: `badge solo status-${statusNames[u.status]}` }, statusNames[u.status])),
        h("td", {}, u.emailVerified ? "yes" : "no"),
        h("td", { class: "when" }, when(u.createTime && timestampDate(u.createTime))),
        h("td", {}, h("code", {}, u.id)),
        h("td", {}, link(`/admin/roles?subject=${encodeURIComponent(u.id)}`, "Roles", { "aria-label": `Roles of ${u.email}` })),
      );

    const load = pager(
      body,
      more,
      async (pageToken) => {
        const res = await api.identity.listUsers({
          pageSize: 50,
          pageToken,
          emailPrefix: prefix.value.trim(),
          status: Number(status.value) as UserStatus,
        });
        return { items: res.users, next: res.nextPageToken };
      },
      row,
      () => h("tr", {}, h("td", { colspan: 7 }, "No users match.")),
    );
    const run = (button: HTMLButtonElement, append: boolean) =>
      busy(button, async () => {
        try {
          ctx.notice.clear();
          await load(append);
        } catch (err) {
          replace(body);
          fail(ctx, err, "list users", form, wrap, more);
        }
      });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void run(search, false);
    });
    more.addEventListener("click", () => void run(more, true));

    main.append(form, wrap, h("div", { class: "actions" }, more));
    await run(search, false);
  },
};
