import "./style.css";

import { start } from "./app.ts";
import { audit } from "./pages/audit.ts";
import { login } from "./pages/login.ts";
import { posts } from "./pages/posts.ts";
import { roles } from "./pages/roles.ts";
import { sessions } from "./pages/sessions.ts";
import { signup } from "./pages/signup.ts";
import { users } from "./pages/users.ts";

start(document.getElementById("app")!, {
  "/login": login,
  "/signup": signup,
  "/posts": posts,
  "/sessions": sessions,
  "/admin/users": users,
  "/admin/roles": roles,
  "/admin/audit": audit,
});
