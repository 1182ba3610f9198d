'use strict';
// Live dashboard of the Kafka case studies. Vanilla JS, no build step, no external resources.
// Contract: src/up/API.md. Sections: helpers · API · live snapshots (SSE) · graph layout ·
// graph drawing · overview · case-study page · topic panel · service panel · queries ·
// controls · view · router.

/* ================================ helpers ================================ */

const SVG_NS = 'http://www.w3.org/2000/svg';

// Sets attributes; `text` sets textContent; null/false are skipped.
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === 'text') el.textContent = String(v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}
function build(el, attrs, children) {
  setAttrs(el, attrs);
  for (const c of children.flat()) {
    if (c != null && c !== false) el.append(c instanceof Node ? c : String(c)); // strings: text nodes, escaped
  }
  return el;
}
const h = (tag, attrs, ...children) => build(document.createElement(tag), attrs, children);
const s = (tag, attrs, ...children) => build(document.createElementNS(SVG_NS, tag), attrs, children);
// Touch the DOM only when something changes.
const setText = (el, text) => { if (el.textContent !== String(text)) el.textContent = String(text); };
const setAttr = (el, name, value) => { if (el.getAttribute(name) !== value) el.setAttribute(name, value); };
const enc = encodeURIComponent;
const isNum = (v) => typeof v === 'number' && Number.isFinite(v);
const fmt1 = (v) => (isNum(v) ? v.toFixed(1) : '–');
const fmtInt = (v) => (isNum(v) ? String(Math.round(v)) : '–');
const fmtNum = (v) => (!isNum(v) ? '–' : Number.isInteger(v) ? String(v) : v.toFixed(Math.abs(v) < 10 ? 2 : 1));
function fmtTime(ms) {
  if (!isNum(ms)) return '';
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
function compactJson(v) {
  if (v === undefined) return '';
  try { return JSON.stringify(v); } catch { return String(v); }
}
const cellText = (v) => (v == null ? '' : typeof v === 'object' ? compactJson(v) : String(v));
const truncate = (text, max) => (text.length > max ? text.slice(0, max - 1) + '…' : text);
function debounce(fn, ms) {
  let t = null;
  return () => { clearTimeout(t); t = setTimeout(fn, ms); };
}
const csPath = (name) => `/api/case-studies/${enc(name)}`;
const topicInfo = (cs, topic) =>
  (Array.isArray(cs.topics) ? cs.topics : []).find((t) => t && t.name === topic) || null;

/* ================================== API ================================== */

// Never throws: {ok, status, data} or {ok: false, status, error} (error text from the API's
// {"error", "detail"} body when there is one).
async function api(path, { method = 'GET', body } = {}) {
  const init = { method, headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res, data = null, parsed = true;
  try {
    res = await fetch(path, init);
  } catch (e) {
    return { ok: false, status: 0, error: `network error: ${(e && e.message) || e}` };
  }
  try {
    const text = await res.text();
    data = text ? JSON.parse(text) : null;
  } catch { parsed = false; }
  if (res.ok && parsed) return { ok: true, status: res.status, data };
  if (res.ok) return { ok: false, status: res.status, error: 'the server answered something that is not JSON' };
  let error = data && typeof data.error === 'string' ? data.error : `HTTP ${res.status}`;
  if (data && data.detail != null) error += ` (${cellText(data.detail)})`;
  return { ok: false, status: res.status, error, data };
}

/* ========================= live snapshots (SSE) ========================== */

const state = {
  list: null,       // [CaseStudy] once loaded
  snap: null,       // the last Snapshot
  lastAt: 0,        // when it arrived (Date.now())
};
let current = null; // the rendered page: {update(snapshot), dispose()}

function connect() {
  const es = new EventSource('/api/events'); // reconnects by itself after a dropped connection
  es.addEventListener('snapshot', (e) => {
    let snap;
    try { snap = JSON.parse(e.data); } catch { return; }
    if (!snap || typeof snap !== 'object') return;
    state.snap = snap;
    state.lastAt = Date.now();
    tickLive();
    applySnapshot();
  });
  es.addEventListener('error', () => {
    // A non-SSE answer (e.g. the server restarting) closes it for good: open a new one later.
    if (es.readyState === EventSource.CLOSED) {
      es.close();
      setTimeout(connect, 3000);
    }
  });
}
function applySnapshot() {
  if (!current || !state.snap) return;
  try { current.update(state.snap); } catch (err) { console.warn('snapshot not applied:', err); }
}
const csSnapshot = (snap, name) => {
  const all = snap && snap.case_studies;
  return all && typeof all === 'object' && all[name] && typeof all[name] === 'object' ? all[name] : null;
};

// The "live" indicator: seconds since the last snapshot, red after 5 s.
function tickLive() {
  const el = document.getElementById('live');
  if (!el) return;
  const age = state.lastAt ? Math.max(0, (Date.now() - state.lastAt) / 1000) : Infinity;
  setText(el, state.lastAt ? `live · ${age.toFixed(0)} s ago` : 'connecting…');
  el.classList.toggle('stale', age > 5);
}

/* ============================= graph layout ============================== */

const NODE_W = 168, NODE_H = 56, GAP_X = 84, GAP_Y = 26, PAD = 16, LABEL_MAX = 21;

// Layered left→right: a node's layer is the longest path from a node without incoming edges.
// Cycles (a repartition topic read back by its writer) are broken by DFS back edges, drawn below.
function layoutGraph(graph) {
  const nodes = (graph && Array.isArray(graph.nodes) ? graph.nodes : []).filter((n) => n && n.id != null);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const edges = (graph && Array.isArray(graph.edges) ? graph.edges : [])
    .filter((e) => e && byId.has(e.from) && byId.has(e.to) && e.from !== e.to);
  const out = new Map(nodes.map((n) => [n.id, []]));
  const indeg = new Map(nodes.map((n) => [n.id, 0]));
  for (const e of edges) { out.get(e.from).push(e); indeg.set(e.to, indeg.get(e.to) + 1); }

  // 1. back edges: DFS from the sources first, then from whatever is left (pure cycles)
  const mark = new Map(); // 1 on the stack, 2 done
  const back = new Set();
  const visit = (id) => {
    mark.set(id, 1);
    for (const e of out.get(id)) {
      const m = mark.get(e.to);
      if (m === 1) back.add(e);
      else if (!m) visit(e.to);
    }
    mark.set(id, 2);
  };
  nodes.forEach((n) => { if (indeg.get(n.id) === 0 && !mark.has(n.id)) visit(n.id); });
  nodes.forEach((n) => { if (!mark.has(n.id)) visit(n.id); });

  // 2. longest path over the forward edges (Kahn's order)
  const layer = new Map(nodes.map((n) => [n.id, 0]));
  const deg = new Map(nodes.map((n) => [n.id, 0]));
  const preds = new Map(nodes.map((n) => [n.id, []]));
  for (const e of edges) if (!back.has(e)) { deg.set(e.to, deg.get(e.to) + 1); preds.get(e.to).push(e.from); }
  const queue = nodes.filter((n) => deg.get(n.id) === 0).map((n) => n.id);
  while (queue.length) {
    const id = queue.shift();
    for (const e of out.get(id)) {
      if (back.has(e)) continue;
      layer.set(e.to, Math.max(layer.get(e.to), layer.get(id) + 1));
      deg.set(e.to, deg.get(e.to) - 1);
      if (deg.get(e.to) === 0) queue.push(e.to);
    }
  }

  // 3. stack each layer; order it by the mean position of the predecessors (fewer crossings)
  const count = nodes.length ? Math.max(...layer.values()) + 1 : 0;
  const layers = Array.from({ length: count }, () => []);
  nodes.forEach((n) => layers[layer.get(n.id)].push(n.id));
  const rank = new Map();
  const setRanks = (ids) => ids.forEach((id, i) => rank.set(id, i - (ids.length - 1) / 2));
  layers.forEach(setRanks);
  for (let l = 1; l < count; l++) {
    const keyed = layers[l].map((id, i) => {
      const p = preds.get(id);
      return [p.length ? p.reduce((a, q) => a + rank.get(q), 0) / p.length : rank.get(id), i, id];
    });
    keyed.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    layers[l] = keyed.map((k) => k[2]);
    setRanks(layers[l]);
  }

  // 4. coordinates; the viewBox fits the content
  const rows = Math.max(1, ...layers.map((ids) => ids.length));
  const innerH = rows * NODE_H + (rows - 1) * GAP_Y;
  const box = new Map();
  layers.forEach((ids, l) => {
    const y0 = PAD + (innerH - (ids.length * NODE_H + (ids.length - 1) * GAP_Y)) / 2;
    ids.forEach((id, i) => box.set(id, { x: PAD + l * (NODE_W + GAP_X), y: y0 + i * (NODE_H + GAP_Y) }));
  });
  const width = PAD * 2 + count * NODE_W + Math.max(0, count - 1) * GAP_X;
  const height = PAD * 2 + innerH + (back.size ? 36 : 0);
  return { nodes, byId, edges, back, layer, count, box, width, height, bottom: PAD + innerH };
}

// Control points of an edge's cubic Bézier. Forward edges: right side → left side. Back edges:
// left side → the target's right side, low on both, dipping just below them (next layer) or
// under the whole graph (farther back).
function edgePoints(a, b, isBack, span, bottom) {
  const r = (v) => Math.round(v * 10) / 10;
  if (!isBack) {
    const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
    const dx = Math.max(30, (x2 - x1) / 2);
    return [[x1, y1], [x1 + dx, y1], [x2 - dx, y2], [x2, y2]].map((p) => p.map(r));
  }
  const x1 = a.x, y1 = a.y + NODE_H * 0.75, x2 = b.x + NODE_W, y2 = b.y + NODE_H * 0.75;
  const c = span <= 1 ? Math.max(y1, y2) + 30 : bottom + 30;
  return [[x1, y1], [x1 - GAP_X * 0.4, c], [x2 + GAP_X * 0.6, c], [x2, y2]].map((p) => p.map(r));
}
// A topic's label without its case study's prefix ("movieflix.show_position" → "show_position").
function shortLabel(cs, n) {
  const label = String(n.label ?? n.id);
  if (n.kind !== 'topic') return label;
  for (const sep of ['.', '-']) if (label.startsWith(cs.name + sep)) return label.slice(cs.name.length + 1);
  return label;
}
// At most two lines, split at the space nearest the middle, each truncated.
function wrapLabel(label, max) {
  if (label.length <= max) return [label];
  const spaces = [...label.matchAll(/ /g)].map((m) => m.index);
  if (!spaces.length) return [truncate(label, max)];
  const cut = spaces.reduce((best, i) => (Math.abs(i - label.length / 2) < Math.abs(best - label.length / 2) ? i : best));
  return [truncate(label.slice(0, cut), max), truncate(label.slice(cut + 1), max)];
}
function cylinderPath(w, h, ry) {
  return `M0,${ry} A${w / 2},${ry} 0 0 1 ${w},${ry} V${h - ry} A${w / 2},${ry} 0 0 1 0,${h - ry} Z`;
}

/* ============================= graph drawing ============================= */

let svgSeq = 0;

// Draws a case study's graph once; returns {svg, update(csSnapshot)} which only changes text,
// classes and attributes. `onNodeClick(node, g)` makes topic and service nodes clickable.
function drawGraph(cs, onNodeClick) {
  const L = layoutGraph(cs.graph);
  const id = `graph${++svgSeq}`;
  const svg = s('svg', {
    // natural size ×1.2 at most (CSS max-width: 100% scales it down, keeping its ratio)
    class: 'graph', viewBox: `0 0 ${L.width} ${L.height}`, width: L.width * 1.2, height: L.height * 1.2, role: 'img',
    'aria-label': `architecture of ${cs.title || cs.name}`,
  });
  const marker = (mid, cls) => s('marker', {
    id: mid, class: cls, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto',
  }, s('path', { d: 'M0,0 L10,5 L0,10 z' }));
  svg.append(s('defs', {}, marker(`${id}-a`, 'arrow'), marker(`${id}-lag`, 'arrow lagging')));
  const edgeLayer = s('g', { class: 'edges' }), nodeLayer = s('g', { class: 'nodes' }), labelLayer = s('g', { class: 'labels' });
  svg.append(edgeLayer, nodeLayer, labelLayer);
  const refs = { rates: [], dlqs: [], lags: [], services: [] };

  for (const e of L.edges) {
    const span = L.layer.get(e.from) - L.layer.get(e.to);
    const p = edgePoints(L.box.get(e.from), L.box.get(e.to), L.back.has(e), span, L.bottom);
    const path = s('path', {
      class: L.back.has(e) ? 'edge back' : 'edge', d: `M${p[0]} C${p[1]} ${p[2]} ${p[3]}`, 'marker-end': `url(#${id}-a)`,
    });
    edgeLayer.append(path);
    const from = L.byId.get(e.from), to = L.byId.get(e.to);
    if (from.kind === 'topic' && from.topic && to.kind === 'service' && to.service) {
      // the label sits on the curve's midpoint (t = 0.5)
      const mx = (p[0][0] + 3 * p[1][0] + 3 * p[2][0] + p[3][0]) / 8;
      const my = (p[0][1] + 3 * p[1][1] + 3 * p[2][1] + p[3][1]) / 8;
      const text = s('text', { class: 'lag-label', x: mx, y: my - 5, 'text-anchor': 'middle', 'data-lag': `${from.topic}|${to.service}` });
      labelLayer.append(text);
      refs.lags.push({ topic: from.topic, service: to.service, path, text, hot: false });
    }
  }

  for (const n of L.nodes) {
    const b = L.box.get(n.id);
    const label = String(n.label ?? n.id);
    const kind = ['topic', 'service', 'external'].includes(n.kind) ? n.kind : 'external';
    const g = s('g', { class: `node ${kind}`, 'data-node': n.id, transform: `translate(${b.x},${b.y})` });
    const title = s('title', { text: `${label} (${n.kind})` });
    g.append(title);
    // topics: one line above their numbers; services and externals: up to two lines, centred
    const dot = kind === 'service' && n.service ? 8 : 0; // room for the health dot
    const lines = kind === 'topic' ? [truncate(shortLabel(cs, n), LABEL_MAX - 2)] : wrapLabel(label, LABEL_MAX - (dot ? 2 : 0));
    const y0 = kind === 'topic' ? 28 : NODE_H / 2 + 5 - (lines.length - 1) * 8;
    const labelText = s('text', { class: 'label', 'text-anchor': 'middle' },
      lines.map((line, i) => s('tspan', { x: NODE_W / 2 + dot, y: y0 + i * 16, text: line })));
    if (kind === 'topic') {
      g.append(s('path', { class: 'shape', d: cylinderPath(NODE_W, NODE_H, 7) }),
        s('path', { class: 'rim', d: `M0,7 A${NODE_W / 2},7 0 0 0 ${NODE_W},7` }), labelText);
      if (n.topic) {
        g.setAttribute('data-topic', n.topic);
        const rate = s('tspan', { 'data-topic-rate': n.topic, text: '–' });
        const stats = s('text', { class: 'stats', x: NODE_W / 2, y: 45, 'text-anchor': 'middle' }, rate, ' rec/s');
        refs.rates.push({ topic: n.topic, el: rate });
        const info = topicInfo(cs, n.topic);
        if (info && info.dlq) {
          const count = s('tspan', { 'data-dlq-count': n.topic, text: '–' });
          const wrap = s('tspan', { class: 'dlq' }, ' · DLQ ', count);
          stats.append(wrap);
          refs.dlqs.push({ topic: n.topic, el: count, wrap });
        }
        g.append(stats);
      }
    } else {
      g.append(s('rect', { class: 'shape', width: NODE_W, height: NODE_H, rx: kind === 'service' ? 12 : 6 }), labelText);
      if (kind === 'service' && n.service) {
        g.setAttribute('data-service', n.service);
        g.append(s('circle', { class: 'status', cx: 14, cy: NODE_H / 2, r: 5 }));
        refs.services.push({ service: n.service, g, title, label });
      }
    }
    const clickable = onNodeClick && ((kind === 'topic' && n.topic) || (kind === 'service' && n.service));
    if (clickable) {
      g.classList.add('clickable');
      setAttrs(g, { tabindex: 0, role: 'button' });
      g.addEventListener('click', () => onNodeClick(n, g));
      g.addEventListener('keydown', (ev) => {
        if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); onNodeClick(n, g); }
      });
    }
    nodeLayer.append(g);
  }

  function update(csSnap) {
    const topics = csSnap && csSnap.topics && typeof csSnap.topics === 'object' ? csSnap.topics : {};
    const groups = csSnap && Array.isArray(csSnap.groups) ? csSnap.groups : [];
    const services = csSnap && csSnap.services && typeof csSnap.services === 'object' ? csSnap.services : {};
    for (const r of refs.rates) setText(r.el, fmt1(topics[r.topic] && topics[r.topic].rate));
    for (const d of refs.dlqs) {
      const v = topics[d.topic] && topics[d.topic].dlq_records;
      setText(d.el, fmtInt(v));
      d.wrap.classList.toggle('nonzero', isNum(v) && v > 0);
    }
    for (const l of refs.lags) {
      const gs = groups.filter((g) => g && g.topic === l.topic && g.service === l.service);
      const lag = gs.reduce((a, g) => a + (isNum(g.lag) ? g.lag : 0), 0);
      const secs = Math.max(0, ...gs.map((g) => (isNum(g.lag_seconds) ? g.lag_seconds : 0)));
      setText(l.text, gs.length ? `lag ${lag} · ${secs.toFixed(1)} s` : '');
      const hot = lag > 0;
      if (hot !== l.hot) {
        l.hot = hot;
        l.path.classList.toggle('lagging', hot);
        l.text.classList.toggle('lagging', hot);
        l.path.setAttribute('marker-end', `url(#${id}-${hot ? 'lag' : 'a'})`);
      }
    }
    for (const sv of refs.services) {
      const st = services[sv.service];
      const health = !st || typeof st.healthy !== 'boolean' ? 'unknown' : st.healthy ? 'healthy' : 'unhealthy';
      if (sv.g.getAttribute('data-health') !== health) {
        sv.g.setAttribute('data-health', health);
        sv.g.classList.remove('healthy', 'unhealthy', 'unknown');
        sv.g.classList.add(health);
        setText(sv.title, `${sv.label} (${sv.service}): ${health}`);
      }
    }
  }
  if (!L.nodes.length) return { svg: h('p', { class: 'muted', text: 'No graph for this case study.' }), update, layers: 0 };
  return { svg, update, layers: L.count };
}

