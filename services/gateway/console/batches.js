// Batches: a video or a zip through a pipeline, one frame per job, results streaming in, and
// the video played back with each frame's skeletons drawn at its timestamp.
import { bindDropZone } from "./dom.js";
import { drawPeople } from "./draw.js";
import { clear, el, fmt, title } from "./svg.js";

const $ = (id) => document.getElementById(id);

export class BatchesPage {
  constructor(ctx) {
    this.ctx = ctx;
    this.file = null;
    this.lines = new Map();
    this.batch = null;
    this.controller = null;
    this.bind();
  }

  bind() {
    bindDropZone($("batch-drop"), $("batch-file"), (file) => this.choose(file));
    $("batch-form").addEventListener("submit", (e) => { e.preventDefault(); this.run(); });
    $("batch-download").addEventListener("click", () => this.download());
    const video = $("batch-video");
    video.addEventListener("loadedmetadata", () => this.sizeOverlay());
    video.addEventListener("seeked", () => this.drawOverlay(video.currentTime));
    video.addEventListener("error", () => {
      $("player-panel").hidden = true;
      $("batch-message").textContent += " (this browser cannot play this video format: the results are listed below)";
    });
    const onFrame = (_now, meta) => {
      this.drawOverlay(meta.mediaTime);
      video.requestVideoFrameCallback(onFrame);
    };
    if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(onFrame);
    else video.addEventListener("timeupdate", () => this.drawOverlay(video.currentTime));
  }

  setPipelines(pipelines, selected) {
    const select = $("batch-pipeline");
    if (!select.options.length) {
      for (const p of pipelines) select.append(new Option(p.name, p.name));
    }
    if (selected) select.value = selected;
  }

  choose(file) {
    this.file = file;
    $("batch-file-name").textContent = `${file.name} · ${(file.size / 1e6).toFixed(1)} MB`;
    $("batch-submit").disabled = false;
  }

  /** From Try it: a video or zip dropped there runs here at once. */
  start(file, pipeline) {
    if (pipeline) $("batch-pipeline").value = pipeline;
    this.choose(file);
    this.run();
  }

  async run() {
    this.controller?.abort();
    this.controller = new AbortController();
    const { signal } = this.controller;
    this.lines = new Map();
    $("frame-list").replaceChildren();
    $("batch-download").disabled = true;
    this.status("queued", `Uploading ${this.file.name}…`);
    this.progress({ total: null, done: 0, failed: 0, status: "queued" });
    const video = $("batch-video");
    const isZip = /\.zip$/i.test(this.file.name) || this.file.type.includes("zip");
    $("player-panel").hidden = isZip;
    if (!isZip) {
      video.src = URL.createObjectURL(this.file);
    }
    try {
      this.batch = await this.ctx.api.submitBatch($("batch-pipeline").value, this.file, {
        frame_stride: $("frame-stride").value, max_frames: $("max-frames").value,
      });
    } catch (error) {
      this.status("failed", error.message);
      return;
    }
    this.status("running", `Batch ${this.batch.id.slice(0, 8)} (${this.batch.kind}) started.`);
    try {
      for await (const message of this.ctx.api.events(`/v1/batches/${this.batch.id}/events`, { signal })) {
        const data = JSON.parse(message.data);
        if (message.event === "frame") this.addFrame(data);
        else if (message.event === "progress" || message.event === "end") this.progress(data);
        else if (message.event === "problem") this.status("failed", data.detail);
      }
    } catch (error) {
      if (!signal.aborted) this.status("failed", error.message);
    }
  }

  progress(state) {
    const finished = state.done + state.failed;
    const bar = $("batch-progress");
    bar.max = state.total || Math.max(finished, 1);
    bar.value = finished;
    bar.dataset.done = String(state.done);
    bar.dataset.failed = String(state.failed);
    bar.dataset.total = state.total === null ? "" : String(state.total);
    bar.dataset.status = state.status;
    $("batch-count").textContent = `${finished} / ${state.total ?? "?"} frames${state.failed ? `, ${state.failed} failed` : ""}`;
    if (["succeeded", "failed", "canceled", "expired"].includes(state.status)) {
      const text = state.status === "succeeded"
        ? `Done: ${state.done} frames${state.failed ? `, ${state.failed} failed` : ""}.`
        : `Batch ${state.status}${state.error ? `: ${state.error.message}` : ""}`;
      this.status(state.status, text);
    } else if (state.total !== undefined && this.batch) {
      this.status(state.status, `${finished} of ${state.total ?? "?"} frames finished…`);
    }
  }

