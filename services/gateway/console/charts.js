// Hand-drawn SVG charts: horizontal bars (optionally grouped) and lines over time. Each
// records what it drew in data attributes (tests, and anyone inspecting) and describes itself
// in its accessible name.
import { clear, el, fmt, ticks, title } from "./svg.js";

export const SERIES_COLOURS = ["#4c2fb8", "#0f9d8a", "#e8590c", "#1d5fd1", "#c2255c", "#5c940d"];
const WIDTH = 560;

/** ``groups``: [{label, values: [{name, value}]}], one bar per value, a row per group. */
export function barChart(svg, groups, { unit = "", empty = "no data in this window", digits = 2 } = {}) {
  const names = [...new Set(groups.flatMap((g) => g.values.map((v) => v.name)))];
  const bar = 14;
  const gap = 10;
  const label = 120;
  const rowHeight = names.length * (bar + 3) + gap;
  const height = Math.max(groups.length * rowHeight + 26 + (names.length > 1 ? 20 : 0), 60);
  clear(svg, WIDTH, height);
  const values = groups.flatMap((g) => g.values.map((v) => v.value)).filter((v) => v !== null && v !== undefined);
  svg.dataset.bars = String(values.length);
  if (!values.length) {
    svg.append(el("text", { x: WIDTH / 2, y: 34, "text-anchor": "middle", class: "empty" }, empty));
    title(svg, empty);
    return;
  }
  const axis = ticks(Math.max(...values) || 1, 4, digits === 0);
  const top = names.length > 1 ? 20 : 0;
  const scale = (WIDTH - label - 60) / axis[axis.length - 1];
  for (const t of axis) {
    const x = label + t * scale;
    const g = el("g", { class: "tick" });
    g.append(el("line", { x1: x, x2: x, y1: top, y2: height - 20 }));
    g.append(el("text", { x, y: height - 5, "text-anchor": "middle" }, fmt(t, digits)));
    svg.append(g);
  }
  if (names.length > 1) legend(svg, names, 0);
  const described = [];
  groups.forEach((group, i) => {
    const y0 = top + i * rowHeight;
    svg.append(el("text", { x: 0, y: y0 + (names.length * (bar + 3)) / 2 + 4, "font-weight": 600 },
      clip(group.label, 18)));
    names.forEach((name, j) => {
      const v = group.values.find((x) => x.name === name)?.value;
      if (v === null || v === undefined) return;
      const y = y0 + j * (bar + 3);
      const rect = el("rect", {
        class: "bar", x: label, y, width: Math.max(v * scale, 1.5), height: bar,
        fill: SERIES_COLOURS[j % SERIES_COLOURS.length],
      });
      rect.append(el("title", {}, `${group.label} ${name}: ${fmt(v, digits)}${unit}`));
      svg.append(rect);
      svg.append(el("text", { x: label + v * scale + 5, y: y + bar - 3 }, `${fmt(v, digits)}${unit}`));
      described.push(`${group.label}${names.length > 1 ? ` ${name}` : ""} ${fmt(v, digits)}${unit}`);
    });
  });
  title(svg, described.join("; "));
}

/** ``series``: [{name, points: [{t (ms), v}]}], drawn over the last ``spanMs``. */
export function lineChart(svg, series, { spanMs, unit = "", empty = "collecting…" } = {}) {
  const height = 190;
  const left = 44;
  const bottom = 22;
  const top = 22;
  clear(svg, WIDTH, height);
  const points = series.flatMap((s) => s.points);
  svg.dataset.points = String(points.length);
  svg.dataset.series = String(series.length);
  if (points.length < 2) {
    svg.append(el("text", { x: WIDTH / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, empty));
    title(svg, empty);
    return;
  }
  const now = Math.max(...points.map((p) => p.t));
  const start = now - spanMs;
  const axis = ticks(Math.max(...points.map((p) => p.v), 0.001), 4);
  const yScale = (height - top - bottom) / axis[axis.length - 1];
  const xScale = (WIDTH - left - 10) / spanMs;
  for (const v of axis) {
    const y = height - bottom - v * yScale;
    const g = el("g", { class: "tick" });
    g.append(el("line", { x1: left, x2: WIDTH - 10, y1: y, y2: y }));
    g.append(el("text", { x: left - 6, y: y + 4, "text-anchor": "end" }, fmt(v, 3)));
    svg.append(g);
  }
  svg.append(el("text", { x: left, y: height - 4, class: "empty" }, `${Math.round(spanMs / 60000)} min ago`));
  svg.append(el("text", { x: WIDTH - 10, y: height - 4, "text-anchor": "end", class: "empty" }, "now"));
  legend(svg, series.map((s) => s.name), left);
  const described = [];
  series.forEach((s, i) => {
    const shown = s.points.filter((p) => p.t >= start);
    if (!shown.length) return;
    const d = shown.map((p, k) => `${k ? "L" : "M"}${left + (p.t - start) * xScale},${height - bottom - p.v * yScale}`).join(" ");
    svg.append(el("path", { class: "line", d, stroke: SERIES_COLOURS[i % SERIES_COLOURS.length] }));
    described.push(`${s.name} now ${fmt(shown[shown.length - 1].v, 2)}${unit}`);
  });
  title(svg, described.join("; "));
}

function legend(svg, names, x0) {
  let x = x0;
  names.forEach((name, i) => {
    svg.append(el("rect", { x, y: 4, width: 10, height: 10, rx: 2, fill: SERIES_COLOURS[i % SERIES_COLOURS.length] }));
    svg.append(el("text", { x: x + 14, y: 13 }, name));
    x += 24 + name.length * 7;
  });
}

function clip(text, n) {
  return text.length > n ? `${text.slice(0, n - 1)}…` : text;
}
