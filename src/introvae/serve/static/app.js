// The explorer page's behaviour: asks the server (introvae.serve.app) for decoded images and shows them.
// Plain JavaScript with no build step. Every server error arrives as {"error": "one sentence"} and is shown.
"use strict";

const $ = (id) => document.getElementById(id);

const SCORE_LABELS = {
  joint_typicality: "joint typicality: −log p(x), KL and compressed lengths together (training std. devs.)",
  typicality: "typicality: |−log p(x) − training mean| (training std. devs.)",
  kl_typicality: "KL typicality: |KL − training mean| (training std. devs.)",
  complexity_png_bpd: "−log p(x) − PNG length (bits / dim)",
  complexity_webp_bpd: "−log p(x) − WebP length (bits / dim)",
  neg_elbo_bpd: "−ELBO (bits / dim)",
  neg_log_px_bpd: "−log p(x), importance-weighted (bits / dim)",
  neg_elbo_nats: "−ELBO (nats)",
  neg_log_px_nats: "−log p(x), importance-weighted (nats)",
  reconstruction: "−log p(x | z), expected over q (nats)",
  kl: "KL of the posterior (nats)",
};

const state = {
  info: null,
  explore: null,        // {endpoint, src, label}: the code the sliders move
  offsets: {},          // slider key -> value
  a: null, b: null,     // interpolation ends, like `explore`
  frames: [],           // decoded interpolation frames (data URLs)
};

class ServerError extends Error {}

async function api(path, options = {}) {
  let response;
  try {
    response = await fetch(path, options);
  } catch (e) {
    throw new ServerError(`the server cannot be reached (${e.message}): is introvae serve still running?`);
  }
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON: described below */ }
  if (!response.ok) {
    throw new ServerError(body && body.error ? body.error : `the server answered ${response.status} ${response.statusText}.`);
  }
  return body;
}