  addFrame(line) {
    if (this.lines.has(line.frame)) return; // a reconnect sends every frame again
    this.lines.set(line.frame, line);
    $("batch-download").disabled = false;
    const item = document.createElement("li");
    item.dataset.frame = String(line.frame);
    const where = line.name ?? `${fmt(line.timestamp_ms / 1000, 2)} s`;
    const what = line.status !== "succeeded"
      ? line.error?.code ?? line.status
      : line.people ? `${line.people.length} ${line.people.length === 1 ? "person" : "people"}`
        : line.label ? `${line.label} (${fmt(line.score, 2)})` : "done";
    item.innerHTML = '<span class="idx"></span><span class="where"></span><span class="what"></span>';
    item.querySelector(".idx").textContent = `#${line.frame}`;
    item.querySelector(".where").textContent = where;
    item.querySelector(".what").textContent = what;
    if (line.status !== "succeeded") item.querySelector(".what").className = "what bad";
    const list = $("frame-list");
    const after = [...list.children].find((li) => Number(li.dataset.frame) > line.frame);
    list.insertBefore(item, after ?? null);
    this.drawChart();
    this.drawOverlay($("batch-video").currentTime);
  }

  drawChart() {
    const svg = $("frame-chart");
    const frames = [...this.lines.values()].sort((a, b) => a.frame - b.frame);
    const value = (l) => (l.people ? l.people.length : l.score ?? 0);
    const max = Math.max(1, ...frames.map(value));
    const width = 560;
    const height = 120;
    clear(svg, width, height);
    const last = frames[frames.length - 1]?.frame ?? 0;
    const step = Math.min((width - 30) / Math.max(last + 1, 1), 28);
    svg.append(el("text", { x: 0, y: 12, class: "empty" }, frames[0]?.people ? "people per frame" : "score per frame"));
    for (const l of frames) {
      const h = (value(l) / max) * (height - 36);
      const r = el("rect", {
        x: 30 + l.frame * step, y: height - 16 - h, width: Math.max(step - 2, 1.5), height: h,
        rx: 2, fill: l.status === "succeeded" ? "#4c2fb8" : "#b42318",
      });
      r.append(el("title", {}, `frame ${l.frame}: ${value(l)}`));
      svg.append(r);
    }
    svg.append(el("text", { x: 0, y: height - 16 - (height - 36) + 10, class: "empty" }, String(max)));
    svg.dataset.frames = String(frames.length);
    title(svg, `${frames.length} frames finished; up to ${max} ${frames[0]?.people ? "people" : "score"} per frame`);
  }

  sizeOverlay() {
    const video = $("batch-video");
    const canvas = $("batch-overlay");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    this.drawOverlay(video.currentTime);
  }

  /** Draw the result of the frame shown at ``seconds``: the latest frame whose timestamp is
   * at or before it (with a stride, the frames between are drawn faded). */
  drawOverlay(seconds) {
    const canvas = $("batch-overlay");
    if (!canvas.width) return;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const t = seconds * 1000 + 1; // within a millisecond counts as this frame
    let best = null;
    for (const line of this.lines.values()) {
      if (line.timestamp_ms === null || line.timestamp_ms > t) continue;
      if (!best || line.timestamp_ms > best.timestamp_ms) best = line;
    }
    if (!best || !best.people) {
      delete canvas.dataset.drawnFrame;
      $("player-summary").textContent = "";
      return;
    }
    const exact = t - best.timestamp_ms < 2;
    ctx.globalAlpha = exact ? 1 : 0.45;
    drawPeople(ctx, best.people, { threshold: 0.3, lineWidth: Math.max(2, canvas.width / 250) });
    ctx.globalAlpha = 1;
    canvas.dataset.drawnFrame = String(best.frame);
    canvas.dataset.people = String(best.people.length);
    canvas.dataset.exact = String(exact);
    $("player-summary").textContent = `frame #${best.frame} at ${fmt(best.timestamp_ms / 1000, 2)} s: `
      + `${best.people.length} ${best.people.length === 1 ? "person" : "people"}`;
  }

  download() {
    const text = [...this.lines.values()].sort((a, b) => a.frame - b.frame)
      .map((l) => JSON.stringify(l)).join("\n");
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([`${text}\n`], { type: "application/x-ndjson" }));
    a.download = `batch-${this.batch.id}.jsonl`;
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 1000);
  }

  status(state, text) {
    $("batch-status").dataset.status = state;
    $("batch-status").textContent = state;
    $("batch-message").textContent = text;
  }
}
