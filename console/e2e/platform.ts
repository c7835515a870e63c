// Starts the whole platform for the browser tests the way `go tool task up` does, on free ports
// and a fresh data folder, and stops it afterwards; and launches Debian's Chromium.

import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

import { chromium, type Browser } from "playwright-core";

/** root is the repository (this file runs from console/.e2e-build). */
export const root = resolve(fileURLToPath(import.meta.url), "../../..");

export interface Platform {
  /** gateway is the gateway's base URL; the console is at gateway + "/console/", the REST reference at gateway + "/docs/". */
  gateway: string;
  adminEmail: string;
  adminPassword: string;
  /** log is everything the launcher and the processes printed so far. */
  log(): string;
  /**
   * signal sends a signal to one of the platform's processes ("identity"), by the pid the
   * launcher's state file names now: SIGSTOP pauses it, as a hung service would be, and
   * SIGCONT lets it go on.
   */
  signal(name: string, signal: NodeJS.Signals): void;
  stop(): Promise<void>;
}

/**
 * startPlatform builds the launcher (or uses BASALT_UP_BIN), runs it with -ports auto and a
 * temporary data folder on the embedded default, and waits until it is ready.
 */
export async function startPlatform(): Promise<Platform> {
  if (!existsSync(join(root, "console", "dist", "index.html"))) {
    throw new Error("console/dist is not built: run go tool task console:build (or npm run --prefix console build)");
  }
  if (!existsSync(join(root, "apidocs", "dist", "index.html"))) {
    throw new Error("apidocs/dist is not built: run go tool task apidocs:build");
  }
  const dataDir = mkdtempSync(join(tmpdir(), "basalt-console-e2e-"));
  let bin = process.env.BASALT_UP_BIN ?? "";
  if (!bin) {
    bin = join(dataDir, "up");
    execFileSync("go", ["build", "-o", bin, "./devtools/cmd/up"], { cwd: root, stdio: "inherit" });
  }
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // The embedded default: SQLite files in the data folder, static discovery.
    DATABASE_URL: "",
    CONSUL_HTTP_ADDR: "",
    BASALT_GATEWAY_CONSOLE_DIR: join(root, "console", "dist"),
    BASALT_GATEWAY_DOCS_DIR: join(root, "apidocs", "dist"),
    // Audit events arrive within a fraction of a second, and a revoked session is refused by
    // every service within a second.
    BASALT_OUTBOX_INTERVAL: "200ms",
    BASALT_AUTH_SESSION_CACHE_TTL: "1s",
  };
  delete env.BASALT_ADMIN_PASSWORD;
  const child = spawn(bin, ["-ports", "auto", "-data-dir", dataDir], { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
  const lines: string[] = [];
  const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
  const ready = new Promise<void>((done, fail) => {
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream! }).on("line", (line) => {
        lines.push(line);
        if (process.env.BASALT_E2E_VERBOSE) console.log(line);
        if (line === "basalt: ready") done();
      });
    }
    void exited.then((code) => fail(new Error(`the launcher exited (${code}) before it was ready:\n${lines.join("\n")}`)));
    setTimeout(() => fail(new Error(`the launcher was not ready within 3 minutes:\n${lines.join("\n")}`)), 180_000).unref();
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill("SIGINT");
      const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dataDir, { recursive: true, force: true });
  };
  try {
    await ready;
  } catch (err) {
    await stop();
    throw err;
  }
  const processes = () =>
    (JSON.parse(readFileSync(join(dataDir, "up.json"), "utf8")) as { processes: { name: string; url: string; pid: number }[] }).processes;
  const gateway = processes().find((p) => p.name === "gateway")?.url;
  if (!gateway) {
    await stop();
    throw new Error("the launcher started no gateway");
  }
  const secrets = readFileSync(join(dataDir, "secrets.env"), "utf8");
  const adminPassword = /^BASALT_ADMIN_PASSWORD=(.*)$/m.exec(secrets)?.[1] ?? "";
  const signal = (name: string, sig: NodeJS.Signals) => {
    const pid = processes().find((p) => p.name === name)?.pid;
    if (!pid) throw new Error(`the launcher runs no ${name}`);
    process.kill(pid, sig);
  };
  return { gateway, adminEmail: "admin@basalt.local", adminPassword, log: () => lines.join("\n"), signal, stop };
}

/** chromiumPath is Debian's Chromium (apt-get install chromium), or BASALT_CHROMIUM. */
export const chromiumPath = process.env.BASALT_CHROMIUM ?? "/usr/bin/chromium";

export function launchChromium(): Promise<Browser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(`no Chromium at ${chromiumPath}: apt-get install -y --no-install-recommends chromium`);
  }
  return chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
}

