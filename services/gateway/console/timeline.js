// The per-node timeline of one job: queued (enqueue → start), running (start → end) with its
// compute time solid, on the Redis clock shared by every timestamp. Nodes of the same step get
// their own rows, so parallel branches show side by side in time; retries are marked.
import { layers } from "./dag.js";
import { clear, el, fmt, ticks, title } from "./svg.js";

const ROW = 30;
const LABEL = 92;
const AXIS = 22;
const WIDTH = 640;
const DETAIL = 178; // right column: each node's queue and compute figures

const ms = (iso) => (iso ? Date.parse(iso) : null);

/** Draw ``job`` (the API's job view); ``now`` (ms, server clock) extends running bars. */
export function drawTimeline(svg, pipeline, job, now) {
  const order = layers(pipeline).flat().map((n) => n.name);
  const rows = order.filter((name) => job.nodes[name]);
  const height = rows.length * ROW + AXIS + 6;
  clear(svg, WIDTH, height);
  const origin = ms(job.created_at);
  let end = Math.max(now ?? 0, ms(job.updated_at) ?? origin);
  for (const name of rows) end = Math.max(end, ms(job.nodes[name].finished_at) ?? 0);
  const span = Math.max(end - origin, 10);
  const axis = ticks(span, 5);
  const scale = (WIDTH - LABEL - DETAIL - 8) / axis[axis.length - 1];
  const x = (t) => LABEL + (t - origin) * scale;

  const axisGroup = el("g", { class: "axis" });
  for (const t of axis) {
    const px = LABEL + t * scale;
    axisGroup.append(el("line", { x1: px, x2: px, y1: 0, y2: height - AXIS + 4 }));
    axisGroup.append(el("text", { x: px, y: height - 6, "text-anchor": "middle" }, `${fmt(t, 0)} ms`));
  }
  svg.append(axisGroup);

  let done = 0;
  rows.forEach((name, i) => {
    const node = job.nodes[name];
    const y = i * ROW + 6;
    const g = el("g", { class: "row", "data-node": name, "data-status": node.status });
    g.append(el("text", { x: 0, y: y + 15, "font-weight": 600 }, name));
    const start = ms(node.started_at);
    const finished = ms(node.finished_at);
    if (start !== null && node.queue_ms !== null) {
      g.append(bar("queue", x(start - node.queue_ms), x(start), y, `${name} queued ${node.queue_ms} ms`));
    }
    if (start !== null) {
      const stop = finished ?? Math.max(now ?? start, start);
      const cls = node.status === "failed" ? "failed" : "overhead";
      g.append(bar(cls, x(start), x(stop), y, `${name} ran ${fmt(stop - start, 0)} ms`));
      if (node.compute_ms !== null) {
        g.append(bar("compute", x(start), x(start) + node.compute_ms * scale, y,
          `${name} compute ${fmt(node.compute_ms)} ms`));
      }
    }
    const parts = [];
    if (node.queue_ms !== null) parts.push(`queue ${node.queue_ms} ms`);
    if (node.compute_ms !== null) parts.push(`compute ${fmt(node.compute_ms)} ms`);
    if (!parts.length) parts.push(node.status);
    g.append(el("text", { x: WIDTH, y: y + 15, class: "detail", "text-anchor": "end" }, parts.join(" · ")));
    if (node.attempts > 1) {
      g.append(el("text", { x: LABEL - 26, y: y + 15, class: "retry" }, `↻${node.attempts}`));
      g.append(el("title", {}, `${name} ran ${node.attempts} times (retried)`));
    }
    if (node.status === "succeeded") done += 1;
    svg.append(g);
  });
  svg.dataset.nodes = String(rows.length);
  svg.dataset.nodesDone = String(done);
  title(svg, `Timeline: ${done} of ${rows.length} nodes finished, ${fmt(span, 0)} ms so far`);
}

function bar(cls, x1, x2, y, label) {
  const r = el("rect", { class: cls, x: x1, y: y + 3, width: Math.max(x2 - x1, 1.5), height: ROW - 12, rx: 4 });
  r.append(el("title", {}, label));
  return r;
}
