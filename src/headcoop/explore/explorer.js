// The head explorer's page logic: the head grid, the sort, the panel of one head and its
// charts, drawn as SVG on demand from the JSON embedded once in the page (no network).
"use strict";

const DATA = JSON.parse(document.getElementById("explorer-data").textContent);
const TABLE = DATA.table;
const NAMES = TABLE.name;
const GRID_METRICS = ["s_acc", "l_acc", "l_acc_direct", "roc_auc", "head_weight"];
const CLASS_COLOURS = { successful: "#2e7d32", mixed: "#f9a825", failed: "#c62828" };
const SERIES = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"];
const SVG_NS = "http://www.w3.org/2000/svg";

// ---- small helpers ------------------------------------------------------------------------

function fmt(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 1000 || (value !== 0 && Math.abs(value) < 0.001)
    ? value.toExponential(2) : value.toFixed(4);
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text) node.textContent = text;
  return node;
}

function svgEl(tag, attrs = {}, title = "") {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (title) node.appendChild(document.createElementNS(SVG_NS, "title")).textContent = title;
  return node;
}

function extent(values) {
  const finite = values.filter(Number.isFinite);
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (!finite.length) return [0, 1];
  if (lo === hi) { lo -= 0.5; hi += 0.5; }
  return [lo, hi];
}

function diverging(value, scale) {
  // blue (negative) - white - red (positive), as the report's pair matrices
  const t = Math.max(-1, Math.min(1, value / (scale || 1)));
  const fade = (c) => Math.round(255 - (255 - c) * Math.abs(t));
  return t >= 0 ? `rgb(${fade(178)},${fade(24)},${fade(43)})` : `rgb(${fade(33)},${fade(102)},${fade(172)})`;
}

// ---- charts -------------------------------------------------------------------------------

function frame(title, width = 420, height = 300) {
  const box = el("figure", { class: "chart" });
  box.appendChild(el("figcaption", {}, title));
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}` });
  box.appendChild(svg);
  return { box, svg, width, height, left: 56, right: 12, top: 10, bottom: 36 };
}

let clipCount = 0;

function clipToPlot(f) {
  // a clip path of the plotting area, for lines that would run over the axes
  const id = `plot-area-${clipCount++}`;
  const clip = f.svg.appendChild(svgEl("clipPath", { id }));
  clip.appendChild(svgEl("rect", { x: f.left, y: f.top, width: f.width - f.left - f.right,
    height: f.height - f.top - f.bottom }));
  return `url(#${id})`;
}

function axes(f, xs, ys, xlabel, ylabel, xticks = true) {
  const x = (v) => f.left + ((v - xs[0]) / (xs[1] - xs[0])) * (f.width - f.left - f.right);
  const y = (v) => f.height - f.bottom - ((v - ys[0]) / (ys[1] - ys[0])) * (f.height - f.top - f.bottom);
  f.svg.appendChild(svgEl("rect", { x: f.left, y: f.top, width: f.width - f.left - f.right,
    height: f.height - f.top - f.bottom, fill: "#f7f7fb", stroke: "#ccc" }));
  for (let k = 0; k <= 4; k++) {
    const xv = xs[0] + (k / 4) * (xs[1] - xs[0]), yv = ys[0] + (k / 4) * (ys[1] - ys[0]);
    if (xticks) f.svg.appendChild(svgEl("text", { x: x(xv), y: f.height - f.bottom + 14,
      class: "tick", "text-anchor": "middle" })).textContent = fmt(xv);
    f.svg.appendChild(svgEl("text", { x: f.left - 4, y: y(yv) + 4, class: "tick",
      "text-anchor": "end" })).textContent = fmt(yv);
  }
  f.svg.appendChild(svgEl("text", { x: (f.left + f.width) / 2, y: f.height - 4, class: "label",
    "text-anchor": "middle" })).textContent = xlabel;
  f.svg.appendChild(svgEl("text", { x: 12, y: f.height / 2, class: "label", "text-anchor": "middle",
    transform: `rotate(-90 12 ${f.height / 2})` })).textContent = ylabel;
  return { x, y };
}

