import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Role, RoleBinding } from "@basaltplatform/api/basalt/authz/v1/authz_service_pb.js";

import type { Context, Page } from "../app.ts";
import { fail } from "../app.ts";
import * as api from "../api.ts";
import { busy, field, h, markFields, replace, when } from "../dom.ts";
import { describe } from "../errors.ts";

const action = "manage roles";

/** permissionsOf reads permissions typed one a line, or separated by commas or spaces. */
function permissionsOf(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((p) => p.trim())
    .filter((p) => p !== "");
}

export const roles: Page = {
  title: "Roles",
  async render(main, ctx) {
    const rolesSection = h("section", { "aria-labelledby": "roles-h" });
    const bindingsSection = h("section", { "aria-labelledby": "bindings-h" });
    main.append(rolesSection, bindingsSection);
    const sections = [rolesSection, bindingsSection];

    // Roles: a table, and one form that creates a role or edits the one chosen.
    const roleBody = h("tbody");
    const roleOptions = h("datalist", { id: "role-names" });
    const name = h("input", { name: "name", required: true, maxlength: 63, pattern: "[a-z][a-z0-9-]*", autocomplete: "off" });
    const description = h("input", { name: "description", maxlength: 500 });
    const perms = h("textarea", { name: "permissions", rows: 3, spellcheck: false });
    const save = h("button", { type: "submit" }, "Create role");
    const cancel = h("button", { type: "button", class: "secondary", hidden: true }, "Cancel");
    const formTitle = h("h3", { id: "role-form-h" }, "New role");
    const roleForm = h(
      "form",
      { class: "card", "aria-labelledby": "role-form-h" },
      formTitle,
      field("Name", name, "Lower case letters, digits and dashes: blog-editor."),
      field("Description", description),
      field("Permissions", perms, "One a line: blog.posts.create, blog.*, or * for everything."),
      h("div", { class: "actions" }, save, cancel),
    );
    let editing: Role | undefined;
    const editRole = (r: Role | undefined) => {
      editing = r;
      markFields(roleForm, new Map());
      name.value = r?.name ?? "";
      name.readOnly = r !== undefined;
      description.value = r?.description ?? "";
      perms.value = r?.permissions.join("\n") ?? "";
      formTitle.textContent = r ? `Edit role ${r.name}` : "New role";
      save.textContent = r ? "Save role" : "Create role";
      cancel.hidden = r === undefined;
      if (r) description.focus();
    };
    cancel.addEventListener("click", () => editRole(undefined));

    const loadRoles = async () => {
      const all: Role[] = [];
      let token = "";
      do {
        const res = await api.authz.listRoles({ pageSize: 100, pageToken: token });
        all.push(...res.roles);
        token = res.nextPageToken;
      } while (token !== "");
      replace(roleBody, all.map(roleRow));
      replace(roleOptions, all.map((r) => h("option", { value: r.name })));
    };
    const roleRow = (r: Role) => {
      const edit = h("button", { type: "button", class: "secondary", "aria-label": `Edit role ${r.name}` }, "Edit");
      edit.addEventListener("click", () => editRole(r));
      const del = h("button", { type: "button", class: "danger", "aria-label": `Delete role ${r.name}` }, "Delete");
      del.addEventListener("click", () => {
        void busy(del, async () => {
          try {
            await api.authz.deleteRole({ name: r.name });
            ctx.notice.show("ok", `Deleted role ${r.name}.`);
            if (editing?.name === r.name) editRole(undefined);
            await loadRoles();
          } catch (err) {
            fail(ctx, err, action);
          }
        });
      });
      return h(
        "tr",
        {},
        h("th", { scope: "row" }, r.name, r.builtin ? h("span", { class: "badge" }, "built in") : null),
        h("td", {}, r.description),
        h("td", {}, h("ul", { class: "perms" }, r.permissions.map((p) => h("li", {}, h("code", {}, p))))),
        h("td", { class: "when" }, when(r.updateTime && timestampDate(r.updateTime))),
        h("td", { class: "row-actions" }, edit, r.builtin ? null : del),
      );
    };
    roleForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(save, async () => {
        try {
          const role = { name: name.value.trim(), description: description.value.trim(), permissions: permissionsOf(perms.value) };
          if (editing) {
            await api.authz.updateRole({ role, updateMask: { paths: ["description", "permissions"] } });
            ctx.notice.show("ok", `Saved role ${role.name}.`);
          } else {
            await api.authz.createRole({ role });
            ctx.notice.show("ok", `Created role ${role.name}.`);
          }
          editRole(undefined);
          await loadRoles();
        } catch (err) {
          markFields(roleForm, describe(err).fields);
          fail(ctx, err, action);
        }
      });
    });
    replace(
      rolesSection,
      h("h2", { id: "roles-h" }, "Roles and their permissions"),
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          {},
          h("caption", {}, "Roles by name, with the permissions they grant."),
          h("thead", {}, h("tr", {}, ["Name", "Description", "Permissions", "Changed", ""].map((c) => h("th", { scope: "col" }, c)))),
          roleBody,
        ),
      ),
      roleForm,
      roleOptions,
    );

    // Bindings: who holds which role, filtered by subject or role; assign and revoke.
    const bindings = new Bindings(ctx, bindingsSection);
    try {
      await loadRoles();
      await bindings.load();
    } catch (err) {
      fail(ctx, err, action, ...sections);
    }
  },
};