/* =============================== overview ================================ */

async function loadList() {
  const r = await api('/api/case-studies');
  if (r.ok && Array.isArray(r.data)) state.list = r.data.filter((cs) => cs && typeof cs.name === 'string');
  return r.ok ? null : r.error || 'unexpected answer';
}

async function renderOverview(token) {
  const app = document.getElementById('app');
  document.title = 'Kafka case studies — live';
  if (!state.list) {
    app.replaceChildren(h('p', { class: 'muted', text: 'Loading case studies…' }));
    const error = await loadList();
    if (token !== routeSeq) return;
    if (!state.list) {
      const retry = h('button', { type: 'button', text: 'Retry' });
      retry.addEventListener('click', () => route());
      app.replaceChildren(h('p', { class: 'error', text: `Could not load the case studies: ${error}` }), retry);
      return;
    }
  }
  const graphs = [];
  const grid = h('div', { class: 'tiles' });
  for (const cs of state.list) {
    const graph = drawGraph(cs, null);
    graphs.push({ name: cs.name, graph });
    grid.append(h('a', { class: graph.layers > 4 ? 'tile wide' : 'tile', href: `#/${enc(cs.name)}`, 'data-case-study': cs.name },
      h('h2', { text: cs.title || cs.name }),
      h('p', { class: 'summary', text: cs.summary || '' }),
      h('div', { class: 'graph-wrap' }, graph.svg)));
  }
  app.replaceChildren(
    h('p', { class: 'intro', text: `${state.list.length} case studies, live. Click one to open it.` }), grid);
  current = {
    update: (snap) => graphs.forEach(({ name, graph }) => graph.update(csSnapshot(snap, name))),
    dispose() {},
  };
  applySnapshot();
}

