// rnnkit's forecast report: draws the JSON of #report-data (see rnnkit/report.py for its schema).
// Plain DOM and SVG, no library, nothing fetched. Only the picked series is drawn and the table
// shows one page, so thousands of series stay quick.
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("report-data").textContent);
  const SERIES = DATA.series || [];
  const SVG_NS = "http://www.w3.org/2000/svg";
  const PAGE_ROWS = 25;
  const MODEL_COLOR = "#2563eb";
  const PALETTE = ["#ea580c", "#059669", "#9333ea", "#db2777", "#ca8a04", "#0891b2", "#65a30d"];
  const LABELS = {smape: "sMAPE", mase: "MASE", owa: "OWA", mae: "MAE", mse: "MSE", rmse: "RMSE",
    mape: "MAPE", rmsse: "RMSSE", coverage: "coverage", id: "series"};
  const PREFERRED = ["smape", "mase", "owa", "mae", "mse", "rmse"];
  const state = {pick: 0, order: [], sortKey: null, sortDir: 1, page: 0, hidden: new Set(), zoom: false};
  const $ = (id) => document.getElementById(id);

  // -- small helpers -----------------------------------------------------------------------------
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  function svg(tag, attrs, parent) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const k in attrs) e.setAttribute(k, attrs[k]);
    if (parent) parent.appendChild(e);
    return e;
  }

  function fmt(v) {
    if (v === null || v === undefined || Number.isNaN(v)) return "—";
    if (typeof v !== "number") return String(v);
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(2);
    return String(Number(v.toPrecision(4)));
  }

  const label = (key) => LABELS[key] || key;

  // ISO strings without a zone are read as UTC, so every reader sees the same hours.
  function parseT(t) {
    if (typeof t === "number") return t;
    let s = String(t).trim().replace(" ", "T");
    if (/T\d\d$/.test(s)) s += ":00";  // numpy's hourly "2016-07-01T05"
    if (s.includes("T") && !/(Z|[+-]\d\d:?\d\d)$/.test(s)) s += "Z";
    return Date.parse(s);
  }

  function metricKeys(rows) {
    const seen = new Set();
    for (const row of rows) for (const k in row || {}) seen.add(k);
    const rest = [...seen].filter((k) => !PREFERRED.includes(k)).sort();
    return PREFERRED.filter((k) => seen.has(k)).concat(rest);
  }

  const FORECASTS = (() => {
    const names = new Set();
    for (const s of SERIES) for (const k in s.forecasts || {}) if (k !== "model") names.add(k);
    return [...names];
  })();
  const COLORS = Object.fromEntries(FORECASTS.map((n, i) => [n, PALETTE[i % PALETTE.length]]));
  const IS_TIME = SERIES.some((s) => typeof ((s.history || {}).t || [])[0] === "string" ||
    typeof ((s.actual || {}).t || [])[0] === "string");
  const METRICS = metricKeys(SERIES.map((s) => s.metrics));

  // -- axes --------------------------------------------------------------------------------------
  function niceStep(raw) {
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const r = raw / mag;
    return (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10) * mag;
  }

  const MINUTE = 60e3, HOUR = 60 * MINUTE, DAY = 24 * HOUR;
  const TIME_STEPS = [MINUTE, 5 * MINUTE, 15 * MINUTE, 30 * MINUTE, HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR,
    12 * HOUR, DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY, 365 * DAY];

  function ticks(lo, hi, count, time, integer) {
    const span = hi - lo || 1;
    let step = time ? (TIME_STEPS.find((s) => span / s <= count) || 365 * DAY) : niceStep(span / count);
    if (integer) step = Math.max(1, Math.round(step));
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return {values: out, step};
  }

  function fmtTime(x, step) {
    const iso = new Date(x).toISOString();
    if (step === undefined) return iso.slice(0, 16).replace("T", " ");
    return step < DAY ? iso.slice(5, 16).replace("T", " ") : iso.slice(0, 10);
  }

  // -- the chart: lines [{key, label, color, dash, width, pts: [[x, y|null]]}], band, marker --------
  function chart(box, spec) {
    box.textContent = "";
    const W = Math.max(box.clientWidth || 0, 360), H = spec.height || 340;
    const m = {l: 60, r: 18, t: 14, b: 34};
    const lines = spec.lines.filter((l) => !state.hidden.has(l.key) && l.pts.length);
    const band = spec.band && !state.hidden.has(spec.band.key) ? spec.band : null;
    const xs = [], ys = [];
    for (const l of lines) for (const [x, y] of l.pts) { xs.push(x); if (y !== null) ys.push(y); }
    if (band) for (const [x, lo, hi] of band.pts) { xs.push(x); if (lo !== null) ys.push(lo, hi); }
    if (!ys.length) { box.appendChild(el("p", "nothing to draw", "muted")); return; }
    // a log axis only pays when the values span a decade or more (a loss that falls fast)
    const log = spec.logY && ys.every((y) => y > 0) && extent(ys)[1] > 10 * extent(ys)[0];
    const ty = log ? Math.log10 : (y) => y;
    let [x0, x1] = extent(xs), [y0, y1] = extent(ys.map(ty));
    if (x0 === x1) { x0 -= 1; x1 += 1; }
    const pad = (y1 - y0) * 0.06 || Math.abs(y0) * 0.1 || 1;
    y0 -= pad; y1 += pad;
    const sx = (x) => m.l + (x - x0) / (x1 - x0) * (W - m.l - m.r);
    const sy = (y) => H - m.b - (ty(y) - y0) / (y1 - y0) * (H - m.t - m.b);
    const root = svg("svg", {width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img"}, box);
    const marked = spec.marker !== undefined && spec.marker !== null;
    if (marked && spec.shade) {
      const x = sx(spec.marker);
      svg("rect", {x, y: m.t, width: Math.max(0, W - m.r - x), height: H - m.t - m.b, class: "future"}, root);
    }

    const yt = log ? logTicks(y0, y1) : ticks(y0, y1, Math.max(3, Math.floor((H - m.t - m.b) / 50))).values;
    for (const v of yt) {
      const y = log ? H - m.b - (v - y0) / (y1 - y0) * (H - m.t - m.b) : sy(v);
      svg("line", {x1: m.l, x2: W - m.r, y1: y, y2: y, class: "grid"}, root);
      svg("text", {x: m.l - 8, y: y + 4, class: "tick", "text-anchor": "end"}, root)
        .textContent = fmt(log ? Math.pow(10, v) : v);
    }
    const xt = ticks(x0, x1, Math.max(2, Math.floor((W - m.l - m.r) / 110)), spec.time, !spec.time);
    for (const v of xt.values) {
      svg("line", {x1: sx(v), x2: sx(v), y1: H - m.b, y2: H - m.b + 5, class: "axis"}, root);
      svg("text", {x: sx(v), y: H - m.b + 19, class: "tick", "text-anchor": "middle"}, root)
        .textContent = spec.time ? fmtTime(v, xt.step) : fmt(v);
    }
    svg("line", {x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b, class: "axis"}, root);
    if (spec.xLabel) {
      svg("text", {x: W - m.r, y: H - 2, class: "tick", "text-anchor": "end"}, root).textContent = spec.xLabel;
    }
    if (band) {
      const ok = band.pts.filter((p) => p[1] !== null && p[2] !== null);
      const d = ok.map((p, i) => `${i ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[2]).toFixed(1)}`).join("") +
        ok.slice().reverse().map((p) => `L${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join("") + "Z";
      svg("path", {d, fill: band.color, "fill-opacity": 0.16, stroke: "none", "data-key": band.key}, root);
    }
    if (marked) {
      const x = sx(spec.marker);
      svg("line", {x1: x, x2: x, y1: m.t, y2: H - m.b, class: "marker"}, root);
      const right = x > m.l + 0.7 * (W - m.l - m.r);  // near the right edge the label goes left of the line
      svg("text", {x: right ? x - 5 : x + 5, y: m.t + 10, class: "tick", "text-anchor": right ? "end" : "start"},
        root).textContent = spec.markerLabel || "";
    }
    for (const l of lines) {
      let d = "", pen = "M";
      for (const [x, y] of l.pts) {
        if (y === null) { pen = "M"; continue; }
        d += `${pen}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`;
        pen = "L";
      }
      svg("path", {d, fill: "none", stroke: l.color, "stroke-width": l.width || 1.6,
        "stroke-dasharray": l.dash || "none", "stroke-linejoin": "round", "data-key": l.key}, root);
    }
    hover(box, root, {lines, band, sx, sy, m, W, H, time: spec.time});
  }

  // Math.min(...values) overflows the call stack on long series (a whole history of hourly data)
  function extent(values) {
    let lo = Infinity, hi = -Infinity;
    for (const v of values) { if (v < lo) lo = v; if (v > hi) hi = v; }
    return [lo, hi];
  }

  function logTicks(y0, y1) {
    const out = [];
    const decades = y1 - y0;
    for (let e = Math.floor(y0); e <= Math.ceil(y1); e++) {
      for (const f of decades < 2 ? [1, 2, 5] : [1]) {
        const v = e + Math.log10(f);
        if (v >= y0 && v <= y1) out.push(v);
      }
    }
    return out;
  }

  // A crosshair and a box with every visible value at the time nearest the pointer.
  function hover(box, root, c) {
    const times = [...new Set(c.lines.flatMap((l) => l.pts.map((p) => p[0])))].sort((a, b) => a - b);
    const values = c.lines.map((l) => new Map(l.pts));
    const bandAt = c.band ? new Map(c.band.pts.map((p) => [p[0], p])) : null;
    const cross = svg("line", {y1: c.m.t, y2: c.H - c.m.b, class: "cross", visibility: "hidden"}, root);
    const tip = el("div", null, "tip");
    box.appendChild(tip);
    const area = svg("rect", {x: c.m.l, y: c.m.t, width: c.W - c.m.l - c.m.r, height: c.H - c.m.t - c.m.b,
      fill: "transparent"}, root);
    area.addEventListener("mouseleave", () => { cross.setAttribute("visibility", "hidden"); tip.style.display = "none"; });
    area.addEventListener("mousemove", (ev) => {
      const px = ev.clientX - root.getBoundingClientRect().left;
      let best = times[0];
      for (const t of times) if (Math.abs(c.sx(t) - px) < Math.abs(c.sx(best) - px)) best = t;
      cross.setAttribute("x1", c.sx(best));
      cross.setAttribute("x2", c.sx(best));
      cross.setAttribute("visibility", "visible");
      tip.textContent = "";
      tip.appendChild(el("div", c.time ? fmtTime(best) : `t = ${fmt(best)}`, "tip-title"));
      c.lines.forEach((l, i) => {
        if (!values[i].has(best) || values[i].get(best) === null) return;
        const row = el("div", `${l.label}: ${fmt(values[i].get(best))}`);
        row.style.color = l.color;
        tip.appendChild(row);
      });
      if (bandAt && bandAt.has(best)) {
        const [, lo, hi] = bandAt.get(best);
        tip.appendChild(el("div", `${c.band.label}: ${fmt(lo)} – ${fmt(hi)}`, "muted"));
      }
      tip.style.display = "block";
      const left = c.sx(best) + 12;
      tip.style.left = `${left + tip.offsetWidth > c.W ? c.sx(best) - tip.offsetWidth - 12 : left}px`;
      tip.style.top = `${c.m.t + 4}px`;
    });
  }

  // -- one series ---------------------------------------------------------------------------------
  const zip = (ts, ys) => (ts || []).map((t, i) => [parseT(t), ys[i] === undefined ? null : ys[i]]);

  function seriesLayers(s) {
    const hist = s.history || {}, act = s.actual || {};
    let past = zip(hist.t, hist.y || []);
    const horizon = (act.t || []).length;
    if (state.zoom && horizon) past = past.slice(-2 * horizon);
    // the actual line starts at the last observed point, so history and future read as one curve
    const future = (past.length ? past.slice(-1) : []).concat(zip(act.t, act.y || []));
    const lines = [
      {key: "history", label: "history", color: "#64748b", width: 1.4, pts: past},
      {key: "actual", label: "actual", color: "#0f172a", width: 1.8, pts: future},
    ];
    const fc = s.forecasts || {};
    let band = null;
    if (fc.model) {
      const t = fc.model.t || act.t;
      lines.push({key: "model", label: "model", color: MODEL_COLOR, width: 2.2, pts: zip(t, fc.model.y || [])});
      if (fc.model.lo && fc.model.hi) {
        const iv = DATA.interval;
        const name = iv ? `interval q${iv.lower}–q${iv.upper}` : "interval";
        band = {key: "interval", label: name, color: MODEL_COLOR,
          pts: (t || []).map((x, i) => [parseT(x), fc.model.lo[i], fc.model.hi[i]])};
      }
    }
    for (const name of FORECASTS) {
      if (!fc[name]) continue;
      lines.push({key: name, label: name, color: COLORS[name], width: 1.5, dash: "5 4",
        pts: zip(fc[name].t || act.t, fc[name].y || [])});
    }
    return {lines, band};
  }

  function legend(box, items, redraw) {
    box.textContent = "";
    for (const it of items) {
      const lab = el("label");
      const box_ = el("input");
      box_.type = "checkbox";
      box_.checked = !state.hidden.has(it.key);
      box_.dataset.key = it.key;
      box_.addEventListener("change", () => {
        if (box_.checked) state.hidden.delete(it.key); else state.hidden.add(it.key);
        redraw();
      });
      const swatch = el("span", null, it.band ? "swatch band" : "swatch");
      swatch.style.background = it.color;
      if (it.dash) {
        swatch.classList.add("dashed");
        swatch.style.borderTopColor = it.color;
      }
      lab.append(box_, swatch, document.createTextNode(it.label));
      box.appendChild(lab);
    }
  }

  function drawSeries() {
    const s = SERIES[state.pick];
    if (!s) { $("series-title").textContent = "no series"; return; }
    $("series-title").textContent = s.id;
    $("series-metrics").textContent = METRICS.filter((k) => s.metrics && k in s.metrics)
      .map((k) => `${label(k)} ${fmt(s.metrics[k])}`).join("  ·  ");
    const {lines, band} = seriesLayers(s);
    const items = lines.map((l) => ({key: l.key, label: l.label, color: l.color, dash: l.dash}));
    if (band) items.splice(3, 0, {key: band.key, label: band.label, color: band.color, band: true});
    legend($("legend"), items, drawSeries);
    const act = (s.actual || {}).t || [];
    chart($("chart"), {lines, band, time: IS_TIME, height: 360,
      marker: act.length ? parseT(act[0]) : null, markerLabel: "forecast", shade: true});
    const pos = state.order.indexOf(state.pick);
    $("position").textContent = pos >= 0 ? `${pos + 1} of ${state.order.length}` : "not in the filter";
  }

  // -- picking, filtering, sorting ---------------------------------------------------------------
  function value(i, key) {
    if (key === "id") return SERIES[i].id;
    const v = (SERIES[i].metrics || {})[key];
    return typeof v === "number" ? v : null;
  }

  function computeOrder() {
    const needle = $("filter").value.trim().toLowerCase();
    const order = [];
    for (let i = 0; i < SERIES.length; i++) {
      if (!needle || String(SERIES[i].id).toLowerCase().includes(needle)) order.push(i);
    }
    const key = state.sortKey, dir = state.sortDir;
    if (key) {
      order.sort((a, b) => {
        const va = value(a, key), vb = value(b, key);
        if (va === null || vb === null) return (va === null) - (vb === null) || a - b;  // missing last
        const c = key === "id" ? String(va).localeCompare(String(vb), undefined, {numeric: true}) : va - vb;
        return c * dir || a - b;
      });
    }
    state.order = order;
  }

  function fillPicker() {
    const sel = $("picker");
    sel.textContent = "";
    const frag = document.createDocumentFragment();
    for (const i of state.order) {
      const o = el("option", SERIES[i].id);
      o.value = String(i);
      frag.appendChild(o);
    }
    sel.appendChild(frag);
    sel.value = String(state.pick);
  }

  function pick(i) {
    state.pick = i;
    $("picker").value = String(i);
    const pos = state.order.indexOf(i);
    if (pos >= 0) state.page = Math.floor(pos / PAGE_ROWS);
    drawSeries();
    drawTable();
  }

  function step(delta) {
    if (!state.order.length) return;
    const pos = state.order.indexOf(state.pick);
    const next = pos < 0 ? 0 : (pos + delta + state.order.length) % state.order.length;
    pick(state.order[next]);
  }

  // A new sort or filter shows its first page (the top of the new order), not the picked series'.
  function reorder() {
    computeOrder();
    fillPicker();
    state.page = 0;
    drawTable();
    drawSeries();
  }

  // -- tables ------------------------------------------------------------------------------------
  function drawHead() {
    const head = $("table-head");
    head.textContent = "";
    for (const key of ["id", ...METRICS]) {
      const th = el("th", label(key));
      th.dataset.key = key;
      if (key === state.sortKey) {
        th.setAttribute("aria-sort", state.sortDir > 0 ? "ascending" : "descending");
        th.appendChild(el("span", state.sortDir > 0 ? " ▲" : " ▼", "arrow"));
      }
      th.addEventListener("click", () => {
        state.sortDir = state.sortKey === key ? -state.sortDir : 1;
        state.sortKey = key;
        drawHead();
        reorder();
      });
      head.appendChild(th);
    }
  }

  function drawTable() {
    const body = $("table-body");
    body.textContent = "";
    const pages = Math.max(1, Math.ceil(state.order.length / PAGE_ROWS));
    state.page = Math.min(Math.max(0, state.page), pages - 1);
    for (const i of state.order.slice(state.page * PAGE_ROWS, (state.page + 1) * PAGE_ROWS)) {
      const tr = el("tr", null, i === state.pick ? "picked" : "");
      tr.dataset.index = String(i);
      tr.appendChild(el("td", SERIES[i].id, "id"));
      for (const key of METRICS) tr.appendChild(el("td", fmt((SERIES[i].metrics || {})[key]), "num"));
      tr.addEventListener("click", () => pick(i));
      body.appendChild(tr);
    }
    $("page-info").textContent = `page ${state.page + 1} of ${pages} · ${state.order.length} series`;
    $("page-prev").disabled = state.page === 0;
    $("page-next").disabled = state.page >= pages - 1;
  }

  function drawSummary() {
    const sum = DATA.summary || {};
    const rows = [];
    if (sum.model) rows.push(["model", sum.model]);
    for (const name in sum.baselines || {}) rows.push([name, sum.baselines[name]]);
    if (!rows.length) { $("summary-section").hidden = true; return; }
    const keys = metricKeys(rows.map((r) => r[1]));
    const table = $("summary");
    const head = el("tr");
    head.appendChild(el("th", ""));
    for (const k of keys) head.appendChild(el("th", label(k)));
    table.appendChild(el("thead")).appendChild(head);
    const body = table.appendChild(el("tbody"));
    const best = Object.fromEntries(keys.map((k) => [k, Math.min(...rows.map((r) => r[1][k])
      .filter((v) => typeof v === "number"))]));
    for (const [name, row] of rows) {
      const tr = body.appendChild(el("tr", null, name === "model" ? "model" : ""));
      const swatch = el("span", null, "swatch");
      swatch.style.background = name === "model" ? MODEL_COLOR : (COLORS[name] || "#94a3b8");
      const th = el("th");
      th.append(swatch, document.createTextNode(name));
      tr.appendChild(th);
      for (const k of keys) tr.appendChild(el("td", fmt(row[k]), row[k] === best[k] ? "num best" : "num"));
    }
  }

  function drawTraining() {
    const h = DATA.history || {};
    const names = Object.keys(h).filter((k) => Array.isArray(h[k]) && h[k].length);
    if (!names.length) { $("training-section").hidden = true; return; }
    const colors = {loss: MODEL_COLOR, val_loss: "#ea580c"};
    const lines = names.map((k, j) => ({key: `curve:${k}`, label: k, color: colors[k] || PALETTE[j + 2],
      width: 1.8, pts: h[k].map((v, i) => [i + 1, v])}));
    const val = h.val_loss || [];
    const best = val.reduce((b, v, i) => (typeof v === "number" && (b < 0 || v < val[b]) ? i : b), -1);
    const draw = () => chart($("training"), {lines, time: false, height: 240, logY: true, xLabel: "epoch",
      marker: best >= 0 ? best + 1 : null, markerLabel: `lowest val_loss ${fmt(val[best])} (epoch ${best + 1})`});
    legend($("training-legend"), lines, draw);
    draw();
  }

  function drawHeader() {
    const title = DATA.title || "Forecast report";
    $("title").textContent = title;
    const horizon = SERIES.length ? ((SERIES[0].actual || {}).t || []).length : 0;
    const parts = [`${SERIES.length} series`];
    if (horizon) parts.push(`horizon ${horizon}`);
    if (DATA.interval) parts.push(`interval q${DATA.interval.lower}–q${DATA.interval.upper}`);
    if (FORECASTS.length) parts.push(`baselines: ${FORECASTS.join(", ")}`);
    $("meta").textContent = parts.join("  ·  ");
    if (DATA.config && Object.keys(DATA.config).length) {
      $("config").textContent = JSON.stringify(DATA.config, null, 2);
    } else {
      $("config-section").hidden = true;
    }
  }

  function wire() {
    $("picker").addEventListener("change", (e) => pick(Number(e.target.value)));
    $("prev").addEventListener("click", () => step(-1));
    $("next").addEventListener("click", () => step(1));
    $("filter").addEventListener("input", reorder);
    $("zoom").addEventListener("change", (e) => { state.zoom = e.target.checked; drawSeries(); });
    $("page-prev").addEventListener("click", () => { state.page--; drawTable(); });
    $("page-next").addEventListener("click", () => { state.page++; drawTable(); });
    document.addEventListener("keydown", (e) => {
      if (["INPUT", "SELECT", "TEXTAREA"].includes(document.activeElement.tagName)) return;
      if (e.key === "ArrowLeft") step(-1);
      if (e.key === "ArrowRight") step(1);
    });
    let pending = null;
    window.addEventListener("resize", () => {
      clearTimeout(pending);
      pending = setTimeout(() => { drawSeries(); drawTraining(); }, 120);
    });
  }

  drawHeader();
  drawSummary();
  drawHead();
  computeOrder();
  fillPicker();
  drawTable();
  drawSeries();
  drawTraining();
  wire();
  document.body.dataset.ready = "1";
})();
