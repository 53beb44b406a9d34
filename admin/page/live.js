// The live page of longhaul's admin address: it reads /status every second
// and redraws. Every value is set as text (textContent, text nodes, or
// attributes), never parsed as HTML.
"use strict";

const interval = 1000;

// el builds an element: attrs are set as attributes, children are nodes or
// strings (text nodes).
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null && v !== false) e.setAttribute(k, String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function badge(cls, text) { return el("span", { class: "badge " + cls }, text); }

// secondsFrom formats t relative to the status's clock: "in 3.2s", "1.0s ago".
function secondsFrom(t, at) {
  const s = (Date.parse(t) - Date.parse(at)) / 1000;
  if (!isFinite(s)) return "";
  return s >= 0 ? "in " + s.toFixed(1) + "s" : (-s).toFixed(1) + "s ago";
}

function table(head, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, ...head.map(h => el("th", {}, h)))),
    el("tbody", {}, ...rows));
}

function conditions(e) {
  const out = [];
  if (e.gone) out.push(badge("gone", "gone"));
  if (e.ready) out.push(badge("ready", "ready")); else if (!e.gone) out.push(badge("notready", "not ready"));
  if (e.serving) out.push(badge("serving", "serving"));
  if (e.terminating) out.push(badge("terminating", "terminating"));
  if (e.outgoing) out.push(badge("outgoing", "outgoing"));
  return out;
}

function endpointRow(b, e, at) {
  const leaving = !e.eligible;
  return el("tr", { class: leaving ? "endpoint leaving" : "endpoint", "data-backend": b.name, "data-endpoint": e.address },
    el("td", { class: "mono" }, e.address),
    el("td", {}, e.pod || ""),
    el("td", { class: "conditions" }, ...conditions(e)),
    el("td", {}, e.eligible ? "yes" : "no"),
    el("td", { class: "num sessions" }, e.sessions),
    el("td", {}, el("span", { class: "bar", "data-n": e.sessions })),
    el("td", { class: "num migrating" }, e.migrating || ""),
    el("td", { class: "kill" }, e.killTime ? secondsFrom(e.killTime, at) : ""));
}

function drawListeners(st) {
  const box = document.getElementById("listeners");
  const cards = [];
  for (const l of st.listeners || []) {
    const parts = [el("h3", {}, l.name, el("span", { class: "meta" }, l.protocol + " on " + l.address))];
    for (const b of l.backends || []) {
      if (l.backends.length > 1 || b.name !== l.name) parts.push(el("h3", {}, "backend " + b.name));
      parts.push(el("p", { class: "muted" },
        "sessions ", el("strong", { class: "backend-sessions", "data-backend": b.name }, b.sessions),
        " · table fingerprint ", el("code", { class: "fingerprint", "data-backend": b.name }, b.fingerprint || "none yet")));
      const rows = (b.endpoints || []).map(e => endpointRow(b, e, st.at));
      parts.push(rows.length ? table(["endpoint", "pod", "conditions", "eligible", "sessions", "", "migrating", "kill time"], rows)
        : el("p", { class: "muted" }, "no endpoints"));
    }
    cards.push(el("div", { class: "card listener", "data-listener": l.name }, ...parts));
  }
  box.replaceChildren(...(cards.length ? cards : [el("p", { class: "muted" }, "no listeners")]));
  // Bars are sized here, through the DOM, not an inline style attribute
  // (the Content-Security-Policy allows no inline style).
  for (const bar of box.querySelectorAll(".bar")) {
    bar.style.width = Math.min(Number(bar.dataset.n) * 8, 240) + "px";
  }
}

function drawDrains(st) {
  const rows = [];
  for (const l of st.listeners || []) {
    for (const b of l.backends || []) {
      for (const d of b.drains || []) {
        const state = d.finished ? badge("finished", "finished " + secondsFrom(d.finished, st.at))
          : (d.late ? badge("late", "late") : badge("terminating", "draining"));
        rows.push(el("tr", { class: "drain", "data-backend": b.name, "data-endpoint": d.endpoint },
          el("td", {}, b.name),
          el("td", { class: "mono" }, d.endpoint),
          el("td", { class: "drainstate" }, state),
          el("td", { class: "num left" }, d.left),
          el("td", { class: "num atstart" }, d.atStart),
          el("td", { class: "num asked" }, d.asked),
          el("td", { class: "num ended" }, d.moved + " / " + d.forced + " / " + d.closed),
          el("td", { class: "deadline" }, secondsFrom(d.deadline, st.at)),
          el("td", { class: "killtime" }, d.killTime ? secondsFrom(d.killTime, st.at) : "unknown"),
          el("td", { class: "projected" }, secondsFrom(d.projectedFinish, st.at))));
      }
    }
  }
  document.getElementById("drains").replaceChildren(rows.length
    ? table(["backend", "endpoint", "state", "left", "at start", "asked", "moved / forced / closed", "deadline", "kill time", "projected finish"], rows)
    : el("p", { class: "muted" }, "No drain in progress."));
}

function drawMigrations(st) {
  const rows = (st.migrations || []).map(m => el("tr", { class: "migration", "data-backend": m.backend },
    el("td", {}, secondsFrom(m.ended, st.at)),
    el("td", {}, m.backend),
    el("td", {}, m.protocol),
    el("td", { class: "reason" }, m.reason || "?"),
    el("td", { class: "outcome" }, m.outcome),
    el("td", { class: "mono from" }, m.from),
    el("td", {}, "→"),
    el("td", { class: "mono to" }, m.to || "…"),
    el("td", { class: "num" }, m.took.toFixed(2) + "s")));
  document.getElementById("migrations").replaceChildren(rows.length
    ? table(["ended", "backend", "protocol", "reason", "outcome", "from", "", "to", "took"], rows)
    : el("p", { class: "muted" }, "No migration yet."));
}

function setState(live, text) {
  const s = document.getElementById("state");
  s.className = "state " + (live ? "live" : "down");
  s.textContent = text;
}

async function refresh() {
  try {
    const r = await fetch("/status", { cache: "no-store" });
    if (!r.ok) throw new Error("HTTP " + r.status);
    const st = await r.json();
    drawListeners(st);
    drawDrains(st);
    drawMigrations(st);
    setState(true, "live");
    document.getElementById("updated").textContent = "as of " + new Date(st.at).toLocaleTimeString();
    document.body.dataset.at = st.at;
  } catch (err) {
    setState(false, "disconnected: " + err.message);
  } finally {
    setTimeout(refresh, interval);
  }
}

refresh();