/* ============================ case-study page ============================ */

async function renderCase(name, token) {
  const app = document.getElementById('app');
  app.replaceChildren(h('p', { class: 'muted', text: 'Loading…' }));
  const r = await api(csPath(name));
  if (token !== routeSeq) return;
  if (!r.ok || !r.data || typeof r.data !== 'object') {
    app.replaceChildren(h('p', { class: 'error', text: `Case study “${name}”: ${r.error || 'unexpected answer'}` }),
      h('a', { href: '#/', text: '← all case studies' }));
    return;
  }
  const cs = r.data;
  cs.name = typeof cs.name === 'string' ? cs.name : name;
  document.title = `${cs.title || cs.name} — Kafka case studies`;

  const aside = h('aside', { class: 'side-panel', id: 'panel' });
  const panel = makePanel(aside);
  let selected = null;
  const select = (node, g) => {
    if (selected) selected.classList.remove('selected');
    selected = g;
    g.classList.add('selected');
    if (node.kind === 'topic') panel.open(`Topic ${node.topic}`, (body) => topicPanel(cs, node.topic, body));
    else panel.open(`Service ${node.service}`, (body) => servicePanel(cs, node.service, body));
  };
  panel.onClose = () => { if (selected) selected.classList.remove('selected'); selected = null; };
  const graph = drawGraph(cs, select);
  const ctl = controls(cs);
  const viewEl = h('div', { id: 'view' });
  const renderView = makeViewRenderer(viewEl);
  const apiLink = typeof cs.api === 'string' && /^https?:\/\//.test(cs.api)
    ? h('a', { href: cs.api, target: '_blank', rel: 'noopener', text: cs.api }) : h('span', { class: 'muted', text: 'none' });

  app.replaceChildren(h('div', { class: 'case-page', 'data-page': cs.name },
    h('header', { class: 'case-head' },
      h('a', { class: 'back', href: '#/', text: '← all case studies' }),
      h('h1', { text: cs.title || cs.name }),
      h('p', { class: 'summary', text: cs.summary || '' }),
      h('p', { class: 'api-link' }, 'Its API: ', apiLink)),
    h('div', { class: 'case-body' },
      h('section', { class: 'card graph-card' },
        h('p', { class: 'hint muted', text: 'Click a topic or a service for details.' }), graph.svg),
      h('div', { class: 'case-main' },
        ctl.el,
        h('section', { class: 'card' }, h('h2', { text: 'Interactive queries' }), queryForms(cs)),
        h('section', { class: 'card' }, h('h2', { text: 'Live view' }), viewEl)),
      aside)));
  current = {
    update(snap) {
      const csSnap = csSnapshot(snap, cs.name);
      graph.update(csSnap);
      ctl.update(csSnap);
      renderView(csSnap && csSnap.view, true);
    },
    dispose: () => panel.close(),
  };
  applySnapshot();
}

