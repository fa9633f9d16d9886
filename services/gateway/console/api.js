// The public job API, as any client sees it. The API key travels in the Authorization header,
// never in a URL: event streams are read with fetch() (a browser EventSource cannot send
// headers), so keys stay out of access logs, browser history and Referer headers.

const KEY_STORAGE = "posefleet.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.code = problem?.code || "http_error";
    this.retryAfter = problem?.retryAfter;
  }
}

export class Api {
  constructor(base = "") {
    this.base = base;
    this.key = sessionStorage.getItem(KEY_STORAGE) || "";
  }

  setKey(key) {
    this.key = key.trim();
    if (this.key) sessionStorage.setItem(KEY_STORAGE, this.key);
    else sessionStorage.removeItem(KEY_STORAGE);
  }

  headers(extra = {}) {
    return this.key ? { Authorization: `Bearer ${this.key}`, ...extra } : extra;
  }

  async request(path, { method = "GET", body, headers = {}, signal } = {}) {
    const response = await fetch(this.base + path, {
      method, body, signal, headers: this.headers(headers),
    });
    if (!response.ok) throw await problemOf(response);
    return response;
  }

  async json(path, options) {
    return (await this.request(path, options)).json();
  }

  async text(path, options) {
    return (await this.request(path, options)).text();
  }

  submitJob(pipeline, file, signal) {
    return this.json(`/v1/pipelines/${encodeURIComponent(pipeline)}/jobs`, {
      method: "POST", body: file, signal,
      headers: { "Content-Type": file.type || "application/octet-stream" },
    });
  }

  submitBatch(pipeline, file, params) {
    const query = new URLSearchParams(params).toString();
    return this.json(`/v1/pipelines/${encodeURIComponent(pipeline)}/batches?${query}`, {
      method: "POST", body: file, headers: { "Content-Type": "application/octet-stream" },
    });
  }

  /** Server-sent events over fetch: yields {event, data, id}; reconnects with Last-Event-ID
   * after the advised retry delay when the stream drops, and returns after the `end` event
   * (or on 204, the server's "this stream is over"). */
  async *events(path, { signal } = {}) {
    let lastId = null;
    let retryMs = 2000;
    let failures = 0;
    while (!signal?.aborted) {
      let response;
      try {
        const headers = this.headers({ Accept: "text/event-stream" });
        if (lastId) headers["Last-Event-ID"] = lastId;
        response = await fetch(this.base + path, { headers, signal, cache: "no-store" });
      } catch (error) {
        if (signal?.aborted) return;
        if (++failures > 5) throw error;
        await sleep(retryMs, signal);
        continue;
      }
      if (response.status === 204) return;
      if (!response.ok) throw await problemOf(response);
      failures = 0;
      try {
        for await (const message of parseEventStream(response.body)) {
          if (message.retry !== undefined) retryMs = message.retry;
          if (message.id !== undefined) lastId = message.id;
          if (message.data === undefined) continue;
          yield message;
          if (message.event === "end") return;
        }
      } catch (error) {
        if (signal?.aborted) return;
      }
      await sleep(retryMs, signal);
    }
  }
}

async function problemOf(response) {
  let problem = null;
  try { problem = await response.json(); } catch { /* not JSON */ }
  return new ApiError(response.status, {
    ...problem, retryAfter: response.headers.get("Retry-After"),
  });
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
  });
}

/** The text/event-stream format (HTML Living Standard §9.2): fields until a blank line. */
export async function* parseEventStream(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let message = {};
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === "") {
          if (Object.keys(message).length) yield message;
          message = {};
          continue;
        }
        if (line.startsWith(":")) continue; // keep-alive comment
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (field === "data") message.data = message.data === undefined ? value : `${message.data}\n${value}`;
        else if (field === "event") message.event = value;
        else if (field === "id") message.id = value;
        else if (field === "retry" && /^\d+$/.test(value)) message.retry = Number(value);
      }
    }
  } finally {
    reader.releaseLock();
  }
}
