/**
 * The live dashboard (GET / on the admin listener): one self-contained page, no build step. It reads
 * GET /events, a server-sent stream of the same snapshot as /stats, through fetch (so that it can send
 * the admin token: EventSource cannot), and redraws on every snapshot. Rates and p99 are computed in
 * the page from successive snapshots and kept for the last five minutes.
 *
 * Elements carry data-* attributes naming what they show, for the browser test and for anyone
 * scraping the page.
 */
export const DASHBOARD_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>muxgate</title>
<style>
  :root { --bg: #0f1419; --panel: #171d24; --line: #26303b; --text: #d8dee6; --dim: #8593a3;
          --ok: #3fb27f; --warn: #e0a526; --bad: #e5534b; --accent: #4c9be8; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; background: var(--bg); color: var(--text); }
  header { display: flex; gap: 24px; align-items: baseline; padding: 14px 20px; border-bottom: 1px solid var(--line); }
  header h1 { font-size: 18px; margin: 0; }
  header .meta { color: var(--dim); }
  #status.down { color: var(--bad); }
  main { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 16px; padding: 16px 20px; }
  section { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
  section h2 { font-size: 13px; text-transform: uppercase; letter-spacing: .06em; color: var(--dim); margin: 0 0 10px; }
  table { width: 100%; border-collapse: collapse; }
  td, th { padding: 4px 6px; text-align: left; border-bottom: 1px solid var(--line); white-space: nowrap; }
  th { color: var(--dim); font-weight: 500; font-size: 12px; }
  td.n { text-align: right; font-variant-numeric: tabular-nums; }
  .bar { position: relative; height: 16px; background: #0b0f13; border-radius: 4px; overflow: hidden; min-width: 140px; }
  .bar > i { position: absolute; inset: 0 auto 0 0; background: var(--ok); transition: width .3s; }
  .bar.warn > i { background: var(--warn); }
  .bar.bad > i { background: var(--bad); }
  .bar > span { position: relative; padding-left: 6px; font-size: 12px; }
  .charts { display: grid; grid-template-columns: repeat(3, 1fr); gap: 12px; }
  .chart .v { font-size: 20px; font-variant-numeric: tabular-nums; }
  .chart .k { color: var(--dim); font-size: 12px; }
  svg { width: 100%; height: 48px; display: block; }
  svg path { fill: none; stroke: var(--accent); stroke-width: 1.5; }
  .tag { display: inline-block; padding: 0 6px; border-radius: 4px; font-size: 12px; background: var(--line); }
  .tag.bad { background: var(--bad); color: #fff; }
  .tag.warn { background: var(--warn); color: #111; }
  .empty { color: var(--dim); }
</style>
</head>
<body>
<header>
  <h1>muxgate</h1>
  <span class="meta" id="meta">connecting…</span>
  <span class="meta" id="status"></span>
</header>
<main>
  <section style="grid-column: 1 / -1">
    <h2>Traffic, last 5 minutes</h2>
    <div class="charts">
      <div class="chart"><div class="k">requests / s</div><div class="v" data-figure="request_rate">–</div><svg data-chart="request_rate" viewBox="0 0 300 48" preserveAspectRatio="none"><path/></svg></div>
      <div class="chart"><div class="k">errors / s</div><div class="v" data-figure="error_rate">–</div><svg data-chart="error_rate" viewBox="0 0 300 48" preserveAspectRatio="none"><path/></svg></div>
      <div class="chart"><div class="k">p99 latency</div><div class="v" data-figure="p99">–</div><svg data-chart="p99" viewBox="0 0 300 48" preserveAspectRatio="none"><path/></svg></div>
    </div>
  </section>
  <section>
    <h2>Listeners (downstream)</h2>
    <table><thead><tr><th>listener</th><th>protocol</th><th>address</th><th class="n">connections</th><th>tunnels</th></tr></thead>
    <tbody id="listeners"></tbody></table>
  </section>
  <section>
    <h2>Port budgets (source → destination)</h2>
    <table><thead><tr><th>source → destination</th><th>used + cooling / ports</th><th class="n">free</th></tr></thead>
    <tbody id="budgets"></tbody></table>
  </section>
  <section style="grid-column: 1 / -1">
    <h2>Clusters (upstream)</h2>
    <table><thead><tr><th>cluster / endpoint</th><th>state</th><th>connections / max_connections</th><th class="n">HTTP/2 sessions</th><th class="n">streams</th><th class="n">pending</th><th class="n" title="requests in flight and TCP tunnels">in flight</th><th class="n">requests</th><th class="n">errors</th></tr></thead>
    <tbody id="clusters"></tbody></table>
  </section>
</main>
<script>
"use strict";
const HISTORY = 300;
const series = { request_rate: [], error_rate: [], p99: [] };
let last = null;

function token() {
  const m = /(?:^|[#&])token=([^&]+)/.exec(location.hash);
  if (m) sessionStorage.setItem('muxgate-token', decodeURIComponent(m[1]));
  return sessionStorage.getItem('muxgate-token');
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') e.className = v; else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return e;
}

function fmt(n) { return Number(n).toLocaleString('en-US'); }

function bar(part, whole, level, label, attrs) {
  const pct = whole > 0 ? Math.min(100, (100 * part) / whole) : 0;
  const b = el('div', { class: 'bar' + (level ? ' ' + level : ''), ...attrs });
  const fill = el('i');
  fill.style.width = pct.toFixed(1) + '%';
  b.append(fill, el('span', {}, label));
  return b;
}

function sum(list, f) { let n = 0; for (const x of list) n += f(x); return n; }

/** p99 of the requests between two snapshots, from the bucket counts (upper bound of the bucket). */
function p99Between(prev, cur) {
  const counts = [];
  let total = 0;
  for (let i = 0; i < cur.listeners.length; i++) {
    const l = cur.listeners[i];
    const before = prev && prev.listeners.find((x) => x.name === l.name);
    l.request_duration.counts.forEach((c, j) => {
      const d = c - (before ? before.request_duration.counts[j] || 0 : 0);
      counts[j] = (counts[j] || 0) + Math.max(0, d);
      total += Math.max(0, d);
    });
  }
  if (total === 0) return null;
  const bounds = cur.listeners[0].request_duration.bounds_s;
  let seen = 0;
  for (let j = 0; j < counts.length; j++) {
    seen += counts[j] || 0;
    if (seen >= total * 0.99) return j < bounds.length ? bounds[j] * 1000 : Infinity;
  }
  return null;
}

function push(name, v) {
  const s = series[name];
  s.push(v);
  if (s.length > HISTORY) s.shift();
  const max = Math.max(1e-9, ...s.filter((x) => x !== null && isFinite(x)));
  const d = s.map((x, i) => (i === 0 ? 'M' : 'L') + (i * 300 / (HISTORY - 1)).toFixed(1) + ' ' + (46 - (44 * (x === null || !isFinite(x) ? 0 : x)) / max).toFixed(1)).join(' ');
  document.querySelector('svg[data-chart="' + name + '"] path').setAttribute('d', d);
}

function render(s) {
  const now = Date.now();
  const workers = s.workers ? ', ' + s.workers.length + ' workers' : '';
  document.getElementById('meta').textContent = 'pid ' + s.pid + workers + ' · up ' + s.uptime_s + ' s · rss ' + (s.memory.rss / 1048576).toFixed(1) + ' MiB';
  if (last) {
    const dt = (now - last.at) / 1000;
    const rate = (sum(s.listeners, (l) => l.requests) - sum(last.s.listeners, (l) => l.requests)) / dt;
    const errs = (sum(s.listeners, (l) => l.errors) - sum(last.s.listeners, (l) => l.errors)) / dt;
    const p99 = p99Between(last.s, s);
    push('request_rate', Math.max(0, rate));
    push('error_rate', Math.max(0, errs));
    push('p99', p99);
    document.querySelector('[data-figure="request_rate"]').textContent = fmt(Math.round(Math.max(0, rate)));
    document.querySelector('[data-figure="error_rate"]').textContent = fmt(Math.round(Math.max(0, errs) * 10) / 10);
    document.querySelector('[data-figure="p99"]').textContent = p99 === null ? '–' : isFinite(p99) ? (p99 < 10 ? p99.toFixed(1) : Math.round(p99)) + ' ms' : '> 60 s';
  }
  last = { s, at: now };

  const lt = document.getElementById('listeners');
  lt.replaceChildren(...s.listeners.map((l) => {
    const tunnels = Object.entries(l.tunnels_by_kind).filter(([, n]) => n > 0).map(([k, n]) => el('span', { class: 'tag', 'data-tunnel': k }, k + ' ' + fmt(n) + ' '));
    return el('tr', { 'data-listener': l.name },
      el('td', {}, l.name), el('td', {}, l.protocol + (l.tls ? ' + TLS' : '')), el('td', {}, l.address),
      el('td', { class: 'n', 'data-field': 'connections_open' }, fmt(l.connections_open)),
      el('td', {}, ...(tunnels.length ? tunnels : [el('span', { class: 'empty' }, 'none')])));
  }));

  const bt = document.getElementById('budgets');
  const budgets = s.ports.budgets;
  bt.replaceChildren(...(budgets.length ? budgets.map((b) => {
    const used = b.in_use + b.cooling;
    const level = b.free === 0 || b.used_ratio >= Math.max(0.95, b.warn_ratio) ? 'bad' : b.used_ratio >= b.warn_ratio ? 'warn' : '';
    return el('tr', { 'data-budget': b.source + '>' + b.destination },
      el('td', {}, b.source + ' → ' + b.destination),
      el('td', {}, bar(used, b.size, level, fmt(b.in_use) + ' + ' + fmt(b.cooling) + ' / ' + fmt(b.size) + ' (' + Math.round(100 * b.used_ratio) + '%)', { 'data-level': level || 'ok' })),
      el('td', { class: 'n' }, fmt(b.free)));
  }) : [el('tr', {}, el('td', { colspan: '3', class: 'empty' }, 'no upstream connection yet'))]));

  const ct = document.getElementById('clusters');
  const rows = [];
  for (const c of s.clusters) {
    rows.push(el('tr', { 'data-cluster': c.name }, el('td', { colspan: '9' }, el('b', {}, c.name), ' ', el('span', { class: 'empty' }, c.lb))));
    for (const e of c.endpoints) {
      const open = e.pool.open + (e.h2 ? e.h2.sessions : 0);
      const ratio = c.max_connections > 0 ? open / c.max_connections : 0;
      const failing = e.health_check && !e.health_check.healthy;
      const state = e.drained ? el('span', { class: 'tag warn' }, 'drained')
        : e.healthy ? el('span', { class: 'tag' }, 'healthy')
        : el('span', { class: 'tag bad', title: failing ? 'health check: ' + (e.health_check.last_error || '') : 'connect failures in a row' }, failing ? 'failing checks' : 'ejected');
      rows.push(el('tr', { 'data-endpoint': c.name + '/' + e.key },
        el('td', {}, '  ' + e.key), el('td', {}, state),
        el('td', {}, bar(open, c.max_connections, ratio >= 0.95 ? 'bad' : ratio >= 0.8 ? 'warn' : '', fmt(open) + ' / ' + fmt(c.max_connections), { 'data-field': 'connections' })),
        el('td', { class: 'n', 'data-field': 'h2_sessions' }, e.h2 ? fmt(e.h2.sessions) : '–'),
        el('td', { class: 'n', 'data-field': 'h2_streams' }, e.h2 ? fmt(e.h2.streams_active) : '–'),
        el('td', { class: 'n', 'data-field': 'pending' }, fmt(e.pool.pending + (e.h2 ? e.h2.pending : 0))),
        el('td', { class: 'n', 'data-field': 'active' }, fmt(e.active)),
        el('td', { class: 'n' }, fmt(e.requests)), el('td', { class: 'n' }, fmt(e.errors))));
    }
  }
  ct.replaceChildren(...rows);
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

async function follow() {
  const status = document.getElementById('status');
  for (;;) {
    try {
      const t = token();
      const r = await fetch('events', { headers: t ? { authorization: 'Bearer ' + t } : {} });
      if (r.status === 401) {
        status.textContent = 'this admin API needs a token: open this page as …/#token=<admin token>';
        status.className = 'down';
        return;
      }
      if (!r.ok || !r.body) throw new Error('status ' + r.status);
      status.textContent = 'live';
      status.className = '';
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\\n\\n')) !== -1) {
          const event = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const data = event.split('\\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\\n');
          if (data) render(JSON.parse(data));
        }
      }
    } catch (err) {
      status.textContent = 'disconnected (' + err.message + '), retrying';
      status.className = 'down';
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
follow();
</script>
</body>
</html>
`;
