import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { Post } from "@basaltplatform/api/basalt/blog/v1/blog_service_pb.js";

import type { Context, Page } from "../app.ts";
import * as api from "../api.ts";
import { busy, field, h, markFields, pager, replace, when } from "../dom.ts";
import { describe } from "../errors.ts";

export const posts: Page = {
  title: "Posts",
  async render(main, ctx) {
    const list = h("div", { class: "posts" });
    const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older posts");
    const unnamed = h("p", { class: "aside", role: "status", hidden: true });

    const load = pager(
      list,
      more,
      async (pageToken) => {
        const res = await api.blog.listPosts({ pageSize: 20, pageToken });
        const names = authors(res.posts);
        void names.then((n) => {
          if (n.failed) unnamed.textContent = "The authors' names cannot be loaded right now; their user ids are shown instead.";
          unnamed.hidden = !n.failed;
        });
        return { items: res.posts.map((post) => ({ post, names })), next: res.nextPageToken };
      },
      ({ post, names }) => article(post, names, ctx, () => void reload()),
      () => h("p", { class: "empty" }, "No posts yet. Write the first one."),
    );
    const reload = async () => {
      try {
        await load(false);
      } catch (err) {
        ctx.notice.show("error", describe(err, { action: "list posts" }).message);
      }
    };
    more.addEventListener("click", () => {
      void busy(more, async () => {
        try {
          await load(true);
        } catch (err) {
          ctx.notice.show("error", describe(err, { action: "list posts" }).message);
        }
      });
    });

    const title = h("input", { name: "title", required: true, maxlength: 200 });
    const body = h("textarea", { name: "body", rows: 4 });
    const publish = h("button", { type: "submit" }, "Publish");
    const form = h(
      "form",
      { class: "card", "aria-labelledby": "new-post" },
      h("h2", { id: "new-post" }, "New post"),
      field("Title", title),
      field("Text", body),
      h("div", { class: "actions" }, publish),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(publish, async () => {
        try {
          const res = await api.blog.createPost({ title: title.value, body: body.value });
          markFields(form, new Map());
          form.reset();
          ctx.notice.show("ok", `Published “${res.post?.title ?? ""}”.`);
          await reload();
        } catch (err) {
          const p = describe(err, { action: "write posts" });
          markFields(form, p.fields);
          ctx.notice.show("error", p.message);
        }
      });
    });

    main.append(form, h("section", { "aria-label": "Posts, newest first" }, unnamed, list, h("div", { class: "actions" }, more)));
    await reload();
  },
};

/** Names are the display names of a page's authors by user id, or the lookup failed. */
interface Names {
  byId: Map<string, string>;
  failed: boolean;
}

/** lookupTimeoutMs bounds the wait for names; the posts are shown meanwhile. */
const lookupTimeoutMs = 5_000;

/**
 * authors asks identity for the display names of the posts' authors. Posts carry only their
 * author's id, so that reading them never depends on identity: the page shows the posts at once
 * and the names when they come. When identity cannot answer, the names are left out (failed);
 * an author identity does not know (a deleted user) is simply absent.
 */
async function authors(posts: Post[]): Promise<Names> {
  const ids = [...new Set(posts.map((p) => p.authorId))];
  if (ids.length === 0) return { byId: new Map(), failed: false };
  try {
    const res = await api.identity.lookupProfiles({ userIds: ids }, { timeoutMs: lookupTimeoutMs });
    return { byId: new Map(res.profiles.map((p) => [p.userId, p.displayName])), failed: false };
  } catch {
    return { byId: new Map(), failed: true };
  }
}

/** byline fills el with the author's name once names has it, or says why there is none. */
function byline(el: HTMLElement, p: Post, names: Promise<Names>, ctx: Context): void {
  const mine = p.authorId === ctx.me.id;
  replace(el, h("span", { class: "sr-only" }, "an author whose name is loading"), h("span", { "aria-hidden": "true" }, "…"));
  void names.then((n) => {
    const name = n.byId.get(p.authorId) ?? (mine ? ctx.me.displayName : undefined);
    if (name !== undefined) {
      replace(el, h("span", { class: "author" }, name), mine ? " (you)" : "");
    } else if (n.failed) {
      replace(el, h("span", { class: "author", title: p.authorId }, `user ${p.authorId.slice(-8)}`));
    } else {
      replace(el, h("span", { class: "author" }, "a deleted user"));
    }
  });
}

function article(p: Post, names: Promise<Names>, ctx: Context, changed: () => void): HTMLElement {
  const el = h("article", { class: "post card" });
  const mine = p.authorId === ctx.me.id;
  const editable = mine || ctx.can("blog.posts.manage");

  const view = () => {
    const created = p.createTime && timestampDate(p.createTime);
    const updated = p.updateTime && timestampDate(p.updateTime);
    const edited = created && updated && updated.getTime() - created.getTime() > 1000;
    const actions = h("div", { class: "actions" });
    if (editable) {
      const edit = h("button", { type: "button", class: "secondary" }, "Edit");
      edit.addEventListener("click", editForm);
      const del = h("button", { type: "button", class: "danger" }, "Delete");
      del.addEventListener("click", () => confirmDelete(actions));
      replace(actions, edit, del);
    }
    const author = h("span", {});
    byline(author, p, names, ctx);
    replace(
      el,
      h("h2", {}, p.title),
      h(
        "p",
        { class: "meta" },
        "by ",
        author,
        " · ",
        h("time", { datetime: created?.toISOString() ?? "" }, when(created)),
        edited ? ` · edited ${when(updated)}` : "",
      ),
      p.body ? h("p", { class: "body" }, p.body) : null,
      actions,
    );
  };

  const confirmDelete = (actions: HTMLElement) => {
    const yes = h("button", { type: "button", class: "danger" }, "Yes, delete");
    const no = h("button", { type: "button", class: "secondary" }, "Keep it");
    no.addEventListener("click", view);
    yes.addEventListener("click", () => {
      void busy(yes, async () => {
        try {
          await api.blog.deletePost({ postId: p.postId });
          ctx.notice.show("ok", `Deleted “${p.title}”.`);
          changed();
        } catch (err) {
          ctx.notice.show("error", describe(err, { action: "delete this post" }).message);
        }
      });
    });
    replace(actions, h("span", { class: "confirm" }, "Delete this post?"), yes, no);
    yes.focus();
  };

  const editForm = () => {
    const title = h("input", { name: "title", required: true, maxlength: 200, value: p.title });
    const body = h("textarea", { name: "body", rows: 6 });
    body.value = p.body;
    const save = h("button", { type: "submit" }, "Save");
    const cancel = h("button", { type: "button", class: "secondary" }, "Cancel");
    cancel.addEventListener("click", view);
    const form = h(
      "form",
      { "aria-label": `Edit “${p.title}”` },
      field("Title", title),
      field("Text", body),
      h("div", { class: "actions" }, save, cancel),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(save, async () => {
        try {
          const res = await api.blog.updatePost({
            post: { postId: p.postId, title: title.value, body: body.value },
            updateMask: { paths: ["title", "body"] },
          });
          if (res.post) p = res.post;
          ctx.notice.show("ok", `Saved “${p.title}”.`);
          view();
        } catch (err) {
          const problem = describe(err, { action: "change this post" });
          markFields(form, problem.fields);
          ctx.notice.show("error", problem.message);
        }
      });
    });
    replace(el, form);
    title.focus();
  };

  view();
  return el;
}
