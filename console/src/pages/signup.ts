import type { Page } from "../app.ts";
import { link, signedIn } from "../app.ts";
import * as api from "../api.ts";
import { busy, field, h, markFields } from "../dom.ts";
import { describe } from "../errors.ts";
import * as session from "../session.ts";

export const signup: Page = {
  title: "Sign up",
  public: true,
  render(main, ctx) {
    const name = h("input", { name: "display_name", autocomplete: "name", required: true, maxlength: 100 });
    const email = h("input", { name: "email", type: "email", autocomplete: "email", required: true });
    const password = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: 8 });
    const submit = h("button", { type: "submit" }, "Create account");
    const form = h(
      "form",
      { class: "card narrow", novalidate: true },
      field("Name", name, "How others see you, 1 to 100 characters."),
      field("Email", email),
      field("Password", password, "At least 8 characters, and not a common password."),
      h("div", { class: "actions" }, submit),
    );
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      void busy(submit, async () => {
        try {
          const res = await api.auth.register({ email: email.value, password: password.value, displayName: name.value });
          session.save(res.tokens);
          await signedIn("/posts");
        } catch (err) {
          const p = describe(err, { action: "sign up" });
          markFields(form, p.fields);
          ctx.notice.show("error", p.message);
        }
      });
    });
    main.append(form, h("p", { class: "aside" }, "Already have an account? ", link("/login", "Log in"), "."));
    name.focus();
  },
};