// The side panel: one thing at a time; `build(body)` returns a cleanup (stops its timer).
function makePanel(aside) {
  let cleanup = null;
  const placeholder = () => aside.replaceChildren(
    h('p', { class: 'muted', text: 'Click a topic for its records, or a service for its metrics.' }));
  const panel = {
    onClose: null,
    open(title, build) {
      panel.close(true);
      const close = h('button', { type: 'button', class: 'close', 'aria-label': 'close', text: '×' });
      close.addEventListener('click', () => panel.close());
      const body = h('div', { class: 'panel-body' });
      aside.replaceChildren(h('div', { class: 'panel-head' }, h('h2', { text: title }), close), body);
      aside.classList.add('open');
      cleanup = build(body);
    },
    close(reopening) {
      if (cleanup) cleanup();
      cleanup = null;
      if (reopening) return;
      aside.classList.remove('open');
      placeholder();
      if (panel.onClose) panel.onClose();
    },
  };
  placeholder();
  return panel;
}

// Runs `fn` now and every `ms` while the panel is open; skips a tick while one is in flight.
function poll(fn, ms) {
  let busy = false, stopped = false;
  const run = async () => {
    if (busy || stopped) return;
    busy = true;
    try { await fn(); } catch (err) { console.warn(err); } finally { busy = false; }
  };
  run();
  const timer = setInterval(run, ms);
  return { stop() { stopped = true; clearInterval(timer); }, isStopped: () => stopped };
}