class Bindings {
  private readonly body = h("tbody");
  private readonly subject = h("input", { name: "subject", type: "search", autocomplete: "off" });
  private readonly role = h("input", { name: "role", type: "search", list: "role-names", autocomplete: "off" });
  private readonly more = h("button", { type: "button", class: "secondary", hidden: true }, "More bindings");
  private next = "";

  constructor(
    private readonly ctx: Context,
    section: HTMLElement,
  ) {
    this.subject.value = ctx.query.get("subject") ?? "";
    const filter = h("button", { type: "submit" }, "Show bindings");
    const filters = h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter role bindings" },
      field("Subject (user id)", this.subject),
      field("Role", this.role),
      h("div", { class: "actions" }, filter),
    );
    filters.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(filter, () => this.run(false));
    });
    this.more.addEventListener("click", () => void busy(this.more, () => this.run(true)));

    const aSubject = h("input", { name: "subject", required: true, autocomplete: "off" });
    aSubject.value = this.subject.value;
    const aRole = h("input", { name: "role", required: true, list: "role-names", autocomplete: "off" });
    const aResource = h("input", { name: "resource", autocomplete: "off" });
    const assign = h("button", { type: "submit" }, "Assign role");
    const assignForm = h(
      "form",
      { class: "card", "aria-labelledby": "assign-h" },
      h("h3", { id: "assign-h" }, "Assign a role"),
      field("Subject", aSubject, "A user id (from the Users page), or service:<name>."),
      field("Role", aRole),
      field("Resource", aResource, "Empty for everywhere, or one resource: blog/post/<id>."),
      h("div", { class: "actions" }, assign),
    );
    assignForm.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(assign, async () => {
        try {
          const res = await api.authz.assignRole({ subject: aSubject.value.trim(), role: aRole.value.trim(), resource: aResource.value.trim() });
          markFields(assignForm, new Map());
          ctx.notice.show("ok", `Assigned role ${res.binding?.role ?? aRole.value} to ${res.binding?.subject ?? aSubject.value}.`);
          await this.load();
        } catch (err) {
          markFields(assignForm, describe(err).fields);
          fail(ctx, err, action);
        }
      });
    });

    replace(
      section,
      h("h2", { id: "bindings-h" }, "Role bindings"),
      filters,
      h(
        "div",
        { class: "scroll" },
        h(
          "table",
          {},
          h("caption", {}, "Who holds which role, and where."),
          h("thead", {}, h("tr", {}, ["Subject", "Role", "Resource", "Since", ""].map((c) => h("th", { scope: "col" }, c)))),
          this.body,
        ),
      ),
      h("div", { class: "actions" }, this.more),
      assignForm,
    );
  }

  async load(append = false): Promise<void> {
    const res = await api.authz.listRoleBindings({
      subject: this.subject.value.trim(),
      role: this.role.value.trim(),
      pageSize: 50,
      pageToken: append ? this.next : "",
    });
    const rows = res.bindings.map((b) => this.row(b));
    if (append) this.body.append(...rows);
    else replace(this.body, rows.length > 0 ? rows : h("tr", {}, h("td", { colspan: 5 }, "No bindings match.")));
    this.next = res.nextPageToken;
    this.more.hidden = this.next === "";
  }

  private async run(append: boolean): Promise<void> {
    try {
      await this.load(append);
    } catch (err) {
      fail(this.ctx, err, action);
    }
  }

  private row(b: RoleBinding): HTMLTableRowElement {
    const revoke = h("button", { type: "button", class: "danger", "aria-label": `Revoke ${b.role} from ${b.subject}` }, "Revoke");
    revoke.addEventListener("click", () => {
      void busy(revoke, async () => {
        try {
          await api.authz.revokeRole({ subject: b.subject, role: b.role, resource: b.resource });
          this.ctx.notice.show("ok", `Revoked role ${b.role} from ${b.subject}.`);
          await this.load();
        } catch (err) {
          fail(this.ctx, err, action);
        }
      });
    });
    return h(
      "tr",
      {},
      h("td", {}, h("code", {}, b.subject)),
      h("td", {}, b.role),
      h("td", {}, b.resource || "everywhere"),
      h("td", { class: "when" }, when(b.createTime && timestampDate(b.createTime))),
      h("td", { class: "row-actions" }, revoke),
    );
  }
}
