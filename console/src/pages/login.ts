import type { Page } from "../app.ts";
import { link, signedIn } from "../app.ts";
import * as api from "../api.ts";
import { busy, field, h, markFields } from "../dom.ts";
import { describe } from "../errors.ts";
import * as session from "../session.ts";

export const login: Page = {
  title: "Log in",
  public: true,
  render(main, ctx) {
    const email = h("input", { name: "email", type: "email", autocomplete: "username", required: true });
    const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
    const submit = h("button", { type: "submit" }, "Log in");
    const form = h(
      "form",
      { class: "card narrow", novalidate: true },
      field("Email", email),
      field("Password", password),
      h("div", { class: "actions" }, submit),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(submit, async () => {
        try {
          const res = await api.auth.login({ email: email.value, password: password.value });
          session.save(res.tokens);
          await signedIn(ctx.query.get("next") ?? "/posts");
        } catch (err) {
          const p = describe(err, { unauthenticated: "Wrong email or password." });
          markFields(form, p.fields);
          ctx.notice.show("error", p.message);
          password.select();
        }
      });
    });
    main.append(form, h("p", { class: "aside" }, "No account yet? ", link("/signup", "Sign up"), "."));
    email.focus();
  },
};
