// The fleet page: reads the admin API, long-polls it for changes, draws each
// machine's boot stages. Everything from machines is shown as text, never HTML.
"use strict";

const STATES = ["failed", "provisioning", "booting", "discovered", "provisioned"];
const NEXT_BOOT = { disk: "its disk", target: "ramboot, then its target",
  discovery: "discovery (not in the inventory)" };
const STAGES = ["kernel", "agent", "network", "fetch", "action", "boot"];
const SVG = "http://www.w3.org/2000/svg";
let token = sessionStorage.getItem("ramboot-token") || "";
let selected = null;
let changed = -1;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : String(child));
    }
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function ago(at) {
  if (at === null || at === undefined) return "-";
  const s = Math.max(0, Math.round(Date.now() / 1000 - at));
  if (s < 120) return s + "s";
  if (s < 7200) return Math.floor(s / 60) + "m";
  if (s < 172800) return Math.floor(s / 3600) + "h";
  return Math.floor(s / 86400) + "d";
}

async function api(path, options) {
  const response = await fetch(path, Object.assign({
    headers: { "Authorization": "Bearer " + token, "Accept": "application/json" },
    cache: "no-store",
  }, options || {}));
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.error || ("HTTP " + response.status));
    error.status = response.status;
    throw error;
  }
  return body;
}

function miniBar(stages) {
  const bar = el("span", { "class": "mini", "aria-hidden": "true" });
  const total = stages.length ? stages[stages.length - 1].end : 0;
  for (const stage of stages) {
    const width = total > 0 ? (100 * stage.seconds / total) : 0;
    bar.append(el("span", { "class": "stage-" + (stage.failed ? "failed" : stage.stage),
      "style": "width:" + width.toFixed(2) + "%", "title": stage.stage + " " + stage.seconds + " s" }));
  }
  return bar;
}

function renderFleet(data) {
  const counts = document.getElementById("counts");
  counts.replaceChildren(...STATES.map((state) => el("div", {
    "class": "count " + state + (data.counts[state] ? "" : " zero"), "data-state": state,
  }, el("b", {}, data.counts[state] || 0), state)));
  document.getElementById("never-seen").textContent = data.never_seen.length
    ? "In the inventory, never seen: " + data.never_seen.join(", ") : "";
  const rows = data.machines.map((m) => {
    const name = m.host || m.key;
    const row = el("tr", { "data-key": m.key, "class": m.key === selected ? "selected" : "" },
      el("td", {}, name),
      el("td", {}, el("span", { "class": "state " + m.state }, m.state)),
      el("td", {}, m.next_boot),
      el("td", {}, m.last_event || "-"),
      el("td", {}, ago(m.last_event_at)),
      el("td", {}, miniBar(m.stages)),
      el("td", { "class": "failure", "title": m.failure || "" }, m.failure || ""));
    row.addEventListener("click", () => { selected = m.key; refreshDetail(); });
    return row;
  });
  document.querySelector("#machines tbody").replaceChildren(...rows);
}

function timelineChart(stages) {
  const width = 820, left = 80, right = 120, rowHeight = 26;
  const height = STAGES.length * rowHeight + 30;
  const total = Math.max(0.001, stages.length ? stages[stages.length - 1].end : 1);
  const scale = (width - left - right) / total;
  const chart = svg("svg", { "class": "timeline", "viewBox": `0 0 ${width} ${height}`,
    "width": width, "height": height, "role": "img",
    "aria-label": "boot stages in seconds since the kernel started" });
  STAGES.forEach((name, i) => {
    const y = i * rowHeight + 4;
    chart.append(svg("text", { x: 0, y: y + 15 }, name));
    const stage = stages.find((s) => s.stage === name);
    if (!stage) return;
    const x = left + stage.start * scale;
    const w = Math.max(2, stage.seconds * scale);
    chart.append(svg("rect", { "class": "stage-" + (stage.failed ? "failed" : name),
      x: x.toFixed(1), y, width: w.toFixed(1), height: rowHeight - 8, rx: 2,
      "data-stage": name }));
    chart.append(svg("text", { x: (x + w + 4).toFixed(1), y: y + 15 },
      stage.seconds.toFixed(1) + " s" + (stage.failed ? " failed" : "")));
  });
  const axisY = STAGES.length * rowHeight + 8;
  chart.append(svg("line", { "class": "axis", x1: left, x2: width - right, y1: axisY, y2: axisY }));
  for (let i = 0; i <= 4; i++) {
    const t = total * i / 4;
    chart.append(svg("text", { x: (left + t * scale - 8).toFixed(1), y: axisY + 16 },
      t.toFixed(1) + "s"));
  }
  return chart;
}