function heatmap(title, matrix, rows, cols, rowLabel, colLabel) {
  const f = frame(title, Math.max(300, 60 + cols.length * 18), Math.max(220, 50 + rows.length * 18));
  f.left = 60; f.bottom = 40;
  const scale = Math.max(...matrix.flat().map(Math.abs).filter(Number.isFinite)) || 1;
  const w = (f.width - f.left - f.right) / cols.length, h = (f.height - f.top - f.bottom) / rows.length;
  matrix.forEach((row, i) => row.forEach((v, j) => {
    f.svg.appendChild(svgEl("rect", { x: f.left + j * w, y: f.top + i * h, width: w, height: h,
      fill: diverging(v, scale) }, `${rowLabel} ${rows[i]}, ${colLabel} ${cols[j]}: ${fmt(v)}`));
  }));
  const every = (n) => Math.max(1, Math.ceil(n / 24));
  rows.forEach((r, i) => { if (i % every(rows.length) === 0) f.svg.appendChild(svgEl("text",
    { x: f.left - 3, y: f.top + (i + 0.7) * h, class: "tick", "text-anchor": "end" })).textContent = r; });
  cols.forEach((c, j) => { if (j % every(cols.length) === 0) f.svg.appendChild(svgEl("text",
    { x: f.left + (j + 0.5) * w, y: f.height - f.bottom + 12, class: "tick",
      "text-anchor": "middle" })).textContent = c; });
  f.svg.appendChild(svgEl("text", { x: (f.left + f.width) / 2, y: f.height - 4, class: "label",
    "text-anchor": "middle" })).textContent = `${colLabel} (colour scale ±${fmt(scale)})`;
  return f.box;
}

function lineChart(title, xs, series, xlabel, ylabel) {
  const f = frame(title);
  const a = axes(f, extent(xs), extent(series.flatMap((s) => s.y)), xlabel, ylabel);
  series.forEach((s, k) => {
    const points = xs.map((x, i) => `${a.x(x)},${a.y(s.y[i])}`).join(" ");
    const colour = SERIES[k % SERIES.length];
    f.svg.appendChild(svgEl("polyline", { points, fill: "none", stroke: colour, "stroke-width": 2 }, s.label));
    xs.forEach((x, i) => f.svg.appendChild(svgEl("circle", { cx: a.x(x), cy: a.y(s.y[i]), r: 3,
      fill: colour }, `${s.label}: ${fmt(x)} → ${fmt(s.y[i])}`)));
  });
  legend(f, series.map((s) => s.label));
  return f.box;
}

function legend(f, labels) {
  labels.forEach((label, k) => {
    const y = f.top + 12 + k * 14;
    f.svg.appendChild(svgEl("rect", { x: f.width - 110, y: y - 8, width: 8, height: 8,
      fill: SERIES[k % SERIES.length] }));
    f.svg.appendChild(svgEl("text", { x: f.width - 98, y, class: "tick" })).textContent = label;
  });
}

function histogram(title, groups, xlabel) {
  const all = Object.values(groups).flat();
  const [lo, hi] = extent(all), bins = 30, width = (hi - lo) / bins;
  const counts = Object.values(groups).map((values) => {
    const c = new Array(bins).fill(0);
    values.forEach((v) => { c[Math.min(bins - 1, Math.floor((v - lo) / width))] += 1; });
    return c;
  });
  const f = frame(title);
  const a = axes(f, [lo, hi], [0, Math.max(...counts.flat(), 1)], xlabel, "examples");
  counts.forEach((c, k) => c.forEach((n, b) => {
    if (!n) return;
    const x0 = a.x(lo + b * width), x1 = a.x(lo + (b + 1) * width);
    f.svg.appendChild(svgEl("rect", { x: x0, y: a.y(n), width: Math.max(1, x1 - x0 - 1),
      height: a.y(0) - a.y(n), fill: SERIES[k % SERIES.length], "fill-opacity": 0.55 },
      `${Object.keys(groups)[k]}: ${n} in [${fmt(lo + b * width)}, ${fmt(lo + (b + 1) * width)})`));
  }));
  f.svg.appendChild(svgEl("line", { x1: a.x(0), x2: a.x(0), y1: f.top, y2: f.height - f.bottom,
    stroke: "#333", "stroke-dasharray": "4 3" }));
  legend(f, Object.keys(groups));
  return f.box;
}

