// Builds the reference page into dist/, the folder the gateway serves under /docs/ (docs.dir):
// the page and its start-up script from src/, and the standalone bundle and stylesheet of the
// @scalar/api-reference that package-lock.json pins. Nothing is bundled or fetched: the page
// loads these four files from the gateway and the document from /openapi.json.
import { copyFileSync, cpSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const scalar = join(here, "node_modules", "@scalar", "api-reference", "dist");
const out = join(here, "dist");

rmSync(out, { recursive: true, force: true });
mkdirSync(out);
cpSync(join(here, "src"), out, { recursive: true });
// The stylesheet comes as a file: the bundle also injects it as inline style, which the
// gateway's Content-Security-Policy refuses.
copyFileSync(join(scalar, "style.css"), join(out, "scalar.css"));
copyFileSync(join(scalar, "browser", "standalone.js"), join(out, "scalar.js"));
