// The shmlane monitor's page: everything comes from the WebSocket /api/live (a snapshot, then a
// delta per interval). No framework, no build step. Text from shared memory (names, type names,
// reasons) only ever goes into textContent, never into markup.
"use strict";

const HISTORY = 120; // sparkline points kept per service
const WORD_ROWS = 32; // 8-byte words shown for a peeked sample

const state = {
  services: new Map(), // id -> service state (see docs: the WebSocket's service object)
  nodes: new Map(), // id -> node
  history: new Map(), // id -> { rate: [], drops: [] }
  rows: new Map(), // id -> { tr, cells }
  seq: 0,
  intervalMs: 250,
  peekEnabled: false,
  open: null, // id of the service shown in detail
  socket: null,
  retry: 500,
};

const $ = (id) => document.getElementById(id);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function fmtRate(value) {
  if (!Number.isFinite(value)) return "-";
  if (value >= 1e6) return (value / 1e6).toFixed(2) + " M";
  if (value >= 1e4) return (value / 1e3).toFixed(1) + " k";
  return value.toFixed(value < 10 ? 2 : 1);
}

function fmtCount(value) {
  return Number(value).toLocaleString("en-US");
}

// The service's headline rate: what its publishers send (a topic, an rpc topic) or what its
// listeners take (an event).
function rateOf(service) {
  return service.kind === "event" ? service.rates.notifications : service.rates.sent;
}

function connect() {
  setConnection("connecting", "connecting…");
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(`${scheme}//${location.host}/api/live`);
  state.socket = socket;
  socket.onopen = () => {
    state.retry = 500;
    setConnection("live", "live");
    if (state.open) requestPeek(state.open);
  };
  socket.onmessage = (event) => {
    let message;
    try {
      message = JSON.parse(event.data);
    } catch (e) {
      return;
    }
    handle(message);
  };
  socket.onclose = (event) => {
    const why = event.reason ? `: ${event.reason}` : "";
    setConnection("down", `disconnected (${event.code}${why}), reconnecting`);
    state.socket = null;
    setTimeout(connect, state.retry);
    state.retry = Math.min(state.retry * 2, 10000);
  };
}

function send(message) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify(message));
  }
}

function setConnection(className, text) {
  const node = $("connection");
  node.className = `status ${className}`;
  node.textContent = text;
}

function handle(message) {
  switch (message.type) {
    case "snapshot":
      state.services.clear();
      state.nodes.clear();
      state.intervalMs = message.interval_ms;
      state.peekEnabled = message.peek;
      for (const service of message.services) state.services.set(service.id, service);
      for (const node of message.nodes) state.nodes.set(node.id, node);
      for (const id of [...state.history.keys()]) {
        if (!state.services.has(id)) state.history.delete(id);
      }
      update(message);
      break;
    case "delta":
      for (const service of message.services) state.services.set(service.id, service);
      for (const id of message.removed) {
        state.services.delete(id);
        state.history.delete(id);
      }
      for (const node of message.nodes) state.nodes.set(node.id, node);
      for (const id of message.removed_nodes) state.nodes.delete(id);
      update(message);
      break;
    case "peek":
      renderPeek(message);
      break;
    case "error":
      showError(message.message);
      break;
    default:
      break;
  }
}

function update(message) {
  state.seq = message.seq;
  for (const [id, service] of state.services) {
    let history = state.history.get(id);
    if (!history) {
      history = { rate: [], drops: [] };
      state.history.set(id, history);
    }
    history.rate.push(rateOf(service));
    history.drops.push(service.rates.drops);
    if (history.rate.length > HISTORY) history.rate.shift();
    if (history.drops.length > HISTORY) history.drops.shift();
  }
  const error = $("summary");
  error.classList.toggle("bad", Boolean(message.error));
  renderNamespaces();
  renderServices();
  renderNodes();
  renderSummary(message);
  if (state.open) renderDetail();
}

function selectedNamespace() {
  return $("namespace").value;
}

function renderNamespaces() {
  const select = $("namespace");
  const namespaces = new Set();
  for (const service of state.services.values()) namespaces.add(service.namespace);
  for (const node of state.nodes.values()) namespaces.add(node.namespace);
  const have = new Set([...select.options].map((option) => option.value));
  for (const namespace of [...namespaces].sort()) {
    if (!have.has(namespace)) select.append(el("option", namespace));
  }
}