function bars(title, labels, values, ylabel) {
  const f = frame(title);
  const [lo, hi] = extent([0, ...values]);
  const a = axes(f, [0, labels.length], [lo, hi], "", ylabel, false);
  labels.forEach((label, i) => {
    const v = values[i], y0 = a.y(Math.max(0, v)), y1 = a.y(Math.min(0, v));
    f.svg.appendChild(svgEl("rect", { x: a.x(i + 0.15), y: y0, width: a.x(0.7) - a.x(0),
      height: Math.max(1, y1 - y0), fill: SERIES[0] }, `${label}: ${fmt(v)}`));
    f.svg.appendChild(svgEl("text", { x: a.x(i + 0.5), y: f.height - f.bottom + 26, class: "tick",
      "text-anchor": "middle" })).textContent = label;
  });
  return f.box;
}

function outputSpace(head) {
  const f = frame("outputs at the decision (dots: test examples by class; labels: value vectors)", 460, 360);
  const [px, py] = head.points, [vx, vy] = head.values;
  const a = axes(f, extent([...px, ...vx, 0]), extent([...py, ...vy, 0]), "coordinate 1", "coordinate 2");
  px.forEach((x, i) => f.svg.appendChild(svgEl("circle", { cx: a.x(x), cy: a.y(py[i]), r: 2.5,
    fill: SERIES[DATA.classes[i] % SERIES.length], "fill-opacity": 0.6 },
    `class ${DATA.candidates[DATA.classes[i]]}: (${fmt(x)}, ${fmt(py[i])})`)));
  vx.forEach((x, t) => {
    f.svg.appendChild(svgEl("line", { x1: a.x(0), y1: a.y(0), x2: a.x(x), y2: a.y(vy[t]),
      stroke: "#555", "stroke-opacity": 0.35 }));
    f.svg.appendChild(svgEl("text", { x: a.x(x), y: a.y(vy[t]), class: "token" },
      `value vector of ${DATA.vocab[t]}`)).appendChild(document.createTextNode(DATA.vocab[t]));
  });
  if (head.separator) separator(f, a, head.separator, extent([...px, ...vx, 0]));
  legend(f, DATA.candidates);
  return f.box;
}

function separator(f, a, [wx, wy, b], xs) {
  if (Math.abs(wy) < 1e-12) return;
  const y = (x) => -(wx * x + b) / wy;
  f.svg.appendChild(svgEl("line", { x1: a.x(xs[0]), y1: a.y(y(xs[0])), x2: a.x(xs[1]), y2: a.y(y(xs[1])),
    stroke: "black", "stroke-dasharray": "6 4", "clip-path": clipToPlot(f) },
    "separator fitted for s-acc"));
}

// ---- the grid and the panel ---------------------------------------------------------------

function buildGrid() {
  const grid = document.getElementById("head-grid");
  NAMES.forEach((name, h) => {
    const cell = el("button", { class: "cell", "data-head": name, type: "button" });
    cell.style.borderColor = CLASS_COLOURS[TABLE.class[h]] || "#999";
    cell.appendChild(el("strong", {}, name));
    cell.appendChild(el("span", { class: "badge" }, TABLE.class[h]));
    for (const metric of GRID_METRICS.filter((m) => m in TABLE)) {
      cell.appendChild(el("span", { class: "metric" }, `${metric} ${fmt(TABLE[metric][h])}`));
    }
    cell.addEventListener("click", () => { location.hash = name; });
    grid.appendChild(cell);
  });
  const sorter = document.getElementById("sort");
  for (const metric of ["head", ...GRID_METRICS.filter((m) => m in TABLE)]) {
    sorter.appendChild(el("option", { value: metric }, metric));
  }
  sorter.addEventListener("change", () => sortGrid(sorter.value));
}

function sortGrid(metric) {
  const grid = document.getElementById("head-grid");
  const order = NAMES.map((_, h) => h);
  if (metric !== "head") order.sort((i, j) => TABLE[metric][j] - TABLE[metric][i]);
  order.forEach((h) => grid.appendChild(grid.querySelector(`[data-head="${NAMES[h]}"]`)));
}

