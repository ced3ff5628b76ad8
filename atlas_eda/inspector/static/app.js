// The atlas_eda inspector's page: hash routes (#/timeline, #/state, #/document, #/diff,
// #/cause, #/sagas, #/saga, #/projections) drawn from the read-only JSON views at /api/<view>. Every stored value is put
// on the page as text (textContent, text nodes): never as HTML.
"use strict";

const POLL_MS = 1500;
let last = 0; // the store's last position, as last polled
let route = { view: "timeline", params: new URLSearchParams() };

// -- building the page from values, as text only ---------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== null && value !== undefined) node.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function link(text, view, params, attrs) {
  const query = new URLSearchParams(params).toString();
  return el("a", { href: `#/${view}${query ? "?" + query : ""}`, ...(attrs || {}) }, text);
}

function shown(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function table(headers, rows, attrs) {
  return el("table", attrs || {},
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function shortId(id) { return id ? id.slice(0, 8) : ""; }

function causeText(cause) { return cause ? cause.describe : "no bus event"; }

function changesText(changes) {
  return Object.entries(changes).map(([k, v]) => `${k}=${shown(v)}`).join(", ");
}

async function fetchView(name, params) {
  const answer = await fetch(`api/${name}?${new URLSearchParams(params || {})}`);
  const data = await answer.json();
  if (!answer.ok) throw new Error(data.error || `${answer.status} ${answer.statusText}`);
  return data;
}

function show(...nodes) {
  const view = document.getElementById("view");
  view.replaceChildren(...nodes);
}

// -- the scrubber ---------------------------------------------------------------------

function currentPosition() {
  const given = route.params.get("position");
  return given === null ? last : Number(given);
}

function setScrubber(position) {
  const scrubber = document.getElementById("scrubber");
  scrubber.max = String(last);
  scrubber.value = String(position);
  document.getElementById("position").max = String(last);
  document.getElementById("position").value = String(position);
  document.getElementById("of").textContent = `of ${last}`;
}

// Views that show the store as of one position: the scrubber moves them, not to the state.
const AT_POSITION = new Set(["state", "sagas", "saga", "projections"]);

function goTo(position) {
  const bounded = Math.max(0, Math.min(last, Math.trunc(Number(position)) || 0));
  if (AT_POSITION.has(route.view)) {
    const params = new URLSearchParams(route.params);
    params.delete("offset");
    params.set("position", String(bounded));
    location.hash = `#/${route.view}?${params}`;
    return;
  }
  const view = route.view === "diff" ? "diff" : "state";
  const params = view === "diff" ? { a: Math.max(bounded - 1, 0), b: bounded } : { position: bounded };
  location.hash = `#/${view}?${new URLSearchParams(params)}`;
}

// -- the views ------------------------------------------------------------------------

function eventRow(e, selected) {
  return el("tr", { class: selected ? "selected" : null, "data-position": e.position },
    el("td", {}, link(String(e.position), "cause", { position: e.position }, { class: "cause-link" })),
    el("td", {}, e.time),
    el("td", {}, link(shortId(e.document_id), e.kind === "saga" ? "saga" : "document", { id: e.document_id },
      { title: e.document_id })),
    el("td", {}, `v${e.version}`),
    el("td", { class: `kind-${e.kind}` }, e.kind),
    el("td", { class: "value" }, changesText(e.changes)),
    el("td", {}, causeText(e.cause)),
    el("td", {},
      link("state", "state", { position: e.position }, { class: "state-link" }), " ",
      link("diff", "diff", { a: e.position - 1, b: e.position }, { class: "diff-link" })));
}

const EVENT_HEADERS = ["#", "time (UTC)", "document", "version", "kind", "changes", "cause", ""];

async function timelineView(params) {
  const data = await fetchView("events", params);
  const form = el("form", { class: "filters", id: "filters" });
  const field = (name, label, attrs) => el("label", {}, label,
    el("input", { name, value: params.get(name) || "", ...(attrs || {}) }));
  const kind = el("select", { name: "kind" }, ...["", "created", "updated", "deleted"].map(
    (k) => el("option", { value: k, ...(params.get("kind") === k ? { selected: "" } : {}) }, k || "any")));
  form.append(field("document", "document id"), el("label", {}, "kind", kind),
    field("from", "from (UTC, ISO)", { placeholder: "2024-05-01T12:00" }),
    field("to", "to (UTC, ISO)"), field("text", "text"),
    el("button", { type: "submit" }, "Filter"), link("clear", "timeline", {}));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const chosen = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) chosen.set(k, String(v));
    location.hash = `#/timeline?${chosen}`;
  });
  const pager = el("div", { class: "pager" });
  const base = Object.fromEntries(params);
  const limit = Number(params.get("limit") || 50);
  if (data.since > 1) pager.append(link("« first", "timeline", { ...base, since: 1 }, { id: "first-page" }),
    link("‹ earlier", "timeline", { ...base, since: Math.max(data.since - limit, 1) }, { id: "earlier-page" }));
  if (data.next !== null) pager.append(link("later ›", "timeline", { ...base, since: data.next }, { id: "next-page" }));
  const position = currentPosition();
  const rows = data.events.map((e) => eventRow(e, e.position === position));
  const summary = data.events.length
    ? `Positions ${data.events[0].position} to ${data.events[data.events.length - 1].position} of ${data.last_position}`
    : `No events here (the log has ${data.last_position}).`;
  show(el("h2", {}, "Timeline"), form, el("p", { class: "muted", id: "timeline-summary" }, summary),
    table(EVENT_HEADERS, rows, { id: "events" }), pager);
  route.atEnd = data.next === null && !params.has("since");
}

