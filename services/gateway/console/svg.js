// Tiny SVG helpers shared by the DAG, the timeline and the charts.

const NS = "http://www.w3.org/2000/svg";

export function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) if (v !== undefined && v !== null) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function clear(svg, width, height) {
  svg.replaceChildren();
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  return svg;
}

export function title(svg, text) {
  svg.setAttribute("aria-label", text);
  svg.prepend(el("title", {}, text));
}

/** Round numbers for axis ticks covering [0, max]; whole numbers only for counts. */
export function ticks(max, count = 4, integer = false) {
  if (!(max > 0)) return [0];
  const raw = integer ? Math.max(max / count, 1) : max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw && (!integer || Number.isInteger(s)));
  const out = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(6)));
  if (out[out.length - 1] < max) out.push(Number((out[out.length - 1] + step).toPrecision(6)));
  return out;
}

export function fmt(value, digits = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (Math.abs(value) >= 1000) return value.toLocaleString(undefined, { maximumFractionDigits: 0 });
  return value.toLocaleString(undefined, { maximumFractionDigits: digits });
}
