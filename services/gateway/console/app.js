// The console's shell: pages by URL hash (#/try, #/batches, #/fleet), the API key, readiness.
import { Api } from "./api.js";
import { BatchesPage } from "./batches.js";
import { FleetPage } from "./fleet.js";
import { TryPage } from "./try.js";

const $ = (id) => document.getElementById(id);
const api = new Api();

const ctx = {
  api,
  fail(error) {
    if (error.status === 401) {
      openKeyForm(api.key ? "That API key was refused; paste a valid one." : "This gateway needs an API key.");
    } else if (error.status === 403) {
      notice(`${error.message} (ask for an operator's key to see the whole fleet).`);
    } else {
      notice(error.message);
    }
  },
  startBatch(file, pipeline) {
    location.hash = "#/batches";
    pages.batches.start(file, pipeline);
  },
  pipelineChanged(name) {
    pages.batches.setPipelines(pages.try.pipelines, name);
  },
};

const pages = {
  try: new TryPage(ctx),
  batches: new BatchesPage(ctx),
  fleet: new FleetPage(ctx),
};
let current = null;

function route() {
  const name = location.hash.replace(/^#\/?/, "").split("?")[0] || "try";
  const page = pages[name] ? name : "try";
  if (page === current) return;
  pages[current]?.hide?.();
  for (const section of document.querySelectorAll(".page")) section.hidden = section.id !== page;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.dataset.page === page) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  current = page;
  document.title = `${{ try: "Try it", batches: "Batches", fleet: "Fleet" }[page]} · Posefleet`;
  pages.try.show().then(() => pages.batches.setPipelines(pages.try.pipelines, pages.try.selected?.name));
  if (page !== "try") pages[page].show?.();
}

function notice(text) {
  const box = $("notice");
  box.textContent = text;
  box.hidden = !text;
}

function openKeyForm(message) {
  $("key-form").hidden = false;
  $("key-toggle").setAttribute("aria-expanded", "true");
  if (message) notice(message);
  $("api-key").focus();
}

$("key-toggle").addEventListener("click", () => {
  const open = $("key-form").hidden;
  $("key-form").hidden = !open;
  $("key-toggle").setAttribute("aria-expanded", String(open));
  if (open) $("api-key").focus();
});
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  api.setKey($("api-key").value);
  $("api-key").value = "";
  $("key-form").hidden = true;
  $("key-toggle").setAttribute("aria-expanded", "false");
  $("key-toggle").textContent = api.key ? "API key ✓" : "API key";
  notice("");
  pages.try.pipelines = [];
  const page = current;
  current = null;
  location.hash = `#/${page}`;
  route();
});
if (api.key) $("key-toggle").textContent = "API key ✓";

async function health() {
  const el = $("health");
  try {
    const response = await fetch("/readyz", { cache: "no-store" });
    const body = await response.json();
    el.dataset.state = response.ok ? "ready" : "down";
    el.textContent = response.ok ? "gateway ready" : `not ready: redis ${body.checks?.redis}`;
  } catch {
    el.dataset.state = "down";
    el.textContent = "gateway unreachable";
  }
}

window.addEventListener("hashchange", route);
route();
health();
setInterval(health, 10000);