function stateTable(documents, id) {
  return table(["document", "version", "title", "content", "author", "last editor", "modified (UTC)", "deleted"],
    documents.map((d) => el("tr", { "data-document": d.document_id },
      el("td", {}, link(shortId(d.document_id), "document", { id: d.document_id }, { title: d.document_id })),
      el("td", {}, `v${d.version}`), el("td", { class: "value" }, shown(d.title)),
      el("td", { class: "value" }, shown(d.content)), el("td", {}, shown(d.author)),
      el("td", {}, shown(d.last_editor)), el("td", {}, d.modified_at),
      el("td", {}, d.is_deleted ? `yes: ${shown(d.deletion_reason)}` : ""))), { id });
}

async function stateView(params) {
  const data = await fetchView("state", params);
  setScrubber(data.position);
  const at = data.event
    ? el("p", { id: "state-event" }, `Right after #${data.event.position}: ${data.event.kind} `,
      link(shortId(data.event.document_id), "document", { id: data.event.document_id }),
      ` v${data.event.version} at ${data.event.time} UTC, caused by ${causeText(data.event.cause)} (`,
      link("cause chain", "cause", { position: data.event.position }), ", ",
      link("diff", "diff", { a: data.position - 1, b: data.position }), ")")
    : el("p", { id: "state-event" }, "Position 0: before the first event, the store is empty.");
  const more = data.count > data.offset + data.documents.length
    ? link(`next ${data.documents.length} documents`, "state",
      { position: data.position, offset: data.offset + data.documents.length })
    : null;
  show(el("h2", { id: "state-title" }, `The store at position ${data.position}`), at,
    el("p", { class: "muted" }, `${data.count} documents (deleted ones included).`),
    stateTable(data.documents, "state"), more);
}

async function documentView(params) {
  const data = await fetchView("document", params);
  const rows = data.versions.map((v) => el("tr", {},
    el("td", {}, `v${v.version}`),
    el("td", {}, link(String(v.position), "state", { position: v.position })),
    el("td", {}, v.time), el("td", { class: `kind-${v.kind}` }, v.kind),
    el("td", { class: "value" }, changesText(v.changes)),
    el("td", {}, link(causeText(v.cause), "cause", { position: v.position }))));
  show(el("h2", {}, "Document ", el("code", {}, data.document_id)),
    el("p", { class: "muted" }, `${data.versions.length} versions, oldest first.`),
    table(["version", "position", "time (UTC)", "kind", "what it set", "cause"], rows, { id: "versions" }));
}

function sideBySide(change, a, b) {
  const names = Object.keys(change.after);
  const changed = new Set(change.fields);
  const rows = names.map((name) => el("tr", { class: changed.has(name) ? "changed" : null, "data-field": name },
    el("td", {}, name), el("td", { class: "value before" }, shown(change.before[name])),
    el("td", { class: "value after" }, shown(change.after[name]))));
  return el("div", { class: "changed-document" },
    el("h4", {}, link(change.document_id, "document", { id: change.document_id })),
    table(["field", `before (#${a})`, `after (#${b})`], rows));
}

async function diffView(params) {
  const data = await fetchView("diff", params);
  setScrubber(data.b);
  const form = el("form", { class: "filters", id: "diff-form" },
    el("label", {}, "from position", el("input", { name: "a", type: "number", min: 0, value: data.a })),
    el("label", {}, "to position", el("input", { name: "b", type: "number", min: 0, value: data.b })),
    el("button", { type: "submit" }, "Compare"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    location.hash = `#/diff?${new URLSearchParams(new FormData(form))}`;
  });
  const parts = [el("h2", { id: "diff-title" }, `What changed from position ${data.a} to ${data.b}`), form,
    el("p", { class: "muted", id: "diff-counts" },
      `${data.counts.added} added, ${data.counts.removed} removed, ${data.counts.changed} changed.`)];
  if (data.added.length) parts.push(el("h3", {}, "Added"), stateTable(data.added, "added"));
  if (data.removed.length) parts.push(el("h3", {}, "Removed"), stateTable(data.removed, "removed"));
  if (data.changed.length) parts.push(el("h3", {}, "Changed"),
    el("div", { class: "side", id: "changed" }, ...data.changed.map((c) => sideBySide(c, data.a, data.b))));
  show(...parts);
}

