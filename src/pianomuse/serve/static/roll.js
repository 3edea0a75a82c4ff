"use strict";
// The piano roll of the Piano Muse page: notes, bar lines, the chord lane and the playheads,
// drawn on a canvas (no library), with beats <-> seconds through the bar lines.

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
const LANE_PX = 18; // chord band, px
const CHORD_INK = { kept: "#344054", new: "#c4501f" };
const COLOURS = {
  kept: "#5b6b8c",
  new: "#e0683a",
  newBand: "rgba(224,104,58,0.09)",
  select: "rgba(74,144,226,0.18)",
};

// Draw bars [fromBar, toBar) of a view; notes in [newFrom, newTo) beats in the "new" colour.
// opts.chords ([beat, symbol]) go in a band along the top, those in opts.chordsNew ({from,
// to} beats) in the "new" colour; the band is left out when there are none to show.
function drawRoll(canvas, view, opts) {
  const fromBar = opts.fromBar || 0;
  const toBar = Math.min(opts.toBar ?? view.bars, view.bars);
  const from = view.bar_beats[fromBar];
  const to = view.bar_beats[toBar];
  const ppb = opts.ppb || Math.min(24, 30000 / Math.max(to - from, 1)); // px per beat
  const inRange = view.notes.filter((n) => n[0] >= from && n[0] < to);
  const chords = (opts.chords || []).filter((c) => c[0] >= from && c[0] < to);
  const lane = chords.length ? LANE_PX : 0;
  const top = lane + TOP;
  let lo = 60;
  let hi = 72;
  for (const n of inRange) {
    lo = Math.min(lo, n[2]);
    hi = Math.max(hi, n[2]);
  }
  lo -= 2;
  hi += 2;
  const width = Math.ceil((to - from) * ppb) + 1;
  const height = top + (hi - lo + 1) * KEY_PX;
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
      g.fillRect(0, top + (hi - p) * KEY_PX, width, KEY_PX);
    }
  }
  if (opts.newFrom !== undefined) {
    g.fillStyle = COLOURS.newBand;
    g.fillRect(x(opts.newFrom), top, x(opts.newTo) - x(opts.newFrom), height - top);
  }
  if (lane) {
    const bars = view.bar_beats.slice(fromBar, toBar + 1).map(x);
    drawChordLane(g, chords, { x, width, bars, fresh: opts.chordsNew });
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
    g.moveTo(bx, top - 4);
    g.lineTo(bx, height);
    g.stroke();
    const barPx = b < toBar ? x(view.bar_beats[b + 1]) - x(view.bar_beats[b]) : 0;
    if (b < toBar && (barPx >= 22 || b % 4 === 0)) {
      g.fillStyle = "#667085";
      g.fillText(String(b + 1), bx + 3, lane + TOP / 2);
    }
  }
  for (const n of inRange) {
    const isNew = opts.newFrom !== undefined && n[0] >= opts.newFrom && n[0] < opts.newTo;
    g.globalAlpha = 0.45 + 0.55 * (n[3] / 127);
    g.fillStyle = isNew ? COLOURS.new : COLOURS.kept;
    g.fillRect(x(n[0]), top + (hi - n[2]) * KEY_PX, Math.max(n[1] * ppb - 1, 1.5), KEY_PX - 0.5);
  }
  g.globalAlpha = 1;
  canvas.dataset.notes = String(inRange.length);
  canvas.dataset.chords = JSON.stringify(chords);
  canvas.geometry = { view, from, ppb, fromBar, toBar, lane };
}

// The chord band: each chord's symbol at its beat (x(beat) px), light lines at the bars
// (px). A label that would overlap the one before it is left out, a short tick below the
// text still marking the change, so fast changes on a long piece stay readable.
function drawChordLane(g, chords, { x, width, bars, fresh }) {
  g.fillStyle = "#f3f5f9";
  g.fillRect(0, 0, width, LANE_PX);
  if (fresh) {
    g.fillStyle = COLOURS.newBand;
    g.fillRect(x(fresh.from), 0, x(fresh.to) - x(fresh.from), LANE_PX);
  }
  g.fillStyle = "#dde2ea";
  for (const bx of bars) g.fillRect(Math.round(bx), 0, 1, LANE_PX);
  g.fillStyle = "#c9d0dc";
  g.fillRect(0, LANE_PX - 1, width, 1);
  g.font = "600 11px system-ui, sans-serif";
  g.textBaseline = "middle";
  let free = -Infinity; // where the last label drawn ends
  for (const [beat, symbol] of chords) {
    const isNew = fresh && beat >= fresh.from && beat < fresh.to;
    const cx = x(beat);
    g.fillStyle = isNew ? CHORD_INK.new : CHORD_INK.kept;
    if (cx + 3 >= free) {
      g.fillRect(cx, 4, 1.5, LANE_PX - 8);
      g.fillText(symbol, cx + 3, LANE_PX / 2);
      free = cx + 3 + g.measureText(symbol).width + 4;
    } else {
      g.fillRect(cx, LANE_PX - 5, 1.5, 3);
    }
  }
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