function peerSummary(peers) {
  const dead = peers.filter((peer) => peer.liveness === "dead").length;
  const cell = el("span", String(peers.length));
  if (dead > 0) cell.append(" ", el("span", `${dead} dead`, "badge dead"));
  return cell;
}

function renderServices() {
  const body = $("services").querySelector("tbody");
  const namespace = selectedNamespace();
  const shown = [...state.services.values()]
    .filter((service) => !namespace || service.namespace === namespace)
    .sort((a, b) => a.id.localeCompare(b.id));
  const keep = new Set(shown.map((service) => service.id));
  for (const [id, row] of state.rows) {
    if (!keep.has(id)) {
      row.tr.remove();
      state.rows.delete(id);
    }
  }
  for (const service of shown) {
    let row = state.rows.get(service.id);
    if (!row) {
      row = makeRow(service.id);
      state.rows.set(service.id, row);
    }
    fillRow(row, service);
    body.append(row.tr); // moves it into sorted place
  }
  $("no-services").hidden = shown.length > 0;
}

function makeRow(id) {
  const tr = el("tr");
  tr.dataset.id = id;
  const cells = {};
  for (const name of ["service", "kind", "state", "type", "publishers", "subscribers", "rate", "drops", "fill", "rateSpark", "dropSpark"]) {
    cells[name] = el("td");
    tr.append(cells[name]);
  }
  const open = el("button", "", "link");
  open.type = "button";
  open.addEventListener("click", () => openDetail(id));
  cells.service.append(open);
  cells.open = open;
  cells.rate.className = "num rate";
  cells.drops.className = "num drops";
  const fill = el("div", null, "fill");
  const bar = el("div", null, "bar");
  fill.append(bar);
  cells.fill.append(fill, el("span", "", "fill-text"));
  cells.bar = bar;
  cells.rateCanvas = el("canvas", null, "spark");
  cells.dropCanvas = el("canvas", null, "spark drops");
  cells.rateSpark.append(cells.rateCanvas);
  cells.dropSpark.append(cells.dropCanvas);
  return { tr, cells };
}

function fillRow(row, service) {
  const c = row.cells;
  c.open.textContent = `${service.namespace} / ${service.name}`;
  c.open.title = service.id;
  c.kind.textContent = service.kind;
  c.state.textContent = service.state;
  c.state.className = service.state === "alive" ? "" : "bad";
  if (service.reason || service.problem) c.state.title = service.reason || service.problem;
  const type = service.payload_type;
  c.type.textContent = type ? `${type.name} (${type.size} B)` : "-";
  c.publishers.replaceChildren(peerSummary(service.publishers));
  c.subscribers.replaceChildren(peerSummary(service.subscribers));
  const rate = rateOf(service);
  c.rate.textContent = fmtRate(rate);
  c.rate.dataset.rate = String(rate);
  c.drops.textContent = fmtRate(service.rates.drops);
  c.drops.dataset.rate = String(service.rates.drops);
  c.drops.classList.toggle("bad", service.rates.drops > 0);
  const queue = service.queue;
  const text = c.fill.querySelector(".fill-text");
  if (queue && queue.capacity > 0) {
    c.bar.style.width = `${Math.min(100, queue.fill * 100).toFixed(0)}%`;
    text.textContent = `${queue.queued}/${queue.capacity}${queue.full ? ` · ${queue.full} full` : ""}`;
    c.fill.dataset.fill = String(queue.fill);
  } else {
    c.bar.style.width = "0%";
    text.textContent = "-";
    delete c.fill.dataset.fill;
  }
  row.tr.classList.toggle("full", Boolean(queue && queue.full > 0));
  row.tr.classList.toggle("dead", service.dead_peers > 0);
  row.tr.classList.toggle("stale", service.state !== "alive");
  const history = state.history.get(service.id) || { rate: [], drops: [] };
  spark(c.rateCanvas, history.rate, "#2b7bd6");
  spark(c.dropCanvas, history.drops, "#d63b2b");
  c.rateCanvas.title = `max ${fmtRate(Math.max(0, ...history.rate))} msg/s over the last ${history.rate.length} updates`;
  c.dropCanvas.title = `max ${fmtRate(Math.max(0, ...history.drops))} drops/s`;
}