async function causeView(params) {
  const data = await fetchView("cause", params);
  const e = data.event;
  setScrubber(e.position);
  const chain = el("ol", { class: "chain", id: "chain" });
  if (data.cause) {
    chain.append(
      el("li", {}, "bus event ", el("strong", {}, data.cause.event_type), " ", el("code", {}, data.cause.event_id)),
      el("li", {}, "handler ", el("code", {}, shown(data.cause.handler))));
  } else {
    chain.append(el("li", {}, "no bus event: written outside any delivery (or before causes were recorded)"));
  }
  chain.append(el("li", { class: "this" }, `store change #${e.position}: ${e.kind} `,
    link(shortId(e.document_id), "document", { id: e.document_id }), ` v${e.version}: ${changesText(e.changes)}`));
  const parts = [el("h2", {}, `Cause chain of #${e.position}`), chain,
    el("p", {}, link("state here", "state", { position: e.position }), " · ",
      link("diff to the previous position", "diff", { a: e.position - 1, b: e.position }))];
  if (data.root) {
    parts.push(el("h3", {}, "Everything its root wrote (root ", el("code", {}, data.root), ")"));
    const tree = el("ul", { class: "chain", id: "tree" });
    for (const group of data.tree) {
      tree.append(el("li", {}, causeText(group.cause),
        table(EVENT_HEADERS, group.writes.map((w) => eventRow(w, w.position === e.position)))));
    }
    parts.push(tree);
  }
  show(...parts);
}

function sagaLink(s, position) {
  return link(shortId(s.id), "saga", { id: s.id, position }, { title: s.id });
}

async function sagasView(params) {
  const data = await fetchView("sagas", params);
  setScrubber(data.position);
  const rows = data.sagas.map((s) => el("tr", { "data-saga": s.id },
    el("td", {}, sagaLink(s, data.position)), el("td", {}, s.saga), el("td", { class: "value" }, s.key),
    el("td", {}, `v${s.version}`), el("td", { class: `status-${s.status}` }, s.status),
    el("td", {}, shown(s.step)), el("td", { class: "value" }, shown(s.data)),
    el("td", {}, link(causeText(s.cause), "cause", { position: s.position }))));
  const more = data.count > data.offset + data.sagas.length
    ? link(`next ${data.sagas.length} sagas`, "sagas",
      { position: data.position, offset: data.offset + data.sagas.length })
    : null;
  show(el("h2", { id: "sagas-title" }, `Sagas at position ${data.position}`),
    el("p", { class: "muted", id: "sagas-count" }, `${data.count} saga instance${data.count === 1 ? "" : "s"} started by position ${data.position}.`),
    table(["saga id", "saga", "key", "version", "status", "step", "data", "cause of this version"], rows,
      { id: "sagas" }), more);
}

function sagaStateTable(s) {
  const fields = [["saga", s.saga], ["key", s.key], ["version", `v${s.version}`], ["status", s.status],
    ["step", s.step], ["steps done", s.steps.join(", ")], ["data", s.data], ["compensations", s.compensations],
    ["deadline", s.deadline && `${s.deadline.name} at ${s.deadline.at} UTC`], ["why it failed", s.reason],
    ["compensated", s.compensated.map((c) => (c.error ? `${c.name} (raised ${c.error})` : c.name)).join(", ")],
    ["failed compensation", s.failed_compensation], ["modified (UTC)", s.modified_at],
    ["cause", causeText(s.cause)]];
  return table(["field", "value"], fields.map(([name, value]) => el("tr", { "data-field": name },
    el("td", {}, name), el("td", { class: "value" }, shown(value)))), { id: "saga-state" });
}

