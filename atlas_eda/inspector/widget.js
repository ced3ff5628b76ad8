// The notebook widget of Timeline.widget(): a scrubber synced with the Python cursor
// (the `position` traitlet) and the state, diff and cause chain Python computed for it
// (the `view` traitlet). Stored values are put on the page as text only.
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function shown(value) {
  if (value === null || value === undefined) return "—";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function table(headers, rows) {
  return el("table", { class: "atlas-table" },
    el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function draw(model, body) {
  const view = model.get("view");
  const parts = [];
  const state = view.state;
  const event = state.event;
  parts.push(el("div", { class: "atlas-caption" }, event
    ? `Position ${state.position}: ${event.kind} ${event.document_id.slice(0, 8)} v${event.version}, caused by ${event.cause ? event.cause.describe : "no bus event"}`
    : "Position 0: before the first event"));
  parts.push(el("h4", {}, `The store (${state.count} documents)`), table(
    ["document", "version", "title", "content", "last editor", "deleted"],
    state.documents.map((d) => el("tr", {}, el("td", {}, d.document_id.slice(0, 8)), el("td", {}, d.version),
      el("td", {}, shown(d.title)), el("td", {}, shown(d.content)), el("td", {}, shown(d.last_editor)),
      el("td", {}, d.is_deleted ? "yes" : "")))));
  const diff = view.diff;
  const rows = [];
  for (const change of diff.changed) {
    for (const name of change.fields) {
      rows.push(el("tr", { class: "atlas-changed" }, el("td", {}, change.document_id.slice(0, 8)),
        el("td", {}, name), el("td", {}, shown(change.before[name])), el("td", {}, shown(change.after[name]))));
    }
  }
  for (const added of diff.added) {
    rows.push(el("tr", { class: "atlas-changed" }, el("td", {}, added.document_id.slice(0, 8)),
      el("td", {}, "(created)"), el("td", {}, ""), el("td", {}, shown(added.title))));
  }
  parts.push(el("h4", {}, `What changed from ${diff.a} to ${diff.b}`),
    table(["document", "field", `before (#${diff.a})`, `after (#${diff.b})`], rows));
  const cause = view.cause;
  if (cause) {
    const chain = el("ol", {});
    if (cause.cause) {
      chain.append(el("li", {}, `bus event ${cause.cause.event_type} ${cause.cause.event_id}`),
        el("li", {}, `handler ${shown(cause.cause.handler)}`));
    } else {
      chain.append(el("li", {}, "no bus event: written outside any delivery"));
    }
    chain.append(el("li", {}, `store change #${cause.event.position}`));
    const tree = cause.tree.map((g) => el("li", {}, `${g.cause ? g.cause.describe : "no bus event"}: `,
      g.writes.map((w) => `#${w.position} ${w.kind} ${w.document_id.slice(0, 8)} v${w.version}`).join(", ")));
    parts.push(el("h4", {}, "Cause chain"), chain);
    if (tree.length) parts.push(el("h4", {}, "Everything its root wrote"), el("ul", {}, ...tree));
  }
  body.replaceChildren(...parts);
}

function render({ model, el: root }) {
  const slider = el("input", { type: "range", min: 0, step: 1, class: "atlas-scrubber" });
  const label = el("span", { class: "atlas-position" });
  const back = el("button", {}, "◀");
  const forward = el("button", {}, "▶");
  const body = el("div", {});
  const go = (position) => {
    const bounded = Math.max(0, Math.min(model.get("last_position"), position));
    model.set("position", bounded);
    model.save_changes();
  };
  slider.addEventListener("change", () => go(Number(slider.value)));
  back.addEventListener("click", () => go(model.get("position") - 1));
  forward.addEventListener("click", () => go(model.get("position") + 1));
  const sync = () => {
    slider.max = String(model.get("last_position"));
    slider.value = String(model.get("position"));
    label.textContent = `position ${model.get("position")} of ${model.get("last_position")}`;
    draw(model, body);
  };
  model.on("change:view", sync);
  model.on("change:last_position", sync);
  root.replaceChildren(el("div", { class: "atlas-bar" }, back, slider, forward, label), body);
  sync();
}

export default { render };