function spark(canvas, history, color) {
  const ratio = window.devicePixelRatio || 1;
  const width = 120;
  const height = 24;
  if (canvas.width !== width * ratio) {
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
  }
  const g = canvas.getContext("2d");
  if (!g) return;
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  if (history.length === 0) return;
  // The points kept so far (up to HISTORY) span the width, the newest on the right.
  const values = history.length === 1 ? [history[0], history[0]] : history;
  const max = Math.max(1e-9, ...values);
  const step = width / (values.length - 1);
  const y = (value) => height - 2 - (value / max) * (height - 4);
  g.beginPath();
  g.moveTo(0, height);
  values.forEach((value, i) => g.lineTo(i * step, y(value)));
  g.lineTo(width, height);
  g.closePath();
  g.fillStyle = color + "33";
  g.fill();
  g.beginPath();
  values.forEach((value, i) => (i === 0 ? g.moveTo(0, y(value)) : g.lineTo(i * step, y(value))));
  g.strokeStyle = color;
  g.lineWidth = 1.5;
  g.stroke();
}

function renderNodes() {
  const body = $("nodes").querySelector("tbody");
  const namespace = selectedNamespace();
  const nodes = [...state.nodes.values()]
    .filter((node) => !namespace || node.namespace === namespace)
    .sort((a, b) => a.id.localeCompare(b.id));
  body.replaceChildren(
    ...nodes.map((node) => {
      const tr = el("tr");
      tr.classList.toggle("dead", node.liveness === "dead");
      const age = node.heartbeat_age_ns === null ? "never beat" : `${(node.heartbeat_age_ns / 1e9).toFixed(2)} s`;
      tr.append(
        el("td", node.name),
        el("td", node.namespace),
        el("td", node.pid === null ? "?" : node.pid),
        el("td", node.liveness, node.liveness === "alive" ? "" : "bad"),
        el("td", age, "num"),
      );
      return tr;
    }),
  );
  $("no-nodes").hidden = nodes.length > 0;
}

function renderSummary(message) {
  const services = [...state.services.values()];
  const dead = services.reduce((sum, service) => sum + service.dead_peers, 0);
  const full = services.filter((service) => service.queue && service.queue.full > 0).length;
  const parts = [
    `${services.length} services`,
    `${state.nodes.size} nodes`,
    `${dead} dead peers`,
    `${full} full queues`,
    `update ${message.seq} every ${state.intervalMs} ms`,
  ];
  if (message.error) parts.push(`error: ${message.error}`);
  $("summary").textContent = parts.join(" · ");
}

function openDetail(id) {
  if (state.open === id) return;
  closeDetail();
  state.open = id;
  $("detail").hidden = false;
  renderDetail();
  const service = state.services.get(id);
  if (service && service.kind === "topic" && state.peekEnabled) {
    $("peek").hidden = false;
    $("peek-status").textContent = "opening a subscriber…";
    $("peek-hex").textContent = "";
    $("peek-words").querySelector("tbody").replaceChildren();
    requestPeek(id);
  } else {
    $("peek").hidden = true;
  }
}

function requestPeek(id) {
  const service = state.services.get(id);
  if (service && service.kind === "topic" && state.peekEnabled) send({ type: "peek", service: id });
}

function closeDetail() {
  if (state.open) send({ type: "unpeek" });
  state.open = null;
  $("detail").hidden = true;
  $("peek").hidden = true;
}

