// Fleet: what the fleet did over a window (GET /v1/stats) and what waits now (the gateway's
// /metrics: backlog and dead letters per stage), refreshed every few seconds.
import { barChart, lineChart } from "./charts.js";
import { fmt } from "./svg.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 5000;
const HISTORY_MS = 10 * 60 * 1000;

/** Prometheus text format → {name: [{labels, value}]}, enough for gauges and counters. */
export function parseMetrics(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = line.match(/^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)/);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[pair[1]] = pair[2];
    (out[match[1]] ||= []).push({ labels, value: Number(match[4]) });
  }
  return out;
}

export class FleetPage {
  constructor(ctx) {
    this.ctx = ctx;
    this.timer = null;
    this.paused = false;
    this.history = [];
    $("window").addEventListener("change", () => { this.history = []; this.refresh(); });
    $("fleet-pause").addEventListener("click", () => {
      this.paused = !this.paused;
      $("fleet-pause").setAttribute("aria-pressed", String(this.paused));
      $("fleet-pause").textContent = this.paused ? "Resume" : "Pause";
      if (!this.paused) this.refresh();
    });
  }

  show() {
    this.refresh();
    this.timer = setInterval(() => !this.paused && this.refresh(), REFRESH_MS);
  }

  hide() {
    clearInterval(this.timer);
    this.timer = null;
  }

  async refresh() {
    let stats;
    let metrics;
    try {
      [stats, metrics] = await Promise.all([
        this.ctx.api.json(`/v1/stats?window=${$("window").value}`),
        this.ctx.api.text("/metrics").then(parseMetrics),
      ]);
    } catch (error) {
      this.ctx.fail(error);
      return;
    }
    const now = Date.now();
    const backlog = Object.fromEntries((metrics.posefleet_stage_backlog || []).map((s) => [s.labels.stage, s.value]));
    const dead = Object.fromEntries((metrics.posefleet_dead_letters || []).map((s) => [s.labels.stage, s.value]));
    this.history.push({ t: now, stats, backlog });
    this.history = this.history.filter((h) => h.t >= now - HISTORY_MS);
    this.render(stats, backlog, dead);
    $("fleet-updated").textContent = `updated ${new Date(now).toLocaleTimeString()}`;
  }

  render(stats, backlog, dead) {
    const pipelines = Object.entries(stats.pipelines);
    const images = pipelines.reduce((n, [, p]) => n + p.succeeded, 0);
    const failed = pipelines.reduce((n, [, p]) => n + p.failed, 0);
    const perSecond = pipelines.reduce((n, [, p]) => n + p.throughput_per_s, 0);
    const waiting = Object.values(backlog).reduce((a, b) => a + b, 0);
    const replicas = Object.values(stats.pools).reduce((a, p) => a + p.replicas, 0);
    this.kpis([
      ["images/s", fmt(perSecond, 2)],
      [`images in ${stats.window_s >= 3600 ? `${stats.window_s / 3600} h` : `${stats.window_s / 60} min`}`, fmt(images, 0)],
      ["failed", fmt(failed, 0)],
      ["backlog now", fmt(waiting, 0)],
      ["avg replicas", fmt(replicas, 2)],
      ["$ per 1000 images", stats.cost_per_1000_images === null ? "–" : `$${fmt(stats.cost_per_1000_images, 4)}`],
    ]);

    const span = Math.min(HISTORY_MS, Math.max(60_000, this.history[this.history.length - 1].t - this.history[0].t));
    const names = [...new Set(this.history.flatMap((h) => Object.keys(h.stats.pipelines)))];
    lineChart($("chart-throughput"), names.map((name) => ({
      name,
      points: this.history.map((h) => ({ t: h.t, v: h.stats.pipelines[name]?.throughput_per_s ?? 0 })),
    })), { spanMs: span, unit: "/s", empty: "collecting samples… (one every 5 s)" });

    barChart($("chart-backlog"), Object.keys({ ...backlog, ...dead }).sort().map((stage) => ({
      label: stage,
      values: [{ name: "backlog", value: backlog[stage] ?? 0 }, { name: "dead letters", value: dead[stage] ?? 0 }],
    })), { digits: 0 });

    barChart($("chart-latency"), pipelines.filter(([, p]) => p.latency_ms).map(([name, p]) => ({
      label: name,
      values: ["p50", "p95", "p99"].map((q) => ({ name: q, value: p.latency_ms[q] })),
    })), { unit: " ms", digits: 1 });

    const pools = Object.keys(stats.pools);
    barChart($("chart-cost"), [
      ...pipelines.filter(([, p]) => p.cost_per_1000_images !== null).map(([name, p]) => ({
        label: name,
        values: [{ name: "total", value: p.cost_per_1000_images },
          ...pools.map((pool) => ({ name: pool, value: p.cost_per_1000_images_by_pool[pool] ?? null }))],
      })),
    ], { unit: "", digits: 4, empty: "no succeeded images in this window" });

    barChart($("chart-pools"), pools.map((pool) => ({
      label: `${pool} ($${stats.pools[pool].hourly_cost_dollars}/h)`,
      values: [{ name: "replicas", value: stats.pools[pool].replicas }],
    })), { digits: 2, empty: "no workers registered in this window" });

    this.nodeTable(pipelines);
  }

  kpis(items) {
    const box = $("kpis");
    box.replaceChildren(...items.map(([label, value]) => {
      const div = document.createElement("div");
      div.className = "kpi";
      div.innerHTML = '<div class="value"></div><div class="label"></div>';
      div.querySelector(".value").textContent = value;
      div.querySelector(".label").textContent = label;
      return div;
    }));
  }

  nodeTable(pipelines) {
    const rows = pipelines.flatMap(([name, p]) => Object.entries(p.nodes).map(([node, n]) => ({ name, node, ...n })));
    const box = $("node-table");
    if (!rows.length) {
      box.innerHTML = '<p class="muted">No jobs finished in this window.</p>';
      box.dataset.rows = "0";
      return;
    }
    const max = Math.max(1, ...rows.flatMap((r) => [r.queue_ms?.p99 ?? 0, r.compute_ms?.p99 ?? 0]));
    const cells = (tr, q, cls) => {
      for (const k of ["p50", "p95", "p99"]) {
        const td = tr.insertCell();
        td.textContent = fmt(q?.[k], 1);
        if (k === "p95" && q) { // a bar for p95, to compare nodes at a glance
          const bar = document.createElement("span");
          bar.className = `minibar ${cls}`;
          bar.style.width = `${(q[k] / max) * 60}px`;
          td.append(bar);
        }
      }
    };
    const table = document.createElement("table");
    table.innerHTML = "<caption class=\"visually-hidden\">Queue and compute percentiles per node</caption>"
      + "<thead><tr><th scope=\"col\">pipeline</th><th scope=\"col\">node (stage)</th>"
      + "<th scope=\"col\">queue p50</th><th scope=\"col\">p95</th><th scope=\"col\">p99</th>"
      + "<th scope=\"col\">compute p50</th><th scope=\"col\">p95</th><th scope=\"col\">p99</th></tr></thead>";
    const body = table.createTBody();
    for (const r of rows) {
      const tr = body.insertRow();
      tr.insertCell().textContent = r.name;
      tr.insertCell().textContent = `${r.node} (${r.stage})`;
      cells(tr, r.queue_ms, "queue");
      cells(tr, r.compute_ms, "");
    }
    box.replaceChildren(table);
    box.dataset.rows = String(rows.length);
  }
}