/* ============================== topic panel ============================== */

function topicPanel(cs, topic, body) {
  const dlq = (topicInfo(cs, topic) || {}).dlq || null;
  let seq = 0;
  let badFilter = false; // after a 400, wait for the filters to change instead of asking again
  const key = h('input', { name: 'key', type: 'search', placeholder: 'exact key', autocomplete: 'off' });
  const contains = h('input', { name: 'contains', type: 'search', placeholder: 'in key or value', autocomplete: 'off' });
  const partition = h('input', { name: 'partition', type: 'number', min: 0, placeholder: 'all', autocomplete: 'off' });
  const filters = h('form', { class: 'filters' },
    h('label', {}, 'key ', key), h('label', {}, 'contains ', contains), h('label', {}, 'partition ', partition));
  const dlqToggle = dlq ? h('input', { type: 'checkbox', name: 'dlq' }) : null;
  const malformed = h('button', { type: 'button', 'data-malformed': topic, text: 'Send a malformed record' });
  const malformedResult = h('span', { class: 'malformed-result', role: 'status' });
  const status = h('p', { class: 'panel-status muted' });
  const error = h('p', { class: 'panel-error error', role: 'alert' });
  const tbody = h('tbody');
  const table = h('table', { class: 'records' },
    h('thead', {}, h('tr', {}, ['partition', 'offset', 'time', 'key', 'headers', 'value'].map((c) => h('th', { text: c })))),
    tbody);
  body.append(filters,
    dlqToggle ? h('label', { class: 'toggle' }, dlqToggle, ` show its dead letters (${dlq})`) : null,
    h('div', { class: 'actions' }, malformed, malformedResult),
    status, error, h('div', { class: 'table-wrap' }, table));

  async function refresh(auto) {
    if (auto === true && badFilter) return;
    const my = ++seq;
    const shown = dlqToggle && dlqToggle.checked ? dlq : topic;
    const qs = new URLSearchParams({ limit: '50' });
    if (key.value !== '') qs.set('key', key.value);
    if (contains.value !== '') qs.set('contains', contains.value);
    if (partition.value !== '') qs.set('partition', partition.value);
    const r = await api(`${csPath(cs.name)}/topics/${enc(shown)}/records?${qs}`);
    if (my !== seq || poller.isStopped()) return; // a newer request or a closed panel
    badFilter = r.status === 400;
    if (!r.ok) {
      setText(error, r.error);
      tbody.replaceChildren();
      setText(status, '');
      return;
    }
    setText(error, '');
    const records = r.data && Array.isArray(r.data.records) ? r.data.records : [];
    tbody.replaceChildren(...records.filter((rec) => rec && typeof rec === 'object').map(recordRow));
    setText(status, `${shown}: ${records.length} newest records · updated ${fmtTime(Date.now())}`);
  }
  const poller = poll(() => refresh(true), 2000);
  const refilter = debounce(() => refresh(), 300);
  filters.addEventListener('submit', (e) => { e.preventDefault(); refresh(); });
  [key, contains, partition].forEach((i) => i.addEventListener('input', refilter));
  if (dlqToggle) dlqToggle.addEventListener('change', () => refresh());

  malformed.addEventListener('click', async () => {
    malformed.disabled = true;
    setText(malformedResult, 'sending…');
    malformedResult.classList.remove('error');
    const r = await api(`${csPath(cs.name)}/topics/${enc(topic)}/malformed`, { method: 'POST' });
    malformed.disabled = false;
    if (r.ok) {
      const d = r.data || {};
      setText(malformedResult, `sent to ${d.topic ?? topic}: partition ${cellText(d.partition)}, offset ${cellText(d.offset)}`);
    } else {
      setText(malformedResult, r.error);
      malformedResult.classList.add('error');
    }
    if (!poller.isStopped()) refresh();
  });
  return () => poller.stop();
}

