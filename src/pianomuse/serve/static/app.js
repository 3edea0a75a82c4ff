"use strict";
// The Piano Muse page. It talks only to the server that sent it (/api/...): the piano roll
// (roll.js) is drawn on a canvas and the piece is played by a small Web Audio synthesiser
// (audio.js), so the page needs no third-party script.

const $ = (id) => document.getElementById(id);
const state = {
  piece: null, // the current piece's view: bars, bar_beats, bar_seconds, notes, chords
  b64: null, // the current piece's MIDI, base64
  selection: null, // [first, last] 0-based bars chosen to rewrite or accompany
  drag: null, // bar where a selection drag started
  limits: null,
  urls: [], // the candidates' download links, released when new candidates replace them
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------- messages and progress ---------------------------------------------------------
function showMessage(text, kind = "error") {
  const m = $("message");
  m.textContent = text;
  m.className = kind === "info" ? "info" : "";
  m.hidden = false;
}
function clearMessage() {
  $("message").hidden = true;
}

let progressTimer = null;
function startProgress(label) {
  const t0 = performance.now();
  $("progress").hidden = false;
  $("progress-fill").style.width = "0%";
  $("progress-text").textContent = label;
  for (const b of document.querySelectorAll("form button")) b.disabled = true;
  progressTimer = setInterval(async () => {
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    try {
      const s = await api("/api/status");
      const share = s.busy ? s.progress : 0;
      $("progress-fill").style.width = `${Math.round(100 * share)}%`;
      const queue = s.waiting ? ` · ${s.waiting} request(s) waiting` : "";
      $("progress-text").textContent = `${label} ${Math.round(100 * share)}% · ${secs} s${queue}`;
    } catch (e) {
      $("progress-text").textContent = `${label} ${secs} s`;
    }
  }, 400);
}
function stopProgress() {
  clearInterval(progressTimer);
  $("progress").hidden = true;
  for (const b of document.querySelectorAll("form button")) b.disabled = false;
  updateSelection();
}

// ---------- the API -----------------------------------------------------------------------
// The answer's JSON, or with `asBlob` its body as a Blob (a sound file).
async function api(path, body, onBusy, asBlob = false) {
  for (let attempt = 0; ; attempt++) {
    let res;
    try {
      res = await fetch(path, body === undefined ? {} : {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
    } catch (e) {
      throw new Error("the Piano Muse server cannot be reached: is it still running?");
    }
    // Busy (503 with Retry-After): wait and ask again. A 503 without it (a request stopped at
    // its time limit, or a server shutting down) is final.
    if (res.status === 503 && res.headers.get("Retry-After") && attempt < 30) {
      const wait = Math.min(Math.max(parseInt(res.headers.get("Retry-After"), 10) || 2, 1), 30);
      if (onBusy) onBusy(wait);
      await sleep(wait * 1000);
      continue;
    }
    if (res.ok && asBlob) return await res.blob();
    let data = null;
    try {
      data = await res.json();
    } catch (e) {
      // not JSON: reported below by status
    }
    if (!res.ok) {
      const detail = data && typeof data.detail === "string" ? data.detail : null;
      throw new Error(detail || `the server answered ${res.status} ${res.statusText}`);
    }
    return data;
  }
}

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}
function fromBase64(b64) {
  const s = atob(b64);
  const a = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) a[i] = s.charCodeAt(i);
  return a;
}

// ---------- steering ----------------------------------------------------------------------
const KEY_TONICS = {
  major: ["C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"],
  minor: ["C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B"],
};

function fillKeys(select) {
  for (const [mode, tonics] of Object.entries(KEY_TONICS)) {
    const group = document.createElement("optgroup");
    group.label = mode;
    for (const tonic of tonics) group.appendChild(new Option(`${tonic} ${mode}`));
    select.appendChild(group);
  }
}

// The steering fields the user set; empty ones are left out, so the model stays free there.
function steeringFields() {
  const f = $("steering-form").elements;
  const text = (name) => f[name].value.trim();
  const out = {};
  if (text("chords")) out.chords = text("chords");
  if (f.key.value) out.key = f.key.value;
  if (f.chromatic.checked) out.chromatic = true;
  if (text("low") && text("high")) out.range = `${text("low")}-${text("high")}`;
  if (text("bass_range")) out.bass_range = text("bass_range");
  const density = f.density.value === "notes" ? text("notes_per_bar") : f.density.value;
  if (density) out.density = density;
  if (text("max_polyphony")) out.max_polyphony = parseInt(text("max_polyphony"), 10);
  return out;
}

// A starting point to edit: the piece's last chords, one a bar.
function prefillChords(view) {
  const last = (view.chords || []).slice(-4).map((c) => c[1]);
  $("steering-form").elements.chords.value = last.join(" ");
}

// The typed chords laid over bars first..last as the server lays them (a bar each, or
// "C:2" beats; the progression repeated to fill the bars), for the chord band only: the server
// reads the text itself and answers a mistake with a message, so nothing is checked here.
function plannedChords(text, view, [first, last]) {
  const barLen = view.bar_beats[first + 1] - view.bar_beats[first];
  const steps = [];
  let at = 0;
  for (const item of text.replace(/\|/g, " ").split(/\s+/).filter(Boolean)) {
    const [symbol, length] = item.split(":");
    const beats = length ? Number(length) : barLen;
    if (!symbol || !(beats > 0)) return [];
    steps.push([at, symbol]);
    at += beats;
  }
  if (!steps.length) return [];
  const period = Math.ceil(at / barLen - 1e-9) * barLen;
  const start = view.bar_beats[first];
  const end = view.bar_beats[last + 1];
  const out = [];
  for (let base = start; base < end; base += period) {
    for (const [beat, symbol] of steps) if (base + beat < end) out.push([base + beat, symbol]);
  }
  return out;
}

// ---------- the piece ---------------------------------------------------------------------
function fmtTime(s) {
  const m = Math.floor(s / 60);
  return `${m}:${String(Math.round(s - 60 * m)).padStart(2, "0")}`;
}

function setPiece(view, b64) {
  player.stop();
  state.piece = view;
  state.b64 = b64;
  state.selection = null;
  $("piece").hidden = false;
  $("actions").hidden = false;
  $("piece-name").textContent = view.name;
  const secs = view.bar_seconds[view.bar_seconds.length - 1];
  $("piece-info").textContent = `${view.bars} bars · ${view.notes.length} notes · ${fmtTime(secs)}`;
  drawPiece();
  updateSelection();
}

// The piece with its chords; over a selection, the chords typed for the new bars instead.
function drawPiece() {
  const view = state.piece;
  const sel = state.selection;
  const opts = { selection: sel, chords: view.chords || [] };
  if (sel) {
    const from = view.bar_beats[sel[0]];
    const to = view.bar_beats[sel[1] + 1];
    const planned = plannedChords($("steering-form").elements.chords.value, view, sel);
    if (planned.length) {
      opts.chords = opts.chords.filter((c) => c[0] < from || c[0] >= to).concat(planned);
      opts.chords.sort((a, b) => a[0] - b[0]);
      opts.chordsNew = { from, to };
    }
  }
  drawRoll($("roll"), view, opts);
}

function barRange(first, last) {
  return first === last ? `bar ${first}` : `bars ${first}–${last}`;
}

// Accompany works without a selection too (the whole piece; the server says if it is too long).
function updateSelection() {
  const sel = state.selection;
  const max = state.limits ? state.limits.max_gap_bars : 8;
  const busy = !$("progress").hidden;
  const tooLong = sel !== null && sel[1] - sel[0] + 1 > max;
  $("infill").disabled = !sel || tooLong || busy;
  $("accompany").disabled = tooLong || busy;
  if (!sel) {
    $("gap").textContent = "none selected";
    return;
  }
  const text = barRange(sel[0] + 1, sel[1] + 1);
  $("gap").textContent = tooLong ? `${text}: at most ${max} bars` : text;
  $("selection").textContent = `Selected ${text}.`;
}

async function loadFile(file) {
  clearMessage();
  if (!file) return;
  const limit = state.limits ? state.limits.max_upload_bytes : Infinity;
  if (file.size > limit) {
    showMessage(`${file.name} is ${(file.size / 1e6).toFixed(1)} MB; this server accepts MIDI files up to ${(limit / 1e6).toFixed(1)} MB.`);
    return;
  }
  const b64 = toBase64(await file.arrayBuffer());
  startProgress("Reading the piece…");
  try {
    const view = await api("/api/piece", { midi: b64, name: file.name });
    setPiece(view, b64);
    prefillChords(view);
    $("results").hidden = true;
  } catch (e) {
    showMessage(e.message);
  } finally {
    stopProgress();
  }
}

// ---------- generation --------------------------------------------------------------------
function numbers(form, names) {
  const out = {};
  for (const name of names) out[name] = Number(form.elements[name].value);
  return out;
}

// Where a request of `kind` (continue, infill, accompany) goes, and its own fields.
function request(kind, form) {
  const sel = state.selection;
  const bars = sel ? { first_bar: sel[0] + 1, last_bar: sel[1] + 1 } : {};
  if (kind === "continue") {
    const fields = { bars: Number(form.elements.bars.value) };
    return { path: "/api/complete", label: "Continuing…", fields };
  }
  if (kind === "infill") return { path: "/api/infill", label: "Rewriting…", fields: bars };
  const fields = { write: "accompaniment", ...bars };
  return { path: "/api/arrange", label: "Accompanying…", fields };
}

async function generate(kind) {
  clearMessage();
  player.stop();
  const form = $(kind === "continue" ? "continue-form" : "infill-form");
  const { path, label, fields } = request(kind, form);
  const body = {
    midi: state.b64,
    name: state.piece.name,
    ...numbers(form, ["candidates", "temperature", "top_p", "seed"]),
    ...fields,
    ...steeringFields(),
  };
  const style = $("steering-form").elements.style.value;
  if (style) body.style = style;
  startProgress(label);
  try {
    const out = await api(path, body, (wait) => {
      $("progress-text").textContent = `The server is busy with other requests; trying again in ${wait} s…`;
    });
    showResults(out);
  } catch (e) {
    showMessage(e.message);
  } finally {
    stopProgress();
  }
}

const TITLES = {
  continuation: (n, first) => `${n} continuations from bar ${first}`,
  infill: (n, first, last) => `${n} rewrites of ${barRange(first, last)}`,
  arrange: (n, first, last) => `${n} accompaniments of ${barRange(first, last)}`,
};

function showResults(out) {
  const first = out.first_new_bar; // 1-based
  const last = first + out.new_bars - 1;
  const n = out.candidates.length;
  const title = (TITLES[out.kind] || TITLES.infill)(n, first, last);
  $("results-title").textContent = `${title} (${out.seconds.toFixed(1)} s)`;
  for (const url of state.urls) URL.revokeObjectURL(url);
  state.urls = [];
  const box = $("candidates");
  box.replaceChildren();
  $("results").hidden = false; // laid out first, so that the rolls can take the cards' width
  for (const c of out.candidates) addCandidate(box, out, c);
  $("results").scrollIntoView({ behavior: "smooth", block: "start" });
}

function downloadLink(text, className, blob, filename) {
  const link = document.createElement("a");
  link.className = `button secondary ${className}`;
  link.textContent = text;
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  state.urls.push(link.href);
  return link;
}

function button(text, className, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = text;
  if (className) b.className = className;
  b.onclick = onclick;
  return b;
}

function acceptMessage(out, c, first, last) {
  if (out.kind === "continuation") {
    return `Candidate ${c.rank} is now part of the piece (${c.view.bars} bars).`;
  }
  const verb = out.kind === "arrange" ? "accompanies" : "fills";
  return `Candidate ${c.rank} now ${verb} ${barRange(first, last)}.`;
}

function addCandidate(box, out, c) {
  const first = out.first_new_bar;
  const last = first + out.new_bars - 1;
  const card = document.createElement("div");
  card.className = "card candidate";
  const h = document.createElement("h3");
  h.textContent = `Candidate ${c.rank} · mean log-likelihood ${c.mean_loglik.toFixed(3)}`;
  const legend = document.createElement("div");
  legend.className = "legend";
  legend.innerHTML = '<b class="kept">■</b> kept  <b class="new">■</b> new';
  const scroll = document.createElement("div");
  scroll.className = "roll-scroll";
  const canvas = document.createElement("canvas");
  scroll.appendChild(canvas);
  const fromBar = Math.max(first - 1 - 4, 0);
  const toBar = Math.min(last + (out.kind === "continuation" ? 0 : 2), c.view.bars);
  const startBar = Math.max(first - 1, 1); // a bar before the new music
  const play = button(`▶ Play from bar ${startBar}`, "", () => {
    player.play(c.view, c.view.bar_seconds[startBar - 1], c.view.bar_seconds[toBar], (beat) =>
      movePlayhead(canvas, beat));
  });
  const stop = button("■ Stop", "stop", () => player.stop());
  const stem = `${state.piece.name.replace(/\.midi?$/i, "") || "piece"}_${out.kind}_${c.rank}`;
  const midi = (b64) => new Blob([fromBase64(b64)], { type: "audio/midi" });
  const sidecar = new Blob([JSON.stringify(c.sidecar, null, 2)], { type: "application/json" });
  const acceptText = out.kind === "continuation" ? "Make it the piece" : "Accept into the piece";
  const accept = button(acceptText, "accept", () => {
    setPiece(c.view, c.midi);
    $("results").hidden = true;
    showMessage(acceptMessage(out, c, first, last), "info");
  });
  const tools = document.createElement("div");
  tools.className = "toolbar";
  tools.append(
    play,
    stop,
    downloadLink("Download MIDI", "download", midi(c.midi), `${stem}.mid`),
    downloadLink("New bars only", "download-new", midi(c.new_midi), `${stem}_new.mid`),
    downloadLink("Settings (JSON)", "download-json", sidecar, `${stem}.json`),
    soundButton(c, stem, "mp3"), // score.js
    soundButton(c, stem, "wav"),
    accept,
  );
  card.append(h, legend, scroll, tools);
  box.appendChild(card);
  addScoreTab(card, scroll, c, stem); // score.js
  // Fill the card's width (drawn once the card is laid out and has one).
  const beats = c.view.bar_beats[toBar] - c.view.bar_beats[fromBar];
  const ppb = Math.max(8, Math.min(40, (scroll.clientWidth - 2) / Math.max(beats, 1)));
  const [newFrom, newTo] = [out.new_from_beat, out.new_to_beat];
  const chordsNew = { from: newFrom, to: newTo };
  drawRoll(canvas, c.view, { fromBar, toBar, newFrom, newTo, ppb, chords: c.view.chords, chordsNew });
  if (out.kind === "continuation" && c.sidecar.plan) editPlan(canvas, out, c);
}

// A click on a new bar of a candidate's chord lane edits that bar of the candidate's plan
// (in the syntax the chords field takes); the edited plan goes into the Steering card, and
// Continue writes to it.
function editPlan(canvas, out, c) {
  canvas.title = "Click a new bar in the chord band to change its chords";
  canvas.addEventListener("click", (e) => {
    const r = canvas.getBoundingClientRect();
    if (e.clientY - r.top >= canvas.geometry.lane) return;
    const bar = barAtX(canvas, e.clientX - r.left); // 0-based, in the view
    const bars = c.sidecar.plan.split("|").map((s) => s.trim());
    const k = bar - (out.first_new_bar - 1);
    if (k < 0 || k >= bars.length) return;
    const text = window.prompt(`Chords of bar ${bar + 1} ("Am", or "C:2 G:2")`, bars[k]);
    if (text === null || !text.trim()) return;
    bars[k] = text.trim();
    $("steering-form").elements.chords.value = bars.join(" | ");
    showMessage(`Bar ${bar + 1} is now ${bars[k]}: Continue writes to the edited plan.`, "info");
  });
}

// ---------- wiring ------------------------------------------------------------------------
function wire() {
  $("file").addEventListener("change", (e) => loadFile(e.target.files[0]));
  const drop = $("drop");
  for (const ev of ["dragenter", "dragover"]) {
    document.addEventListener(ev, (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
  }
  document.addEventListener("dragleave", () => drop.classList.remove("over"));
  document.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    loadFile(e.dataTransfer.files[0]);
  });
  $("play-piece").onclick = () => {
    const v = state.piece;
    const from = state.selection ? v.bar_seconds[Math.max(state.selection[0] - 1, 0)] : 0;
    player.play(v, from, Infinity, (beat) => movePlayhead($("roll"), beat));
  };
  $("stop").onclick = () => player.stop();
  const roll = $("roll");
  roll.addEventListener("mousedown", (e) => {
    state.drag = barAtX(roll, e.offsetX);
    state.selection = [state.drag, state.drag];
    drawPiece();
    updateSelection();
  });
  roll.addEventListener("mousemove", (e) => {
    if (state.drag === null) return;
    const b = barAtX(roll, e.offsetX);
    state.selection = [Math.min(state.drag, b), Math.max(state.drag, b)];
    drawPiece();
    updateSelection();
  });
  window.addEventListener("mouseup", () => {
    state.drag = null;
  });
  $("continue-form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate("continue");
  });
  $("infill-form").addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.selection) generate("infill");
  });
  $("accompany").onclick = () => generate("accompany");
  wireSteering();
}

function wireSteering() {
  const form = $("steering-form");
  const f = form.elements;
  fillKeys(f.key);
  form.addEventListener("submit", (e) => e.preventDefault());
  f.density.addEventListener("change", () => {
    f.notes_per_bar.disabled = f.density.value !== "notes";
    if (!f.notes_per_bar.disabled) f.notes_per_bar.focus();
  });
  f.chords.addEventListener("input", () => {
    if (state.piece) drawPiece();
  });
}

async function init() {
  wire();
  try {
    const s = await api("/api/status");
    state.limits = s.limits;
    $("model-info").textContent = `model: ${s.model}`;
    for (const input of document.querySelectorAll("input[name=candidates]")) {
      input.max = s.limits.max_candidates;
    }
    $("continue-form").elements.bars.max = s.limits.max_bars;
  } catch (e) {
    showMessage(e.message);
  }
}

init();
