// The meshnode dashboard: one EventSource for the node's snapshots, one
// for the log of the vessel shown. No polling, no external assets.
"use strict";
const $ = (id) => document.getElementById(id);
const seen = new Map(); // vessel -> node, to notice moves between snapshots
const moves = []; // {at, vessel, name, from, to, downtime_us, reason}
let logSource = null;

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(c ?? ""));
  return e;
}

function nodeLabel(n) { return n.name ? `${n.name} (…${n.short})` : `…${n.short}`; }

function render(s) {
  $("self").textContent = s.self ? `node …${s.self.slice(-8)} · v${s.version}` : "";
  const bad = (s.unhealthy || []).length > 0;
  $("health").textContent = bad ? "unhealthy: " + s.unhealthy.join("; ") : "healthy";
  $("health").className = "pill" + (bad ? " bad" : "");
  $("login").hidden = s.authed;
  $("warnings").replaceChildren(...(s.warnings || []).map((w) => el("li", {}, w)));
  const names = new Map(s.nodes.map((n) => [n.peer_id, nodeLabel(n)]));
  $("nodes").tBodies[0].replaceChildren(...s.nodes.map((n) => el("tr", { "data-node": n.peer_id },
    el("td", { className: "id", title: n.peer_id }, nodeLabel(n) + (n.self ? " (this node)" : "")),
    el("td", { className: "state-" + n.state }, n.state),
    el("td", {}, n.arch ? `${n.arch} ×${n.cpus ?? "?"}` : "-"),
    el("td", {}, n.load_milli == null ? "-" : (n.load_milli / 1000).toFixed(2)),
    el("td", {}, n.rtt_us == null ? "-" : (n.rtt_us / 1000).toFixed(2) + " ms"))));
  $("links").replaceChildren(...s.links.map((l) =>
    el("li", {}, `…${l.a} ↔ …${l.b}: ${(l.rtt_us / 1000).toFixed(2)} ms`)));
  $("vessels").tBodies[0].replaceChildren(...s.vessels.map((v) => {
    const prev = seen.get(v.vessel);
    const known = (s.events || []).some((e) => e.vessel === v.vessel && e.to === v.node_short &&
      e.kind === "Migrated" && Date.now() - e.at_unix_ms < 30000);
    if (prev && prev !== v.node && !known) {
      moves.push({ at: Date.now(), vessel: v.vessel, name: v.name, from: prev.slice(-8), to: v.node_short });
    }
    seen.set(v.vessel, v.node);
    const btn = el("button", { disabled: !s.authed, title: s.authed ? "follow its log" : "needs a session" }, "log");
    btn.onclick = () => follow(v);
    return el("tr", { "data-vessel": v.vessel, "data-node": v.node },
      el("td", { className: "id", title: v.vessel }, `${v.name} (${v.vessel.slice(0, 8)})`),
      el("td", {}, names.get(v.node) || "…" + v.node_short),
      el("td", {}, v.why ?? (s.authed ? "(judged by its host)" : "-")),
      el("td", {}, btn));
  }));
  for (const e of s.events || []) {
    if (e.kind !== "Migrated" && e.kind !== "MigrationAborted" && e.kind !== "Placement") continue;
    const key = `${e.at_unix_ms}/${e.vessel}/${e.kind}`;
    if (moves.some((m) => m.key === key)) continue;
    // The node's own record of a move replaces the one seen between snapshots.
    const dup = moves.findIndex((m) => !m.key && m.vessel === e.vessel && m.to === e.to &&
      Math.abs(m.at - e.at_unix_ms) < 30000);
    if (dup >= 0) moves.splice(dup, 1);
    moves.push({ key, at: e.at_unix_ms, vessel: e.vessel, name: e.name, from: e.from, to: e.to,
      downtime_us: e.downtime_us, kind: e.kind, reason: e.reason });
  }
  moves.sort((a, b) => a.at - b.at);
  $("timeline").replaceChildren(...moves.slice(-50).reverse().map((m) => el("li", {},
    `${new Date(m.at).toLocaleTimeString()} ${m.name}: ` +
    (m.kind === "Placement" ? `placement: ${m.reason}` :
      `…${m.from} → …${m.to}` +
      (m.kind === "MigrationAborted" ? " aborted" : "") +
      (m.downtime_us != null ? `, downtime ${(m.downtime_us / 1000).toFixed(1)} ms` : "") +
      (m.reason ? ` (${m.reason})` : "")))));
}

function follow(v) {
  if (logSource) logSource.close();
  $("logpane").hidden = false;
  $("logname").textContent = `${v.name} (${v.vessel.slice(0, 8)})`;
  $("log").replaceChildren();
  logSource = new EventSource("/logs?vessel=" + v.vessel);
  logSource.addEventListener("log", (ev) => {
    const r = JSON.parse(ev.data);
    $("log").append(el("span", { className: r.stream === 2 ? "err" : "" }, r.text));
    $("log").scrollTop = $("log").scrollHeight;
  });
  logSource.addEventListener("away", () => {
    $("log").append(el("span", { className: "err" }, "\n[it runs on another node now: its log is there]\n"));
  });
}

const events = new EventSource("/events");
events.addEventListener("snapshot", (ev) => {
  $("live").textContent = "live";
  $("live").className = "pill";
  render(JSON.parse(ev.data));
});
events.onerror = () => { $("live").textContent = "offline"; $("live").className = "pill off"; };