function recordRow(rec) {
  const headers = rec.headers && typeof rec.headers === 'object' && !Array.isArray(rec.headers)
    ? Object.entries(rec.headers).map(([k, v]) => `${k}=${cellText(v)}`).join('; ')
    : cellText(rec.headers);
  const value = compactJson(rec.value);
  return h('tr', { 'data-record': '', 'data-offset': cellText(rec.offset), 'data-partition': cellText(rec.partition) },
    h('td', { class: 'num', text: cellText(rec.partition) }),
    h('td', { class: 'num', text: cellText(rec.offset) }),
    h('td', { text: fmtTime(rec.timestamp_ms) }),
    h('td', { text: cellText(rec.key) }),
    h('td', { class: 'headers', text: headers }),
    h('td', { class: 'value', title: value.length > 120 ? value : null, text: value }));
}

/* ============================= service panel ============================= */

function servicePanel(cs, service, body) {
  const status = h('p', { class: 'panel-status muted' });
  const error = h('p', { class: 'panel-error error', role: 'alert' });
  const chartsEl = h('div', { class: 'charts' });
  // Its state stores (RocksDB, one per task, restored from a changelog topic): the queries
  // below read them.
  const stores = cs.stores && Array.isArray(cs.stores[service]) ? cs.stores[service] : [];
  const storesEl = h('p', { class: 'stores', 'data-stores': service },
    stores.length
      ? [h('span', { class: 'muted', text: 'State stores: ' }), ...stores.map((st) => h('code', { text: String(st) + ' ' }))]
      : [h('span', { class: 'muted', text: 'No state store.' })]);
  body.append(storesEl, status, error, chartsEl);
  const charts = new Map(); // series name -> chart

  const poller = poll(async () => {
    const r = await api(`${csPath(cs.name)}/services/${enc(service)}/metrics`);
    if (poller.isStopped()) return;
    if (!r.ok) { setText(error, r.error); return; }
    setText(error, '');
    const series = r.data && Array.isArray(r.data.series) ? r.data.series.filter((x) => x && x.name != null) : [];
    const seen = new Set();
    for (const sr of series) {
      const name = String(sr.name);
      seen.add(name);
      let chart = charts.get(name);
      if (!chart) { chart = makeChart(name); charts.set(name, chart); chartsEl.append(chart.el); }
      chart.update(sr);
    }
    for (const [name, chart] of charts) if (!seen.has(name)) { chart.el.remove(); charts.delete(name); }
    setText(status, series.length ? `last 5 minutes · updated ${fmtTime(Date.now())}` : 'no metrics yet');
  }, 2000);
  return () => poller.stop();
}

// A small line chart: name, last value with its unit, a polyline over the points.
function makeChart(name) {
  const W = 300, H = 64;
  const last = h('span', { class: 'chart-last' });
  const range = h('span', { class: 'chart-range muted' });
  const line = s('polyline', { class: 'chart-line', points: '', 'vector-effect': 'non-scaling-stroke' });
  const base = s('line', { class: 'chart-base', x1: 0, x2: W, y1: H - 2, y2: H - 2, 'vector-effect': 'non-scaling-stroke' });
  const el = h('figure', { class: 'chart', 'data-series': name },
    h('figcaption', {}, h('span', { class: 'chart-name', text: name }), last),
    s('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none' }, base, line),
    range);
  function update(sr) {
    const pts = (Array.isArray(sr.points) ? sr.points : [])
      .filter((p) => Array.isArray(p) && isNum(p[0]) && isNum(p[1]));
    const unit = sr.unit ? ` ${sr.unit}` : '';
    setText(last, pts.length ? `${fmtNum(pts[pts.length - 1][1])}${unit}` : '–');
    if (!pts.length) { setAttr(line, 'points', ''); setText(range, ''); return; }
    const t0 = pts[0][0], t1 = pts[pts.length - 1][0];
    const lo = Math.min(0, ...pts.map((p) => p[1])), hi = Math.max(...pts.map((p) => p[1]));
    const span = hi - lo || 1, dt = t1 - t0 || 1;
    const xy = pts.map(([t, v]) => `${(((t - t0) / dt) * W).toFixed(1)},${(H - 2 - ((v - lo) / span) * (H - 6)).toFixed(1)}`);
    setAttr(line, 'points', xy.join(' '));
    setText(range, `max ${fmtNum(hi)}${unit} · ${Math.round(dt / 1000)} s shown`);
  }
  return { el, update };
}

/* ========================== interactive queries ========================== */

function queryForms(cs) {
  const queries = Array.isArray(cs.queries) ? cs.queries.filter((q) => q && q.name != null) : [];
  const wrap = h('div', { class: 'queries' });
  if (!queries.length) wrap.append(h('p', { class: 'muted', text: 'This case study has no interactive queries.' }));
  for (const q of queries) {
    const params = Array.isArray(q.params) ? q.params.filter((p) => p && p.name != null) : [];
    const inputs = params.map((p) => h('input', { name: p.name, value: p.example ?? '', autocomplete: 'off' }));
    const result = h('pre', { class: 'query-result' });
    const form = h('form', { class: 'query', 'data-query': q.name },
      h('div', { class: 'query-head' }, h('strong', { text: q.name }), ' ', h('code', { text: q.path || '' })),
      h('div', { class: 'query-params' },
        params.map((p, i) => h('label', {}, `${p.name} `, inputs[i])),
        h('button', { type: 'submit', text: 'Run' })),
      result);
    form.addEventListener('submit', async (e) => {
      e.preventDefault();
      let path = String(q.path || '');
      params.forEach((p, i) => { path = path.split(`{${p.name}}`).join(enc(inputs[i].value)); });
      setText(result, 'running…');
      result.classList.remove('error');
      const r = await api(`${csPath(cs.name)}/query?path=${enc(path)}`);
      if (r.ok) {
        const d = r.data || {};
        const bodyText = typeof d.body === 'string' ? d.body : JSON.stringify(d.body, null, 2) ?? '';
        setText(result, `status ${cellText(d.status)}\n${bodyText}`);
        result.classList.toggle('error', !(isNum(d.status) && d.status < 400));
      } else {
        setText(result, `error: ${r.error}`);
        result.classList.add('error');
      }
    });
    wrap.append(form);
  }
  return wrap;
}