function postJSON(path, body) {
  return api(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
}

function showError(element, error) {
  element.textContent = error instanceof Error ? error.message : String(error);
  element.hidden = false;
}

function clearError(element) { element.hidden = true; element.textContent = ""; }

function pickMode() { return document.querySelector("input[name=pick]:checked").value; }

function thumbnail(src, endpoint, label) {
  const img = document.createElement("img");
  img.src = src;
  img.alt = label;
  img.title = `${label} (click: ${pickMode() === "explore" ? "explore it" : "use it"})`;
  img.dataset.endpoint = JSON.stringify(endpoint);
  img.addEventListener("click", () => pick({ endpoint, src, label }));
  return img;
}

function pick(item) {
  const mode = pickMode();
  if (mode === "explore") setExplore(item);
  else setEnd(mode, item);
}

// ---- samples

async function loadSamples() {
  const seed = Math.max(0, Math.floor(Number($("seed").value) || 0));
  const count = Math.min(64, Math.max(1, Math.floor(Number($("count").value) || 16)));
  try {
    const result = await api(`/api/samples?seed=${seed}&count=${count}`);
    const grid = $("samples");
    grid.replaceChildren(...result.images.map((s) =>
      thumbnail(s.image, { seed: s.seed, index: s.index }, `seed ${s.seed}, sample ${s.index}`)));
    clearError($("error"));
    return result.images;
  } catch (e) {
    showError($("error"), e);
    return [];
  }
}

// ---- upload

async function upload(file) {
  const errorBox = $("upload-error");
  clearError(errorBox);
  const limit = state.info ? state.info.limits.max_upload_bytes : Infinity;
  if (file.size > limit) {
    // Checked here too, so that a large file is not sent at all.
    showError(errorBox, `${file.name} is ${(file.size / 2 ** 20).toFixed(1)} MiB; the page takes images up to ${limit / 2 ** 20} MiB: choose a smaller file.`);
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name);
  let result;
  try {
    result = await api("/api/upload", { method: "POST", body: form });
  } catch (e) {
    showError(errorBox, e);
    return;
  }
  $("upload-image").src = result.image;
  $("upload-reconstruction").src = result.reconstruction;
  $("upload-note").textContent = result.resized ? `${result.name}: ${result.resized}.` : result.name;
  renderScores(result);
  renderPositions(result.attributes);
  $("upload-result").hidden = false;
  const item = { endpoint: { upload: result.id }, src: result.image, label: result.name };
  $("uploads").prepend(thumbnail(item.src, item.endpoint, item.label));
  setExplore(item);
}

function row(cells) {
  const tr = document.createElement("tr");
  cells.forEach(([text, cls]) => {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    tr.append(td);
  });
  return tr;
}

function renderScores(result) {
  const scored = state.info ? state.info.reference_scored : 0;
  // The default score first (the server names it), then the labelled scores in the order above, then any others.
  const defaultKey = state.info ? state.info.default_score : null;
  const keys = [...Object.keys(SCORE_LABELS).filter((k) => k in result.scores),
    ...Object.keys(result.scores).filter((k) => !(k in SCORE_LABELS))];
  keys.sort((a, b) => (b === defaultKey) - (a === defaultKey));
  const rows = keys.map((key) => {
    const value = result.scores[key];
    const percentile = result.percentiles[key];
    const where = percentile === null || percentile === undefined ? "" :
      `above ${percentile.toFixed(0)} % of ${scored} training images`;
    const label = (SCORE_LABELS[key] || key) + (key === defaultKey ? " (default)" : "");
    const tr = row([[label], [Number.isFinite(value) ? value.toPrecision(4) : "not finite", "value"], [where, "note"]]);
    tr.dataset.score = key;
    if (key === defaultKey) tr.className = "default-score";
    return tr;
  });
  $("scores").tBodies[0].replaceChildren(...rows);
}

function renderPositions(positions) {
  const entries = Object.entries(positions || {});
  $("positions").hidden = entries.length === 0;
  $("positions").tBodies[0].replaceChildren(...entries.map(([name, value]) => row([[name], [value.toFixed(2), "value"]])));
}

// ---- exploring along the sliders

function setExplore(item) {
  state.explore = item;
  $("explore-caption").textContent = item.label;
  document.querySelectorAll(".grid img").forEach((img) =>
    img.classList.toggle("chosen", img.dataset.endpoint === JSON.stringify(item.endpoint)));
  redecode();
}

let decodeBusy = false, decodeAgain = false;

// While a slider is dragged, at most one request is in flight; the newest position is decoded when it returns.
async function redecode() {
  if (!state.explore) return;
  if (decodeBusy) { decodeAgain = true; return; }
  decodeBusy = true;
  try {
    do {
      decodeAgain = false;
      const result = await postJSON("/api/decode", { endpoint: state.explore.endpoint, offsets: { ...state.offsets } });
      $("explore-image").src = result.image;
    } while (decodeAgain);
    clearError($("error"));
  } catch (e) {
    showError($("error"), e);
  } finally {
    decodeBusy = false;
  }
}

function renderSliders(directions) {
  const rows = directions.map((d) => {
    const div = document.createElement("div");
    div.className = "slider";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = d.kind === "attribute" ? `attribute: ${d.label}` : d.label;
    label.title = d.note;
    const input = document.createElement("input");
    Object.assign(input, { type: "range", min: d.min, max: d.max, step: 0.05, value: 0 });
    input.dataset.key = d.key;
    input.setAttribute("aria-label", label.textContent);
    const output = document.createElement("output");
    output.textContent = "0.00";
    input.addEventListener("input", () => {
      const value = Number(input.value);
      output.textContent = value.toFixed(2);
      if (value === 0) delete state.offsets[d.key]; else state.offsets[d.key] = value;
      redecode();
    });
    div.append(label, input, output);
    return div;
  });
  if (rows.length === 0) {
    const p = document.createElement("p");
    p.className = "note";
    p.textContent = "No directions to move along.";
    rows.push(p);
  }
  $("sliders").replaceChildren(...rows);
}

function resetSliders() {
  state.offsets = {};
  document.querySelectorAll("#sliders input").forEach((input) => {
    input.value = 0;
    input.nextElementSibling.textContent = "0.00";
  });
  redecode();
}

// ---- interpolation

function setEnd(which, item) {
  state[which] = item;
  $(which === "a" ? "interp-a" : "interp-b").src = item.src;
  interpolate();
}

async function interpolate() {
  if (!state.a || !state.b) return;
  const steps = Number($("interp-t").max) + 1;
  try {
    const result = await postJSON("/api/interpolate",
      { a: state.a.endpoint, b: state.b.endpoint, steps, method: $("interp-method").value });
    state.frames = result.frames;
    $("interp-strip").replaceChildren(...state.frames.map((src, i) => {
      const img = document.createElement("img");
      img.src = src;
      img.alt = `step ${i}`;
      img.addEventListener("click", () => { $("interp-t").value = i; showFrame(); });
      return img;
    }));
    showFrame();
  } catch (e) {
    showError($("error"), e);
  }
}

function showFrame() {
  const i = Number($("interp-t").value);
  if (state.frames[i]) $("interp-image").src = state.frames[i];
  $("interp-caption").textContent = `t = ${(i / (state.frames.length - 1 || 1)).toFixed(2)}`;
}

// ---- the run

function renderInfo(info) {
  $("run-info").textContent = `${info.run}: ${info.model} at step ${info.step}, ${info.image_size} × ${info.image_size} ` +
    `× ${info.channels}, ${info.latent_dim}-dimensional codes, data ${info.data}`;
  $("notes").replaceChildren(...info.notes.map((text) => {
    const li = document.createElement("li");
    li.textContent = text;
    return li;
  }));
  renderSliders(info.directions);
  if (info.has_dynamics) {
    $("dynamics").src = "/api/dynamics.png";
    $("dynamics").hidden = false;
  } else {
    $("no-dynamics").hidden = false;
  }
  if (info.evaluation) $("evaluation").textContent = `${info.evaluation.file}\n\n${info.evaluation.table}`;
}

function wireDrop() {
  const drop = $("drop");
  ["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  }));
  ["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) upload(file);
  });
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) upload(file);
    $("file").value = "";  // choosing the same file again uploads it again
  });
}

async function main() {
  wireDrop();
  $("samples-form").addEventListener("submit", (event) => { event.preventDefault(); loadSamples(); });
  $("reroll").addEventListener("click", () => {
    $("seed").value = Math.floor(Math.random() * 1e6);
    loadSamples();
  });
  $("reset").addEventListener("click", resetSliders);
  $("interp-t").addEventListener("input", showFrame);
  $("interp-method").addEventListener("change", interpolate);
  try {
    state.info = await api("/api/info");
  } catch (e) {
    showError($("error"), e);
    return;
  }
  renderInfo(state.info);
  const samples = await loadSamples();
  if (samples.length > 0) {
    const item = (s) => ({ endpoint: { seed: s.seed, index: s.index }, src: s.image, label: `seed ${s.seed}, sample ${s.index}` });
    state.a = item(samples[0]);
    $("interp-a").src = state.a.src;
    if (samples.length > 1) setEnd("b", item(samples[1]));
    setExplore(item(samples[0]));
  }
  document.body.dataset.ready = "true";  // for tests: the first images are on the page
}

main();
