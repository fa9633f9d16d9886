// A pipeline's DAG as SVG: one column per step (a node sits right of its deepest input),
// parallel branches stacked in the same column. Node status colours it while a job runs.
import { clear, el, title } from "./svg.js";

const W = 156;
const H = 46;
const GAP_X = 46;
const GAP_Y = 14;

/** Nodes grouped by depth, as `posefleet pipelines show` prints them. */
export function layers(pipeline) {
  const depth = {};
  const upstream = {};
  for (const [up, down] of pipeline.edges) (upstream[down] ||= []).push(up);
  for (const node of pipeline.nodes) {
    depth[node.name] = 1 + Math.max(-1, ...(upstream[node.name] || []).map((u) => depth[u]));
  }
  const grouped = [];
  for (const node of pipeline.nodes) (grouped[depth[node.name]] ||= []).push(node);
  return grouped;
}

export function drawDag(svg, pipeline) {
  const columns = layers(pipeline);
  const tallest = Math.max(...columns.map((c) => c.length));
  const width = columns.length * W + (columns.length - 1) * GAP_X + 8;
  const height = tallest * H + (tallest - 1) * GAP_Y + 8;
  clear(svg, width, height);
  const defs = el("defs");
  const marker = el("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto",
  });
  marker.append(el("path", { d: "M0,0 L10,5 L0,10 z", fill: "currentColor", class: "arrowhead" }));
  defs.append(marker);
  svg.append(defs);
  const at = {};
  columns.forEach((column, i) => {
    const offset = ((tallest - column.length) * (H + GAP_Y)) / 2;
    column.forEach((node, j) => {
      at[node.name] = { x: 4 + i * (W + GAP_X), y: 4 + offset + j * (H + GAP_Y) };
    });
  });
  for (const [up, down] of pipeline.edges) {
    const a = at[up];
    const b = at[down];
    const x1 = a.x + W;
    const y1 = a.y + H / 2;
    const x2 = b.x - 2;
    const y2 = b.y + H / 2;
    const mid = (x1 + x2) / 2;
    svg.append(el("path", {
      class: "edge", d: `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`, "marker-end": "url(#arrow)",
    }));
  }
  for (const node of pipeline.nodes) {
    const { x, y } = at[node.name];
    const g = el("g", { class: "node", "data-node": node.name, "data-status": "idle" });
    g.append(el("rect", { x, y, width: W, height: H, rx: 10 }));
    g.append(el("text", { x: x + 10, y: y + 19, "font-weight": 700 }, node.name));
    const sub = node.model ? `${node.stage} · ${node.model}` : node.stage;
    g.append(el("text", { x: x + 10, y: y + 35, class: "sub" }, sub.length > 26 ? `${sub.slice(0, 25)}…` : sub));
    g.append(el("title", {}, `${node.name}: stage ${node.stage}${node.model ? `, model ${node.model}` : ""}`));
    svg.append(g);
  }
  svg.style.color = "var(--muted)";
  title(svg, `${pipeline.name}: ${columns.map((c) => c.map((n) => n.name).join(" and ")).join(", then ")}`);
}

export function setDagStatus(svg, nodes) {
  for (const g of svg.querySelectorAll(".node")) {
    const node = nodes?.[g.dataset.node];
    g.dataset.status = node ? node.status : "idle";
  }
}
