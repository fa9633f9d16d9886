// Try it: pick a pipeline, send a photo, watch the job live, see what it found.
import { drawDag, setDagStatus } from "./dag.js";
import { bindDropZone } from "./dom.js";
import { drawPeople, nearestKeypoint } from "./draw.js";
import { curlSnippet, pythonSnippet } from "./snippets.js";
import { drawTimeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const BATCH_FILE = /\.(zip|mp4|avi|webm|mkv|mov)$/i;

export class TryPage {
  constructor(ctx) {
    this.ctx = ctx;
    this.pipelines = [];
    this.selected = null;
    this.file = null;
    this.job = null;
    this.image = null;
    this.controller = null;
    this.codeTab = "curl";
    this.bind();
  }

  bind() {
    bindDropZone($("drop"), $("file"), (file) => this.choose(file));
    $("sample").addEventListener("click", async () => {
      const blob = await (await fetch("sample-astronaut.jpg")).blob();
      this.choose(new File([blob], "astronaut.jpg", { type: "image/jpeg" }));
    });
    $("rerun").addEventListener("click", () => this.file && this.run());
    $("threshold").addEventListener("input", () => this.drawResult());
    const canvas = $("result-canvas");
    canvas.addEventListener("mousemove", (e) => this.hover(e));
    canvas.addEventListener("mouseleave", () => { $("hover").hidden = true; });
    for (const tab of ["curl", "python", "json"]) {
      $(`tab-${tab}`).addEventListener("click", () => { this.codeTab = tab; this.showCode(); });
    }
    $("tab-curl").parentElement.addEventListener("keydown", (e) => this.tabKeys(e));
    $("copy").addEventListener("click", () => this.copy());
  }

  async show() {
    if (this.pipelines.length) return;
    try {
      this.pipelines = (await this.ctx.api.json("/v1/pipelines")).pipelines;
    } catch (error) {
      this.ctx.fail(error);
      return;
    }
    const list = $("pipelines");
    list.replaceChildren();
    for (const p of this.pipelines) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "pipeline";
      button.setAttribute("role", "radio");
      button.dataset.pipeline = p.name;
      button.innerHTML = "<strong></strong><span></span>";
      button.querySelector("strong").textContent = p.name;
      button.querySelector("span").textContent = p.description || `${p.nodes.length} nodes`;
      button.addEventListener("click", () => this.select(p.name));
      list.append(button);
    }
    list.addEventListener("keydown", (e) => this.radioKeys(e));
    const initial = new URLSearchParams(location.hash.split("?")[1]).get("pipeline");
    this.select(this.pipelines.some((p) => p.name === initial) ? initial : this.pipelines[0].name);
  }

  select(name) {
    this.selected = this.pipelines.find((p) => p.name === name);
    for (const b of $("pipelines").children) {
      const on = b.dataset.pipeline === name;
      b.setAttribute("aria-checked", String(on));
      b.tabIndex = on ? 0 : -1;
    }
    drawDag($("dag"), this.selected);
    $("dag-caption").textContent = `${this.selected.name}: ${this.selected.nodes.length} nodes, `
      + `outputs ${Object.keys(this.selected.outputs).join(", ")}`;
    this.ctx.pipelineChanged?.(name);
  }

  radioKeys(e) {
    const keys = { ArrowDown: 1, ArrowRight: 1, ArrowUp: -1, ArrowLeft: -1 };
    if (!(e.key in keys)) return;
    e.preventDefault();
    const i = this.pipelines.indexOf(this.selected);
    const next = this.pipelines[(i + keys[e.key] + this.pipelines.length) % this.pipelines.length];
    this.select(next.name);
    $("pipelines").querySelector(`[data-pipeline="${next.name}"]`).focus();
  }

  choose(file) {
    if (BATCH_FILE.test(file.name) || file.type.startsWith("video/") || file.type.includes("zip")) {
      this.ctx.startBatch(file, this.selected?.name);
      return;
    }
    if (!this.selected) {
      this.status("failed", "No pipeline to send it to: the pipelines could not be loaded.");
      return;
    }
    this.file = file;
    $("rerun").disabled = false;
    this.run();
  }

  async run() {
    this.controller?.abort();
    this.controller = new AbortController();
    const { signal } = this.controller;
    const pipeline = this.selected;
    this.image = await loadImage(this.file);
    this.job = null;
    this.clearResult();
    this.status("queued", `Sending ${this.file.name} to ${pipeline.name}…`);
    if (matchMedia("(max-width: 900px)").matches) $("job-status").scrollIntoView({ block: "start" });
    let accepted;
    try {
      accepted = await this.ctx.api.submitJob(pipeline.name, this.file, signal);
    } catch (error) {
      if (signal.aborted) return;
      this.status("failed", error.message);
      return;
    }
    this.showCode();
    let clockOffset = 0;
    const tick = () => {
      if (this.job && !isTerminal(this.job.status) && !signal.aborted) {
        drawTimeline($("timeline"), pipeline, this.job, Date.now() + clockOffset);
        requestAnimationFrame(tick);
      }
    };
    try {
      for await (const message of this.ctx.api.events(`/v1/jobs/${accepted.id}/events`, { signal })) {
        const data = JSON.parse(message.data);
        if (message.event === "state" || message.event === "end") {
          this.job = data;
        } else if (message.event === "node") {
          const { job: _id, job_status: jobStatus, node, ...state } = data;
          this.job.status = jobStatus;
          this.job.nodes[node] = state;
        } else if (message.event === "problem") {
          this.status("failed", data.detail);
          return;
        }
        const stamp = latestStamp(this.job);
        if (stamp) clockOffset = stamp - Date.now();
        if (this.selected === pipeline) setDagStatus($("dag"), this.job.nodes);
        drawTimeline($("timeline"), pipeline, this.job, Date.now() + clockOffset);
        this.describe(message.event === "node" ? data : null);
        if (message.event === "state") requestAnimationFrame(tick);
      }
    } catch (error) {
      if (!signal.aborted) this.status("failed", error.message);
      return;
    }
    if (this.job && isTerminal(this.job.status)) this.showResult();
  }

  describe(node) {
    const job = this.job;
    if (isTerminal(job.status)) {
      const total = Date.parse(job.updated_at) - Date.parse(job.created_at);
      const text = job.status === "succeeded"
        ? `Succeeded in ${total} ms.`
        : `${job.status}: ${job.error?.code ?? ""} ${job.error?.message ?? ""}`;
      this.status(job.status, text);
    } else if (node) {
      this.status(job.status, `${node.node} ${node.status}${node.attempts > 1 ? ` (attempt ${node.attempts})` : ""}`);
    } else {
      this.status(job.status, `Job ${job.id.slice(0, 8)} ${job.status}…`);
    }
  }

  status(state, text) {
    $("job-status").dataset.status = state;
    $("job-status").textContent = state;
    $("job-message").textContent = text;
  }

  clearResult() {
    for (const id of ["picture-panel", "classes-panel"]) $(id).hidden = true;
    $("timeline").replaceChildren();
    setDagStatus($("dag"), null);
  }

  showResult() {
    $("code-panel").hidden = false;
    this.showCode();
    const result = this.job.result;
    if (!result) return;
    if (result.people) {
      $("picture-panel").hidden = false;
      this.drawResult();
    }
    if (result.top_k) {
      $("classes-panel").hidden = false;
      this.drawClasses(result);
    }
  }

  drawResult() {
    const threshold = Number($("threshold").value);
    $("threshold-value").value = threshold.toFixed(2);
    if (!this.job?.result?.people || !this.image) return;
    const canvas = $("result-canvas");
    const people = this.job.result.people;
    const width = Math.min(this.image.naturalWidth, 1600);
    const scale = width / this.image.naturalWidth;
    canvas.width = width;
    canvas.height = Math.round(this.image.naturalHeight * scale);
    const ctx = canvas.getContext("2d");
    ctx.drawImage(this.image, 0, 0, canvas.width, canvas.height);
    const lineWidth = Math.max(2, canvas.width / 240);
    const shown = drawPeople(ctx, people, { threshold, scale, lineWidth });
    canvas.dataset.people = String(people.length);
    canvas.dataset.keypointsAbove = String(shown);
    canvas.dataset.threshold = threshold.toFixed(2);
    const noun = people.length === 1 ? "person" : "people";
    const summary = `${people.length} ${noun}, ${shown} keypoints above ${threshold.toFixed(2)}`;
    $("result-summary").textContent = summary;
    canvas.setAttribute("aria-label", `${this.file.name} with ${summary}`);
  }

  hover(event) {
    const people = this.job?.result?.people;
    if (!people) return;
    const canvas = $("result-canvas");
    const rect = canvas.getBoundingClientRect();
    const toSource = this.image.naturalWidth / rect.width;
    const x = (event.clientX - rect.left) * toSource;
    const y = (event.clientY - rect.top) * toSource;
    const hit = nearestKeypoint(people, x, y, 14 * toSource, Number($("threshold").value));
    const tip = $("hover");
    if (!hit) { tip.hidden = true; return; }
    const k = hit.keypoint;
    tip.textContent = `#${hit.person + 1} ${k.name}  x ${k.x.toFixed(0)}  y ${k.y.toFixed(0)}  score ${k.score.toFixed(2)}`;
    tip.style.left = `${event.clientX - rect.left}px`;
    tip.style.top = `${event.clientY - rect.top}px`;
    tip.hidden = false;
  }

  drawClasses(result) {
    const top = $("topk");
    top.replaceChildren();
    const best = result.top_k[0]?.score || 1;
    for (const item of result.top_k) {
      const row = document.createElement("div");
      row.className = "bar-row";
      row.setAttribute("role", "listitem");
      row.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
      row.querySelector(".name").textContent = item.label;
      row.querySelector(".fill").style.width = `${(item.score / best) * 100}%`;
      row.querySelector(".value").textContent = item.score.toFixed(3);
      row.setAttribute("aria-label", `${item.label}: ${item.score.toFixed(3)}`);
      top.append(row);
    }
    top.dataset.labels = String(result.top_k.length);
    const members = $("members");
    members.replaceChildren();
    for (const m of result.members || []) {
      const card = document.createElement("div");
      card.className = "member";
      card.setAttribute("role", "listitem");
      card.dataset.agrees = String(m.label === result.label);
      card.innerHTML = '<div class="model"></div><div class="vote"></div><div class="muted"></div>';
      card.querySelector(".model").textContent = m.model;
      card.querySelector(".vote").textContent = m.label;
      card.querySelector(".muted").textContent = `score ${m.score.toFixed(3)}${m.label === result.label ? " · agrees" : ""}`;
      members.append(card);
    }
    members.closest(".panel").querySelector("h3").hidden = !(result.members || []).length;
  }

  showCode() {
    if (!this.selected || !this.file) return;
    $("code-panel").hidden = false;
    for (const tab of ["curl", "python", "json"]) $(`tab-${tab}`).setAttribute("aria-selected", String(tab === this.codeTab));
    const origin = location.origin;
    const withKey = Boolean(this.ctx.api.key);
    const code = {
      curl: () => curlSnippet(origin, this.selected.name, this.file.name, withKey),
      python: () => pythonSnippet(origin, this.selected.name, this.file.name, withKey),
      json: () => (this.job ? JSON.stringify(this.job, null, 2) : "(the job appears here when it finishes)"),
    };
    $("code").textContent = code[this.codeTab]();
  }

  tabKeys(e) {
    const order = ["curl", "python", "json"];
    if (e.key !== "ArrowRight" && e.key !== "ArrowLeft") return;
    const i = order.indexOf(this.codeTab) + (e.key === "ArrowRight" ? 1 : -1);
    this.codeTab = order[(i + order.length) % order.length];
    this.showCode();
    $(`tab-${this.codeTab}`).focus();
  }

  async copy() {
    try {
      await navigator.clipboard.writeText($("code").textContent);
      $("copy").textContent = "Copied";
    } catch {
      $("copy").textContent = "Select and copy";
    }
    setTimeout(() => { $("copy").textContent = "Copy"; }, 1500);
  }
}

export function isTerminal(status) {
  return ["succeeded", "failed", "canceled", "expired"].includes(status);
}

function latestStamp(job) {
  let latest = Date.parse(job.updated_at) || 0;
  for (const n of Object.values(job.nodes)) {
    for (const t of [n.started_at, n.finished_at]) if (t) latest = Math.max(latest, Date.parse(t));
  }
  return latest;
}

function loadImage(file) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`${file.name} is not an image this browser can show`));
    image.src = URL.createObjectURL(file);
  });
}