/* =============================== controls ================================ */

// The knob and the spare instance; returns {el, update(csSnapshot)}.
function controls(cs) {
  const el = h('section', { class: 'card controls', id: 'controls' }, h('h2', { text: 'Controls' }));
  const knob = cs.knob && typeof cs.knob === 'object' ? cs.knob : null;
  let knobNow = null, spareState = null;
  const show = (target, r, okText) => {
    setText(target, r.ok ? okText(r.data || {}) : r.error);
    target.classList.toggle('error', !r.ok);
  };
  if (knob) {
    const label = knob.label || 'knob';
    const input = h('input', { id: 'knob', type: 'number', min: knob.min, max: knob.max, step: 'any', value: knob.value });
    const apply = h('button', { id: 'knob-apply', type: 'button', text: 'Apply' });
    const result = h('span', { id: 'knob-result', class: 'result', role: 'status' });
    knobNow = h('span', { id: 'knob-current', class: 'muted' });
    const send = async () => {
      const value = Number(input.value);
      if (input.value.trim() === '' || !Number.isFinite(value)) {
        show(result, { ok: false, error: 'enter a number' });
        return;
      }
      apply.disabled = true;
      const r = await api(`${csPath(cs.name)}/knob`, { method: 'POST', body: { value } });
      apply.disabled = false;
      show(result, r, (d) => `${label} set to ${cellText(d.value ?? value)}`);
    };
    apply.addEventListener('click', send);
    input.addEventListener('keydown', (e) => { if (e.key === 'Enter') { e.preventDefault(); send(); } });
    el.append(h('div', { class: 'control' },
      h('label', { for: 'knob' }, `${label} (${cellText(knob.min)}–${cellText(knob.max)}) `), input, apply, knobNow, result));
  }
  if (cs.spare && typeof cs.spare === 'object' && cs.spare.service) {
    const service = String(cs.spare.service);
    spareState = h('span', { id: 'spare-state', class: 'spare-state', text: 'state unknown' });
    const result = h('span', { id: 'spare-result', class: 'result', role: 'status' });
    const button = (what) => {
      const b = h('button', { id: `spare-${what}`, type: 'button', text: what === 'stop' ? 'Stop it' : 'Start it' });
      b.addEventListener('click', async () => {
        b.disabled = true;
        const r = await api(`${csPath(cs.name)}/spare/${what}`, { method: 'POST' });
        b.disabled = false;
        show(result, r, (d) => `${d.service ?? service}: ${d.running ? 'running' : 'stopped'}`);
      });
      return b;
    };
    el.append(h('div', { class: 'control spare' },
      h('p', {}, h('strong', { text: service }), ' runs a second instance here: stop it and its partitions move to the other one; start it and they are shared again.'),
      h('p', {}, 'Second instance: ', spareState),
      h('div', { class: 'actions' }, button('stop'), button('start'), result)));
  }
  if (!knob && !spareState) el.append(h('p', { class: 'muted', text: 'Nothing to control in this case study.' }));

  function update(csSnap) {
    if (knobNow) setText(knobNow, csSnap && isNum(csSnap.knob) ? `now ${fmtNum(csSnap.knob)}` : '');
    if (spareState) {
      const sp = csSnap && csSnap.spare && typeof csSnap.spare === 'object' ? csSnap.spare : null;
      const parts = sp && Array.isArray(sp.partitions) ? sp.partitions : [];
      const text = !sp ? 'state unknown' : sp.running
        ? `running · ${parts.length ? `partitions ${parts.map(cellText).join(', ')}` : 'no partitions assigned'}`
        : 'stopped';
      setText(spareState, text);
      spareState.classList.toggle('stopped', !!sp && !sp.running);
    }
  }
  return { el, update };
}

/* ================================= view ================================== */

// The case study's own view (title + table per entry), patched in place every snapshot.
function makeViewRenderer(container) {
  const sections = [];
  const empty = h('p', { class: 'muted', text: 'Waiting for the first snapshot…' });
  container.append(empty);
  return (view, live) => {
    const list = Array.isArray(view) ? view.filter((v) => v && typeof v === 'object') : [];
    empty.hidden = list.length > 0;
    if (live && !list.length) setText(empty, 'Nothing to show yet.');
    while (sections.length > list.length) sections.pop().el.remove();
    list.forEach((v, i) => {
      let sec = sections[i];
      if (!sec) {
        const title = h('h3'), thead = h('thead'), tbody = h('tbody');
        const map = s('svg', { class: 'view-map', role: 'img', preserveAspectRatio: 'xMidYMid meet' });
        const key = h('p', { class: 'map-key muted' });
        const mapWrap = h('div', { class: 'map-wrap' }, map, key);
        const table = h('div', { class: 'table-wrap' }, h('table', { class: 'view-table' }, thead, tbody));
        sec = { title, thead, tbody, map, key, mapWrap, table, cols: null, el: h('div', { class: 'view-entry' }, title, mapWrap, table) };
        sections.push(sec);
        container.append(sec.el);
      }
      setText(sec.title, v.title ?? '');
      sec.mapWrap.hidden = !(v.map && typeof v.map === 'object');
      if (!sec.mapWrap.hidden) drawMap(sec.map, sec.key, v.map, v.title ?? '');
      sec.table.hidden = !(Array.isArray(v.columns) && v.columns.length);
      const cols = Array.isArray(v.columns) ? v.columns.map(cellText) : [];
      if (sec.cols !== JSON.stringify(cols)) {
        sec.cols = JSON.stringify(cols);
        sec.thead.replaceChildren(h('tr', {}, cols.map((c) => h('th', { text: c }))));
      }
      const rows = Array.isArray(v.rows) ? v.rows : [];
      const trs = sec.tbody.rows;
      while (trs.length > rows.length) sec.tbody.lastElementChild.remove();
      rows.forEach((row, r) => {
        const cells = Array.isArray(row) ? row : [row];
        let tr = trs[r];
        if (!tr) { tr = h('tr'); sec.tbody.append(tr); }
        const n = Math.max(cols.length, cells.length);
        while (tr.cells.length > n) tr.lastElementChild.remove();
        while (tr.cells.length < n) tr.append(h('td'));
        for (let c = 0; c < n; c++) setText(tr.cells[c], cellText(cells[c]));
      });
    });
  };
}

