import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { Outcome, type Event, type EventFilterSchema } from "@basaltplatform/api/basalt/audit/v1/audit_service_pb.js";

import type { Page } from "../app.ts";
import { fail } from "../app.ts";
import * as api from "../api.ts";
import { busy, field, h, pager, replace, when } from "../dom.ts";

const outcomeNames: Record<Outcome, string> = {
  [Outcome.UNSPECIFIED]: "any",
  [Outcome.SUCCESS]: "success",
  [Outcome.FAILURE]: "failure",
  [Outcome.DENIED]: "denied",
};

// The text filters, named as EventFilter's fields; the URL's query carries them too, so a
// filtered view can be reloaded or linked to.
const textFilters = [
  ["actor_subject", "Actor (subject)"],
  ["action", "Action"],
  ["resource_type", "Resource type"],
  ["resource_id", "Resource id"],
  ["service", "Service"],
] as const;

export const audit: Page = {
  title: "Audit log",
  async render(main, ctx) {
    const inputs = new Map<string, HTMLInputElement>();
    const fields = textFilters.map(([name, label]) => {
      const input = h("input", { name, type: "search", autocomplete: "off" });
      input.value = ctx.query.get(name) ?? "";
      inputs.set(name, input);
      return field(label, input);
    });
    const outcome = h(
      "select",
      { name: "outcome" },
      [Outcome.UNSPECIFIED, Outcome.SUCCESS, Outcome.FAILURE, Outcome.DENIED].map((o) => h("option", { value: o }, outcomeNames[o])),
    );
    outcome.value = ctx.query.get("outcome") ?? String(Outcome.UNSPECIFIED);
    const from = h("input", { name: "start_time", type: "datetime-local", step: 1 });
    const to = h("input", { name: "end_time", type: "datetime-local", step: 1 });
    from.value = ctx.query.get("start_time") ?? "";
    to.value = ctx.query.get("end_time") ?? "";
    const search = h("button", { type: "submit" }, "Search");
    const form = h(
      "form",
      { class: "filters", role: "search", "aria-label": "Filter events" },
      fields,
      field("Outcome", outcome),
      field("From (local time)", from),
      field("Until (local time)", to),
      h("div", { class: "actions" }, search),
    );

    const verify = h("button", { type: "button" }, "Verify log");
    const verdict = h("p", { class: "verdict", role: "status", "aria-live": "polite" });
    const verifyBar = h("div", { class: "card verify" }, h("div", {}, h("h2", {}, "Integrity"), h("p", { class: "hint" }, "Recomputes the hash chain of every event and checks the signed checkpoints.")), verify, verdict);
    verify.addEventListener("click", () => {
      void busy(verify, async () => {
        try {
          const res = await api.audit.verifyLog({});
          verdict.className = `verdict ${res.ok ? "ok" : "bad"}`;
          verdict.textContent = res.ok
            ? `Verified: the chain is intact (ok). ${res.eventsChecked} events and ${res.checkpointsChecked} checkpoints checked.`
            : `Verification failed at sequence ${res.firstBadSequence}: ${res.problem} (${res.eventsChecked} events checked).`;
        } catch (err) {
          fail(ctx, err, "verify the audit log", verifyBar);
        }
      });
    });

    const body = h("tbody");
    const wrap = h(
      "div",
      { class: "scroll" },
      h(
        "table",
        { class: "events" },
        h("caption", {}, "Events newest first."),
        h("thead", {}, h("tr", {}, ["#", "Time", "Service", "Action", "Outcome", "Actor", "Resource", "Details"].map((c) => h("th", { scope: "col" }, c)))),
        body,
      ),
    );
    const more = h("button", { type: "button", class: "secondary", hidden: true }, "Older events");

    const text = (name: (typeof textFilters)[number][0]) => inputs.get(name)!.value.trim();
    const time = (input: HTMLInputElement) => {
      const d = input.value ? new Date(input.value) : undefined;
      return d && !isNaN(d.getTime()) ? timestampFromDate(d) : undefined;
    };
    const filter = (): MessageInitShape<typeof EventFilterSchema> => ({
      actorSubject: text("actor_subject"),
      action: text("action"),
      resourceType: text("resource_type"),
      resourceId: text("resource_id"),
      service: text("service"),
      outcome: Number(outcome.value) as Outcome,
      startTime: time(from),
      endTime: time(to),
    });
    const load = pager(
      body,
      more,
      async (pageToken) => {
        const res = await api.audit.listEvents({ filter: filter(), pageSize: 50, pageToken });
        return { items: res.events, next: res.nextPageToken };
      },
      row,
      () => h("tr", {}, h("td", { colspan: 8 }, "No events match.")),
    );
    const run = (button: HTMLButtonElement, append: boolean) =>
      busy(button, async () => {
        try {
          ctx.notice.clear();
          await load(append);
        } catch (err) {
          replace(body);
          fail(ctx, err, "read the audit log", form, wrap, more, verifyBar);
        }
      });
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      // The filters go into the URL, so the view can be reloaded or shared.
      const q = new URLSearchParams();
      for (const [name, input] of inputs) if (input.value.trim()) q.set(name, input.value.trim());
      if (outcome.value !== String(Outcome.UNSPECIFIED)) q.set("outcome", outcome.value);
      if (from.value) q.set("start_time", from.value);
      if (to.value) q.set("end_time", to.value);
      history.replaceState(null, "", location.pathname + (q.size > 0 ? `?${q}` : ""));
      void run(search, false);
    });
    more.addEventListener("click", () => void run(more, true));

    main.append(verifyBar, form, wrap, h("div", { class: "actions" }, more));
    await run(search, false);
  },
};

function row(e: Event): HTMLTableRowElement {
  const details = Object.entries(e.metadata)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`);
  return h(
    "tr",
    {},
    h("td", { class: "num" }, String(e.sequence)),
    h("td", { class: "when" }, when(e.time && timestampDate(e.time))),
    h("td", {}, e.service),
    h("td", {}, h("code", { class: "action" }, e.action)),
    h("td", {}, h("span", { class: `badge solo outcome-${outcomeNames[e.outcome]}` }, outcomeNames[e.outcome])),
    h("td", {}, e.actor?.subject ? h("code", { title: e.actor.ip ? `from ${e.actor.ip}` : "" }, e.actor.subject) : "anonymous"),
    h("td", {}, e.resource?.type ? `${e.resource.type} ${e.resource.id}` : "–"),
    h(
      "td",
      { class: "details" },
      details.map((d) => h("div", {}, d)),
      e.requestId ? h("div", { title: `request id ${e.requestId}` }, `request ${e.requestId.slice(0, 12)}…`) : null,
    ),
  );
}