function renderDetail(m) {
  const detail = document.getElementById("detail");
  const name = m.host || m.key;
  const parts = [
    el("h2", {}, name + " ", el("span", { "class": "state " + m.state }, m.state)),
    el("p", { "class": "muted" }, "next boot: " + (NEXT_BOOT[m.next_boot] || m.next_boot)
      + " · boot " + (m.boot_id || "-") + " · last event " + (m.last_event || "-")
      + " " + ago(m.last_event_at) + " ago"),
  ];
  if (m.failure) {
    parts.push(el("p", { "class": "error", "id": "failure" }, m.failure));
    if (m.failure_log.length) parts.push(el("pre", { "id": "log-tail" }, m.failure_log.join("\n")));
  }
  parts.push(el("h3", {}, "Boot stages"));
  parts.push(m.stages.length ? timelineChart(m.stages) : el("p", { "class": "muted" }, "no events yet"));
  if (m.host && m.provisioned) {
    const button = el("button", { "id": "reinstall" }, "Reinstall " + m.host);
    button.addEventListener("click", async () => {
      if (!confirm("Provision " + m.host + " again on its next boot?")) return;
      await api("/api/machines/" + encodeURIComponent(m.host) + "/reinstall", { method: "POST" });
    });
    parts.push(button);
  }
  parts.push(el("h3", {}, "Events of this boot"));
  parts.push(el("pre", { "id": "events" }, m.events.map((e) =>
    String(e.seq).padStart(4) + "  " + e.monotonic.toFixed(3).padStart(9) + "s  " + e.event).join("\n")));
  detail.replaceChildren(...parts);
  detail.hidden = false;
}

async function refreshDetail() {
  if (!selected) return;
  try {
    renderDetail(await api("/api/machines/" + encodeURIComponent(selected)));
    for (const row of document.querySelectorAll("#machines tbody tr")) {
      row.classList.toggle("selected", row.dataset.key === selected);
    }
  } catch (error) {
    document.getElementById("detail").replaceChildren(el("p", { "class": "error" }, error.message));
  }
}

function showLogin(message) {
  document.getElementById("fleet").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
}

async function poll() {
  const live = document.getElementById("live");
  for (;;) {
    try {
      const query = changed < 0 ? "" : "?since=" + changed + "&wait=25";
      const data = await api("/api/fleet" + query);
      document.getElementById("login").hidden = true;
      document.getElementById("fleet").hidden = false;
      const moved = data.changed !== changed;
      changed = data.changed;
      renderFleet(data);
      if (moved) await refreshDetail();
      live.className = "live ok";
      live.textContent = "live · " + new Date().toLocaleTimeString();
    } catch (error) {
      if (error.status === 401 || error.status === 403) { showLogin(error.message); return; }
      live.className = "live down";
      live.textContent = "serve unreachable, retrying";
      await new Promise((resolve) => setTimeout(resolve, 2000));
    }
  }
}

document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  token = document.getElementById("token").value.trim();
  sessionStorage.setItem("ramboot-token", token);
  changed = -1;
  poll();
});

const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) {
  token = fromHash;
  sessionStorage.setItem("ramboot-token", token);
  history.replaceState(null, "", location.pathname);  // the token leaves the address bar
}
if (token) poll(); else showLogin("");
