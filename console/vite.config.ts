import { defineConfig } from "vite";

// The gateway serves the built console under /console/ (console.dir in its configuration), so
// the console calls the platform on its own origin. `npm run dev` serves it on Vite's port
// instead and passes the calls on to a gateway started with `go tool task up`.
const gateway = process.env.BASALT_GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  base: "/console/",
  resolve: {
    // @basaltplatform/api is a link to gen/ts, whose imports must find this package's copy of
    // the runtime (gen/ts has no node_modules of its own in a fresh clone): one copy, one
    // registry of types.
    preserveSymlinks: true,
    dedupe: ["@bufbuild/protobuf"],
  },
  build: {
    outDir: "dist",
    assetsDir: "assets",
    target: "es2022",
    // Scripts and styles are files (never inline), so the gateway's Content-Security-Policy
    // can stay at default-src 'self'.
    assetsInlineLimit: 0,
  },
  server: {
    proxy: {
      "^/basalt\\.[a-z]+\\.v1\\.": { target: gateway, changeOrigin: false },
    },
  },
});