function renderDetail() {
  const service = state.services.get(state.open);
  $("detail-title").textContent = state.open;
  if (!service) {
    $("detail-facts").textContent = "This service is gone.";
    $("peers").querySelector("tbody").replaceChildren();
    return;
  }
  const t = service.totals;
  const facts = [
    `${service.kind}, ${service.state}`,
    service.payload_type ? `type ${service.payload_type.name} (${service.payload_type.size} B, version ${service.payload_type.version})` : null,
    `sent ${fmtCount(t.sent)}`,
    `received ${fmtCount(t.received)}`,
    `drops ${fmtCount(t.drops)}`,
    `held ${fmtCount(t.held)}`,
    t.loans_failed ? `loans failed ${fmtCount(t.loans_failed)}` : null,
    t.timeouts ? `timeouts ${fmtCount(t.timeouts)}` : null,
    service.kind === "event" ? `notifications ${fmtCount(t.notifications)}` : null,
    service.problem ? `problem: ${service.problem}` : null,
  ].filter(Boolean);
  $("detail-facts").textContent = facts.join(" · ");
  const rows = [];
  const role = service.kind === "event" ? "listener" : "subscriber";
  for (const [name, peers] of [["publisher", service.publishers], [role, service.subscribers]]) {
    for (const peer of peers) {
      const tr = el("tr");
      tr.classList.toggle("dead", peer.liveness === "dead");
      const queue = peer.queue ? `${peer.queue.queued}/${peer.queue.capacity}` : "-";
      const label = el("td", name);
      if (peer.monitor) label.append(" ", el("span", "this monitor", "badge"));
      tr.append(
        label,
        el("td", peer.slot),
        el("td", peer.pid === null ? "?" : peer.pid),
        el("td", peer.liveness, peer.liveness === "alive" ? "" : "bad"),
        el("td", fmtRate(peer.rate), "num"),
        el("td", fmtCount(peer.counters.sent), "num"),
        el("td", fmtCount(peer.counters.received), "num"),
        el("td", fmtCount(peer.drops), "num"),
        el("td", fmtCount(peer.counters.held), "num"),
        el("td", queue),
      );
      rows.push(tr);
    }
  }
  $("peers").querySelector("tbody").replaceChildren(...rows);
}

function renderPeek(message) {
  if (!state.open || message.service !== state.open) return;
  const status = $("peek-status");
  if (message.status === "error") {
    status.textContent = message.error;
    status.className = "bad";
    // The topic may come back: ask again after a while.
    setTimeout(() => {
      if (state.open === message.service) requestPeek(message.service);
    }, 3000);
    return;
  }
  status.className = "";
  const sample = message.sample;
  const type = message.type_name ? `${message.type_name}, ${message.element_size} B per element` : "";
  if (!sample) {
    status.textContent = `${message.status}: no sample yet (${type})`;
    return;
  }
  status.textContent =
    `${message.status}: ${fmtCount(message.received)} samples seen by the peek, ${fmtCount(message.drops)} dropped for it; ` +
    `the last: ${sample.elements} element(s), ${sample.bytes} bytes (${type})` +
    (sample.truncated ? `, first ${sample.hex.length / 2} bytes shown` : "");
  const bytes = new Uint8Array(sample.hex.length / 2);
  for (let i = 0; i < bytes.length; i += 1) bytes[i] = parseInt(sample.hex.substr(i * 2, 2), 16);
  $("peek-hex").textContent = hexDump(bytes, message.element_size || 0);
  const body = $("peek-words").querySelector("tbody");
  const view = new DataView(bytes.buffer);
  const rows = [];
  for (let offset = 0; offset + 8 <= bytes.length && rows.length < WORD_ROWS; offset += 8) {
    const tr = el("tr");
    tr.append(
      el("td", offset),
      el("td", hex(bytes.subarray(offset, offset + 8))),
      el("td", view.getBigUint64(offset, true).toString(), "num"),
      el("td", view.getBigInt64(offset, true).toString(), "num"),
      el("td", String(view.getFloat64(offset, true)), "num"),
    );
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function hex(bytes) {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join(" ");
}

// 16 bytes a line: offset, hex, printable ASCII; a line starts at each element when elements
// are at least 16 bytes.
function hexDump(bytes, elementSize) {
  const lines = [];
  const breakAt = elementSize >= 16 ? elementSize : 0;
  let start = 0;
  while (start < bytes.length) {
    let end = Math.min(start + 16, bytes.length);
    if (breakAt) {
      const next = (Math.floor(start / breakAt) + 1) * breakAt;
      end = Math.min(end, next);
    }
    const chunk = bytes.subarray(start, end);
    const ascii = [...chunk].map((b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${start.toString(16).padStart(6, "0")}  ${hex(chunk).padEnd(47)}  ${ascii}`);
    start = end;
  }
  return lines.join("\n");
}

function showError(text) {
  let toast = $("toast");
  if (!toast) {
    toast = el("div", "", "toast");
    toast.id = "toast";
    document.body.append(toast);
  }
  toast.textContent = text;
  toast.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => (toast.hidden = true), 6000);
}

document.addEventListener("DOMContentLoaded", () => {
  $("detail-close").addEventListener("click", closeDetail);
  $("namespace").addEventListener("change", () => {
    renderServices();
    renderNodes();
  });
  connect();
});