// Colours of a map's dot and line kinds, in the order the map lists them.
const KIND_COLOURS = ['#2e7d32', '#ef6c00', '#1565c0', '#9e9e9e', '#6a1b9a', '#c62828'];

// Draws a view's map (shared::live::Map: [lat, lon] degrees) into `svg`, fitted to what it
// contains; `key` gets the legend. Redrawn whole at every snapshot (a few hundred shapes).
function drawMap(svg, key, map, title) {
  const arr = (v) => (Array.isArray(v) ? v : []);
  const isPoint = (p) => Array.isArray(p) && isNum(p[0]) && isNum(p[1]);
  const areas = arr(map.areas).filter((a) => a && arr(a.boundary).filter(isPoint).length >= 3);
  const lines = arr(map.lines).filter((l) => l && isPoint(l.from) && isPoint(l.to));
  const dots = arr(map.dots).filter((d) => d && isPoint(d.at));
  const points = [...areas.flatMap((a) => arr(a.boundary).filter(isPoint)), ...lines.flatMap((l) => [l.from, l.to]), ...dots.map((d) => d.at)];
  const kinds = arr(map.kinds).filter((k) => Array.isArray(k) && k.length >= 2);
  const colour = (kind) => {
    const i = kinds.findIndex((k) => k[0] === kind);
    return KIND_COLOURS[(i < 0 ? kinds.length : i) % KIND_COLOURS.length];
  };
  setAttr(svg, 'aria-label', `map: ${title}`);
  if (!points.length) {
    svg.replaceChildren();
    setAttr(svg, 'viewBox', '0 0 100 10');
    setText(key, 'Nothing on the map yet.');
    return;
  }
  const lats = points.map((p) => p[0]), lons = points.map((p) => p[1]);
  const [minLat, maxLat, minLon, maxLon] = [Math.min(...lats), Math.max(...lats), Math.min(...lons), Math.max(...lons)];
  const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
  const scale = 1000 / Math.max((maxLon - minLon) * k, maxLat - minLat, 1e-6);
  const pad = 10;
  const x = (p) => (pad + (p[1] - minLon) * k * scale).toFixed(1);
  const y = (p) => (pad + (maxLat - p[0]) * scale).toFixed(1);
  const width = (maxLon - minLon) * k * scale + 2 * pad, height = (maxLat - minLat) * scale + 2 * pad;
  setAttr(svg, 'viewBox', `0 0 ${width.toFixed(0)} ${height.toFixed(0)}`);
  const r = Math.max(width, height) / 220;
  svg.replaceChildren(
    s('g', { class: 'map-areas' }, areas.map((a) => {
      const level = isNum(a.level) ? Math.min(1, Math.max(0, a.level)) : 0;
      return s('polygon', {
        points: arr(a.boundary).filter(isPoint).map((p) => `${x(p)},${y(p)}`).join(' '),
        fill: `hsl(${(120 - 120 * level).toFixed(0)}, 70%, 45%)`,
        'fill-opacity': (0.15 + 0.45 * level).toFixed(2),
        class: 'map-area',
      }, s('title', { text: cellText(a.label) }));
    })),
    s('g', { class: 'map-lines' }, lines.map((l) => s('line', {
      x1: x(l.from), y1: y(l.from), x2: x(l.to), y2: y(l.to), stroke: colour(l.kind), 'stroke-width': (r / 2).toFixed(2), class: 'map-line',
    }))),
    s('g', { class: 'map-dots' }, dots.map((d) => s('circle', {
      cx: x(d.at), cy: y(d.at), r: r.toFixed(2), fill: colour(d.kind), class: 'map-dot',
    }, s('title', { text: cellText(d.label) })))),
  );
  const legend = arr(map.legend).map(cellText);
  key.replaceChildren(
    legend.length === 2 ? h('span', { class: 'map-scale' }, h('span', { text: legend[0] }), h('span', { class: 'map-gradient' }), h('span', { text: legend[1] })) : '',
    ...kinds.map((kd) => h('span', { class: 'map-kind' }, h('span', { class: 'map-swatch', style: `background:${colour(kd[0])}` }), cellText(kd[1]))),
  );
}

/* ================================ router ================================= */

let routeSeq = 0;

function route() {
  const token = ++routeSeq;
  if (current) { try { current.dispose(); } catch (err) { console.warn(err); } }
  current = null;
  const m = /^#\/(.*?)\/?$/.exec(location.hash);
  let name = m ? m[1] : '';
  try { name = decodeURIComponent(name); } catch { /* keep it raw */ }
  window.scrollTo(0, 0);
  const page = name ? renderCase(name, token) : renderOverview(token);
  page.catch((err) => console.warn('page not rendered:', err));
}

window.addEventListener('hashchange', route);
setInterval(tickLive, 500);
connect();
route();