function numbersTable(h) {
  const table = el("table", { class: "numbers" });
  for (const [column, values] of Object.entries(TABLE)) {
    const row = table.insertRow();
    row.appendChild(el("th", {}, column));
    const cell = el("td", { "data-column": column, "data-value": String(values[h]) }, fmt(values[h]));
    row.appendChild(cell);
  }
  return table;
}

function partners(h) {
  const box = el("div", { class: "partners" });
  for (const [metric, rows] of Object.entries(DATA.pairs)) {
    if (!["s_acc", "l_acc", "l_acc_direct", "roc_auc"].includes(metric)) continue;
    const mine = rows.filter(([i, j]) => i === h || j === h)
      .sort((p, q) => Math.abs(q[2]) - Math.abs(p[2])).slice(0, 5);
    const list = el("ol");
    mine.forEach(([i, j, v]) => {
      const other = NAMES[i === h ? j : i];
      const item = el("li");
      const link = el("a", { href: `#${other}` }, other);
      item.append(link, ` ${fmt(v)} (${v > 0 ? "complements" : "substitutes"})`);
      list.appendChild(item);
    });
    box.append(el("h4", {}, `strongest partners by ${metric} pair interaction`), list);
  }
  return box;
}

function optionalCharts(h) {
  const charts = [];
  const iv = DATA.interventions;
  if (iv) {
    const sweeps = Object.keys(iv).filter((k) => k !== "ratios");
    charts.push(lineChart("s-acc with attention fixed by ratio (Figs 8-9)", iv.ratios.map(Math.log10),
      sweeps.map((s) => ({ label: s, y: iv[s][h] })), "log10 ratio", "s-acc"));
  }
  const dyn = DATA.dynamics;
  if (dyn) {
    charts.push(lineChart("over training", dyn.epochs, [{ label: "s-acc", y: dyn.s_acc[h] },
      { label: "head weight", y: dyn.head_weight[h] }], "epoch", "value"));
  }
  const succ = DATA.succession && DATA.succession[NAMES[h]];
  if (succ) charts.push(bars("succession score by domain", Object.keys(succ), Object.values(succ), "score"));
  return charts;
}

function select(name) {
  const h = NAMES.indexOf(name);
  if (h < 0) return;
  const start = performance.now();
  document.querySelectorAll(".cell").forEach((c) => c.classList.toggle("selected", c.dataset.head === name));
  const head = DATA.heads[h], panel = document.getElementById("head-panel");
  panel.replaceChildren(el("h2", {}, `head ${name}`));
  panel.dataset.head = name;
  const byClass = {};
  DATA.candidates.forEach((c, k) => { byClass[c] = head.margins.filter((_, i) => DATA.classes[i] === k); });
  const charts = el("div", { class: "charts" });
  charts.append(
    heatmap("QK: attention score of the token embeddings", head.qk.scores, DATA.vocab, DATA.vocab, "query", "key"),
    bars("singular values of W_Q W_K^T", head.qk.singular_values.map((_, k) => `σ${k + 1}`), head.qk.singular_values, "σ"),
    heatmap("QK components: query loading of each token", head.qk.query_loadings, head.qk.singular_values.map((_, k) => `c${k + 1}`), DATA.vocab, "component", "token"),
    heatmap("OV: logit written per source token", head.ov, DATA.vocab, DATA.candidates, "source", "candidate"),
    histogram("margin: true candidate's head-only logit minus the best other", byClass, "logit margin"),
    outputSpace(head),
    ...optionalCharts(h),
  );
  panel.append(numbersTable(h), partners(h), charts);
  panel.dataset.drawnMs = (performance.now() - start).toFixed(1);  // read by the benchmark
}

buildGrid();
window.addEventListener("hashchange", () => select(decodeURIComponent(location.hash.slice(1))));
if (location.hash) select(decodeURIComponent(location.hash.slice(1)));
document.body.dataset.ready = "true";
document.body.dataset.readyMs = performance.now().toFixed(1);  // since navigation began
