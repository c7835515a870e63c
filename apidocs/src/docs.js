// The reference page: Scalar's API reference over the OpenAPI document the gateway serves beside
// it. Everything comes from the gateway's own origin, which is all its Content-Security-Policy
// allows, so Scalar's web fonts, telemetry and hosted services are turned off; "Test Request"
// calls the gateway itself.
Scalar.createApiReference("#app", {
  url: "/openapi.json",
  withDefaultFonts: false,
  telemetry: false,
  agent: { disabled: true },
  mcp: { disabled: true },
  showDeveloperTools: "never",
  defaultOpenAllTags: true,
  documentDownloadType: "json",
});
