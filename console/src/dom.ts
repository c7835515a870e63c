// A few helpers to build the DOM without a framework. Text is always set as text, never parsed
// as HTML, so nothing a user or the API sends can inject markup.

type Child = Node | string | number | null | undefined | false;
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>;

/** h creates an element with attributes (on* names add listeners) and children. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Attrs = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (typeof value === "function") {
      el.addEventListener(name.slice(2).toLowerCase(), value);
    } else if (value === true) {
      el.setAttribute(name, "");
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c);
  }
}

/** replace swaps an element's children. */
export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren();
  append(el, children);
}

/** A page of a listing: its items and the token of the next page ("" after the last). */
export interface ListPage<T> {
  items: T[];
  next: string;
}

/**
 * pager keeps a listing's next-page token so its pages need not: the function it returns fills
 * list with the first page (or with empty() when nothing matches) or, given true, appends the
 * next page, and shows more only while another page follows.
 */
export function pager<T>(
  list: Element,
  more: HTMLElement,
  fetch: (pageToken: string) => Promise<ListPage<T>>,
  render: (item: T) => Node,
  empty: () => Node,
): (append: boolean) => Promise<void> {
  let next = "";
  return async (append) => {
    const page = await fetch(append ? next : "");
    const nodes = page.items.map(render);
    if (append) list.append(...nodes);
    else replace(list, nodes.length > 0 ? nodes : empty());
    next = page.next;
    more.hidden = next === "";
  };
}

let fieldIds = 0;

/** field is a labelled input (or select or textarea) with a slot for its error message. */
export function field(
  label: string,
  control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
  hint?: string,
): HTMLDivElement {
  const id = control.id || `f${++fieldIds}`;
  control.id = id;
  const error = h("p", { class: "field-error", id: `${id}-error`, hidden: true });
  const described = [hint ? `${id}-hint` : "", `${id}-error`].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", described);
  return h(
    "div",
    { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null,
    error,
  );
}

/** markFields shows each message next to the form control named after its field. */
export function markFields(form: HTMLFormElement, fields: Map<string, string>): void {
  for (const el of form.querySelectorAll<HTMLElement>("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll<HTMLElement>(".field-error")) {
    el.hidden = true;
    el.textContent = "";
  }
  for (const [name, message] of fields) {
    // A violation names the request's field ("post.title"); the form's control is "title".
    const control = form.elements.namedItem(name) ?? form.elements.namedItem(name.split(".").pop() ?? name);
    if (!(control instanceof HTMLElement)) continue;
    control.setAttribute("aria-invalid", "true");
    const error = document.getElementById(`${control.id}-error`);
    if (error) {
      error.textContent = message;
      error.hidden = false;
    }
  }
}

/** Notice is a message area announced to assistive technology when it changes. */
export class Notice {
  readonly el = h("div", { class: "notice", role: "status", "aria-live": "polite", hidden: true });

  show(kind: "error" | "ok" | "info", message: string): void {
    this.el.className = `notice notice-${kind}`;
    this.el.setAttribute("role", kind === "error" ? "alert" : "status");
    this.el.textContent = message;
    this.el.hidden = false;
  }

  clear(): void {
    this.el.hidden = true;
    this.el.textContent = "";
  }
}

/** busy disables a button while work runs, so a double click sends one request. */
export async function busy<T>(button: HTMLButtonElement, work: () => Promise<T>): Promise<T> {
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

const dateTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/** when formats a time for people, or a dash when there is none. */
export function when(d: Date | undefined): string {
  return d ? dateTime.format(d) : "–";
}
