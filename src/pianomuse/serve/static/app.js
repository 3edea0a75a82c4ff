"use strict";
// The Piano Muse page. It talks only to the server that sent it (/api/...): the piano roll is
// drawn on a canvas and the piece is played by a small Web Audio synthesiser below, so the
// page needs no third-party script. (A sampled-piano library from npm would sound better but
// weighs megabytes; this keeps the package small and the page self-contained.)

const $ = (id) => document.getElementById(id);
const state = {
  piece: null, // the current piece's view: bars, bar_beats, bar_seconds, notes
  b64: null, // the current piece's MIDI, base64
  selection: null, // [first, last] 0-based bars chosen for infilling
  drag: null, // bar where a selection drag started
  limits: null,
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
async function api(path, body, onBusy) {
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

// ---------- time: beats <-> seconds through the bar lines ---------------------------------
function interp(xs, ys, x) {
  const n = xs.length;
  if (n < 2) return x;
  let i = 0;
  while (i < n - 2 && xs[i + 1] <= x) i++;
  const slope = (ys[i + 1] - ys[i]) / Math.max(xs[i + 1] - xs[i], 1e-9);
  return ys[i] + (x - xs[i]) * slope;
}
const secondsAt = (view, beat) => interp(view.bar_beats, view.bar_seconds, beat);
const beatAt = (view, sec) => interp(view.bar_seconds, view.bar_beats, sec);

// ---------- piano roll --------------------------------------------------------------------
const TOP = 20; // bar-number strip, px
const KEY_PX = 4; // px per semitone
const COLOURS = { kept: "#5b6b8c", new: "#e0683a", select: "rgba(74,144,226,0.18)" };

// Draw bars [fromBar, toBar) of a view; notes in [newFrom, newTo) beats in the "new" colour.
function drawRoll(canvas, view, opts) {
  const fromBar = opts.fromBar || 0;
  const toBar = Math.min(opts.toBar ?? view.bars, view.bars);
  const from = view.bar_beats[fromBar];
  const to = view.bar_beats[toBar];
  const ppb = opts.ppb || Math.min(24, 30000 / Math.max(to - from, 1)); // px per beat
  const inRange = view.notes.filter((n) => n[0] >= from && n[0] < to);
  let lo = 60;
  let hi = 72;
  for (const n of inRange) {
    lo = Math.min(lo, n[2]);
    hi = Math.max(hi, n[2]);
  }
  lo -= 2;
  hi += 2;
  const width = Math.ceil((to - from) * ppb) + 1;
  const height = TOP + (hi - lo + 1) * KEY_PX;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = width * dpr;
  canvas.height = height * dpr;
  canvas.style.width = `${width}px`;
  canvas.style.height = `${height}px`;
  const g = canvas.getContext("2d");
  g.scale(dpr, dpr);
  g.fillStyle = "#fbfcfe";
  g.fillRect(0, 0, width, height);
  const x = (beat) => (beat - from) * ppb;
  for (let p = lo; p <= hi; p++) {
    if (p % 12 === 0) {
      g.fillStyle = "#eef1f6";
      g.fillRect(0, TOP + (hi - p) * KEY_PX, width, KEY_PX);
    }
  }
  if (opts.newFrom !== undefined) {
    g.fillStyle = "rgba(224,104,58,0.09)";
    g.fillRect(x(opts.newFrom), TOP, x(opts.newTo) - x(opts.newFrom), height - TOP);
  }
  if (opts.selection) {
    const [a, b] = opts.selection;
    g.fillStyle = COLOURS.select;
    g.fillRect(x(view.bar_beats[a]), 0, x(view.bar_beats[b + 1]) - x(view.bar_beats[a]), height);
  }
  g.font = "11px system-ui, sans-serif";
  g.textBaseline = "middle";
  for (let b = fromBar; b <= toBar; b++) {
    const bx = Math.round(x(view.bar_beats[b])) + 0.5;
    g.strokeStyle = "#c9d0dc";
    g.beginPath();
    g.moveTo(bx, TOP - 4);
    g.lineTo(bx, height);
    g.stroke();
    const barPx = b < toBar ? x(view.bar_beats[b + 1]) - x(view.bar_beats[b]) : 0;
    if (b < toBar && (barPx >= 22 || b % 4 === 0)) {
      g.fillStyle = "#667085";
      g.fillText(String(b + 1), bx + 3, TOP / 2);
    }
  }
  for (const n of inRange) {
    const isNew = opts.newFrom !== undefined && n[0] >= opts.newFrom && n[0] < opts.newTo;
    g.globalAlpha = 0.45 + 0.55 * (n[3] / 127);
    g.fillStyle = isNew ? COLOURS.new : COLOURS.kept;
    g.fillRect(x(n[0]), TOP + (hi - n[2]) * KEY_PX, Math.max(n[1] * ppb - 1, 1.5), KEY_PX - 0.5);
  }
  g.globalAlpha = 1;
  canvas.dataset.notes = String(inRange.length);
  canvas.geometry = { view, from, ppb, fromBar, toBar };
}

function barAtX(canvas, px) {
  const { view, from, ppb, fromBar, toBar } = canvas.geometry;
  const beat = from + px / ppb;
  let b = fromBar;
  while (b < toBar - 1 && view.bar_beats[b + 1] <= beat) b++;
  return b;
}

function movePlayhead(canvas, beat) {
  const scroll = canvas.parentElement;
  let head = scroll.querySelector(".playhead");
  if (!head) {
    head = document.createElement("div");
    head.className = "playhead";
    head.style.cssText = "position:absolute;top:0;bottom:0;width:2px;background:#2f6fd0;";
    scroll.appendChild(head);
  }
  const { from, ppb } = canvas.geometry;
  const px = (beat - from) * ppb;
  head.style.left = `${px}px`;
  if (px > scroll.scrollLeft + scroll.clientWidth - 40 || px < scroll.scrollLeft) {
    scroll.scrollLeft = Math.max(px - 60, 0);
  }
}
function hidePlayheads() {
  for (const h of document.querySelectorAll(".playhead")) h.remove();
}

// ---------- a small Web Audio piano -------------------------------------------------------
class Player {
  constructor() {
    this.ctx = null;
    this.timer = null;
    this.frame = null;
    this.voices = new Set();
  }

  ensure() {
    if (!this.ctx) {
      this.ctx = new AudioContext();
      const comp = this.ctx.createDynamicsCompressor();
      this.master = this.ctx.createGain();
      this.master.gain.value = 0.5;
      this.master.connect(comp);
      comp.connect(this.ctx.destination);
    }
    if (this.ctx.state === "suspended") this.ctx.resume();
  }

  // Play the notes of `view` that start in [fromSec, toSec); onTick(beat) follows the music.
  play(view, fromSec, toSec, onTick) {
    this.stop();
    this.ensure();
    const notes = view.notes
      .filter((n) => n[4] >= fromSec - 1e-3 && n[4] < toSec)
      .sort((a, b) => a[4] - b[4]);
    const ctx = this.ctx;
    const t0 = ctx.currentTime + 0.08;
    const end = notes.reduce((m, n) => Math.max(m, n[4] + n[5]), fromSec) - fromSec;
    let i = 0;
    const pump = () => {
      const horizon = ctx.currentTime + 0.4;
      while (i < notes.length && t0 + notes[i][4] - fromSec < horizon) {
        this.voice(notes[i], t0 + notes[i][4] - fromSec);
        i++;
      }
      if (i >= notes.length && ctx.currentTime > t0 + end + 0.3) this.stop();
    };
    pump();
    this.timer = setInterval(pump, 100);
    const tick = () => {
      onTick(beatAt(view, fromSec + Math.max(ctx.currentTime - t0, 0)));
      this.frame = requestAnimationFrame(tick);
    };
    if (onTick) tick();
  }

  voice(n, when) {
    const ctx = this.ctx;
    const f = 440 * Math.pow(2, (n[2] - 69) / 12);
    const v = n[3] / 127;
    const peak = 0.04 + 0.3 * v * v;
    const ring = 0.4 + 2.6 * (1 - (n[2] - 21) / 87); // low strings ring longer
    const off = when + Math.max(n[5], 0.06);
    const env = ctx.createGain();
    env.gain.setValueAtTime(0, when);
    env.gain.linearRampToValueAtTime(peak, when + 0.004);
    env.gain.setTargetAtTime(0, when + 0.004, ring / 4);
    env.gain.setTargetAtTime(0, off, 0.07); // damper
    const tone = ctx.createBiquadFilter();
    tone.type = "lowpass";
    tone.frequency.value = Math.min(f * (3 + 6 * v), 12000);
    tone.connect(env);
    env.connect(this.master);
    const oscs = [
      [1, "triangle", 1.0],
      [2, "sine", 0.35],
      [3, "sine", 0.12],
    ].map(([k, type, level]) => {
      const o = ctx.createOscillator();
      const g = ctx.createGain();
      o.type = type;
      o.frequency.value = f * k;
      g.gain.value = level;
      o.connect(g);
      g.connect(tone);
      o.start(when);
      o.stop(off + 0.5);
      return o;
    });
    const voice = { env, oscs };
    this.voices.add(voice);
    oscs[0].onended = () => this.voices.delete(voice);
  }

  stop() {
    clearInterval(this.timer);
    cancelAnimationFrame(this.frame);
    this.timer = null;
    hidePlayheads();
    if (!this.ctx) return;
    const now = this.ctx.currentTime;
    for (const { env, oscs } of this.voices) {
      env.gain.cancelScheduledValues(now);
      env.gain.setTargetAtTime(0, now, 0.02);
      for (const o of oscs) o.stop(now + 0.1);
    }
    this.voices.clear();
  }
}
const player = new Player();

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

function drawPiece() {
  drawRoll($("roll"), state.piece, { selection: state.selection });
}

function updateSelection() {
  const sel = state.selection;
  const max = state.limits ? state.limits.max_gap_bars : 8;
  const button = $("infill");
  if (!sel) {
    $("gap").textContent = "none selected";
    button.disabled = true;
    return;
  }
  const n = sel[1] - sel[0] + 1;
  const text = n === 1 ? `bar ${sel[0] + 1}` : `bars ${sel[0] + 1}–${sel[1] + 1}`;
  $("gap").textContent = n > max ? `${text}: at most ${max} bars` : text;
  $("selection").textContent = `Selected ${text}.`;
  button.disabled = n > max || !$("progress").hidden;
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
    setPiece(await api("/api/piece", { midi: b64, name: file.name }), b64);
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

async function generate(kind) {
  clearMessage();
  player.stop();
  const form = $(kind === "continue" ? "continue-form" : "infill-form");
  const body = {
    midi: state.b64,
    name: state.piece.name,
    ...numbers(form, ["candidates", "temperature", "top_p", "seed"]),
  };
  let path = "/api/complete";
  let label = "Continuing…";
  if (kind === "continue") {
    body.bars = Number(form.elements.bars.value);
  } else {
    path = "/api/infill";
    label = "Rewriting…";
    body.first_bar = state.selection[0] + 1;
    body.last_bar = state.selection[1] + 1;
  }
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

function showResults(out) {
  const first = out.first_new_bar; // 1-based
  const last = first + out.new_bars - 1;
  const n = out.candidates.length;
  $("results-title").textContent = out.kind === "infill"
    ? `${n} rewrites of bars ${first}–${last} (${out.seconds.toFixed(1)} s)`
    : `${n} continuations from bar ${first} (${out.seconds.toFixed(1)} s)`;
  const box = $("candidates");
  box.replaceChildren();
  $("results").hidden = false; // laid out first, so that the rolls can take the cards' width
  const stem = state.piece.name.replace(/\.midi?$/i, "") || "piece";
  for (const c of out.candidates) {
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
    const toBar = Math.min(last + (out.kind === "infill" ? 2 : 0), c.view.bars);
    const tools = document.createElement("div");
    tools.className = "toolbar";
    const play = document.createElement("button");
    const startBar = Math.max(first - 1, 1); // a bar before the new music
    play.textContent = `▶ Play from bar ${startBar}`;
    play.type = "button";
    play.onclick = () => {
      player.play(c.view, c.view.bar_seconds[startBar - 1], c.view.bar_seconds[toBar], (beat) =>
        movePlayhead(canvas, beat));
    };
    const stop = document.createElement("button");
    stop.textContent = "■ Stop";
    stop.type = "button";
    stop.className = "stop";
    stop.onclick = () => player.stop();
    const link = document.createElement("a");
    link.className = "button secondary download";
    link.textContent = "Download MIDI";
    link.href = URL.createObjectURL(new Blob([fromBase64(c.midi)], { type: "audio/midi" }));
    link.download = `${stem}_${out.kind}_${c.rank}.mid`;
    const accept = document.createElement("button");
    accept.type = "button";
    accept.className = "accept";
    accept.textContent = out.kind === "infill" ? "Accept into the piece" : "Make it the piece";
    accept.onclick = () => {
      setPiece(c.view, c.midi);
      $("results").hidden = true;
      showMessage(out.kind === "infill"
        ? `Candidate ${c.rank} now fills bars ${first}–${last}.`
        : `Candidate ${c.rank} is now part of the piece (${c.view.bars} bars).`, "info");
    };
    tools.append(play, stop, link, accept);
    card.append(h, legend, scroll, tools);
    box.appendChild(card);
    // Fill the card's width (drawn once the card is laid out and has one).
    const beats = c.view.bar_beats[toBar] - c.view.bar_beats[fromBar];
    const ppb = Math.max(8, Math.min(40, (scroll.clientWidth - 2) / Math.max(beats, 1)));
    drawRoll(canvas, c.view, {
      fromBar, toBar, newFrom: out.new_from_beat, newTo: out.new_to_beat, ppb,
    });
  }
  $("results").hidden = false;
  $("results").scrollIntoView({ behavior: "smooth", block: "start" });
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