async function sagaView(params) {
  const data = await fetchView("saga", params);
  setScrubber(data.position);
  const s = data.saga;
  const summary = s
    ? el("p", { id: "saga-summary" }, `${s.saga} ${s.key}: ${s.status}, version ${s.version} written at #${s.position} (`,
      link("cause chain", "cause", { position: s.position }), ")")
    : el("p", { id: "saga-summary" }, `Not started yet at position ${data.position}.`);
  const rows = data.versions.map((v) => el("tr", {},
    el("td", {}, `v${v.version}`),
    el("td", {}, link(String(v.position), "saga", { id: data.id, position: v.position })),
    el("td", {}, v.time), el("td", { class: `status-${v.status}` }, shown(v.status)), el("td", {}, shown(v.step)),
    el("td", { class: "value" }, changesText(v.changes)),
    el("td", {}, link(causeText(v.cause), "cause", { position: v.position }, { class: "cause-link" }))));
  show(el("h2", {}, "Saga ", el("code", {}, data.id), ` at position ${data.position}`), summary,
    s ? sagaStateTable(s) : null,
    el("h3", {}, "Its versions"),
    el("p", { class: "muted" }, `${data.versions.length} versions up to position ${data.position}, oldest first.`),
    table(["version", "position", "time (UTC)", "status", "step", "what it set", "cause"], rows,
      { id: "saga-versions" }));
}

function projectionPart(p, position) {
  const part = el("section", { class: "projection", "data-projection": p.name },
    el("h3", {}, p.name, " ", el("span", { class: "muted" }, `(${p.class}, read model at ${p.url})`)),
    el("p", { class: "lag" }, `Its read model has reached position ${p.tracked}: `,
      p.lag ? `${p.lag} behind the store's end.` : "up to date with the store's end."));
  if (p.error) part.append(el("p", { class: "error" }, p.error));
  for (const t of p.tables) {
    part.append(el("h4", {}, `${t.name} as of position ${position}: ${t.count} row${t.count === 1 ? "" : "s"}`),
      table(t.columns, t.rows.map((row) => el("tr", {},
        ...t.columns.map((c) => el("td", { class: "value" }, shown(row[c]))))), { "data-table": t.name }));
  }
  return part;
}

async function projectionsView(params) {
  const data = await fetchView("projections", params);
  setScrubber(data.position);
  const title = el("h2", { id: "projections-title" }, `Projections at position ${data.position}`);
  if (!data.enabled) {
    show(title, el("p", { id: "projections-off" }, "No projections are shown: projections live in your code, ",
      "not in the store. Start the inspector with --app module:factory (a function that takes no arguments ",
      "and returns a Projection or a list of them, as for atlas-eda project) to see their read models here."));
    return;
  }
  show(title, ...data.projections.map((p) => projectionPart(p, data.position)));
}

const VIEWS = {
  timeline: timelineView, state: stateView, document: documentView, diff: diffView, cause: causeView,
  sagas: sagasView, saga: sagaView, projections: projectionsView,
};

// -- routing and following new commits --------------------------------------------------

function parseHash() {
  const hash = location.hash.replace(/^#\/?/, "");
  const [view, query] = hash.split("?", 2);
  return { view: VIEWS[view] ? view : "timeline", params: new URLSearchParams(query || "") };
}

async function render() {
  route = parseHash();
  for (const name of ["timeline", "state", "diff", "sagas", "projections"]) {
    const current = name === route.view || (name === "sagas" && route.view === "saga");
    document.getElementById(`nav-${name}`).classList.toggle("current", current);
  }
  if (route.view === "timeline" || route.view === "document") setScrubber(currentPosition());
  try {
    await VIEWS[route.view](route.params);
    document.body.dataset.rendered = location.hash || "#/timeline";
  } catch (error) {
    show(el("p", { class: "error", id: "error" }, String(error.message || error)));
    document.body.dataset.rendered = "error";
  }
}

async function poll() {
  const live = document.getElementById("live");
  try {
    const summary = await fetchView("summary");
    document.getElementById("store").textContent = summary.store;
    live.classList.remove("stale");
    if (summary.last_position !== last) {
      const wasAtEnd = currentPosition() === last;
      last = summary.last_position;
      setScrubber(Math.min(currentPosition(), last));
      const following = document.getElementById("follow").checked;
      if (AT_POSITION.has(route.view) && wasAtEnd && following) goTo(last);
      else if (route.view === "timeline" && route.atEnd) await render();
    }
  } catch (error) {
    live.classList.add("stale");
  }
}

function start() {
  const scrubber = document.getElementById("scrubber");
  scrubber.addEventListener("change", () => goTo(scrubber.value));
  scrubber.addEventListener("input", () => { document.getElementById("position").value = scrubber.value; });
  document.getElementById("position").addEventListener("change", (e) => goTo(e.target.value));
  document.getElementById("back").addEventListener("click", () => goTo(Number(scrubber.value) - 1));
  document.getElementById("forward").addEventListener("click", () => goTo(Number(scrubber.value) + 1));
  window.addEventListener("hashchange", render);
  poll().then(render);
  setInterval(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", start);
