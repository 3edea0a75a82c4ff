"use strict";
// The Live panel: play with the copilot from a MIDI keyboard (Web MIDI) or the computer keys.
// The session's clock is the page's audio clock: every note sent to the server carries its
// time from the first bar line (`live.t0`), and every answer note comes back with its own
// time on that clock, ahead of when it sounds, so the page schedules it exactly. The server
// never needs to know this computer's clock (pianomuse.serve.live).

const KEYS = { a: 60, w: 61, s: 62, e: 63, d: 64, f: 65, t: 66, g: 67, y: 68, h: 69, u: 70, j: 71, k: 72 };
const LIVE_INK = { player: "#5b6b8c", copilot: "#e0683a" };
const live = {
  ws: null,
  t0: 0, // audio-clock time of the first bar line
  beatS: 0.625,
  barS: 2.5,
  beatsPerBar: 4,
  running: false,
  player: [], // [start, end or null, pitch, velocity] (session seconds)
  copilot: [], // [start, end, pitch, velocity]
  voices: [], // [start, voice] of the answer's notes
  held: new Map(), // pitch -> [note, voice] of keys down
  ticker: null,
  frame: null,
  nextClick: 0,
  heard: 0, // answer notes voiced
  late: 0, // answer notes that came after their time
  midiOut: null,
  taps: [],
};

const liveNow = () => player.ctx.currentTime - live.t0;

function liveStatus(text) {
  $("live-status").textContent = text;
}

function liveSend(message) {
  if (live.ws && live.ws.readyState === WebSocket.OPEN) live.ws.send(JSON.stringify(message));
}

// The one handler for a key going down, from Web MIDI, the computer keys or a test.
function liveNoteOn(pitch, velocity = 90) {
  player.ensure();
  const now = player.ctx.currentTime;
  const voice = player.voice([0, 0, pitch, velocity, 0, 8], now);
  // A key struck in the count-in, before the first bar line, counts from that line.
  const note = [live.running ? Math.max(liveNow(), 0) : 0, null, pitch, velocity];
  live.held.set(pitch, [note, voice]);
  if (!live.running) return;
  live.player.push(note);
  liveSend({ type: "on", t: note[0], pitch, velocity });
}

function liveNoteOff(pitch) {
  const held = live.held.get(pitch);
  if (!held) return;
  live.held.delete(pitch);
  player.release(held[1], player.ctx.currentTime);
  if (!live.running) return;
  held[0][1] = Math.max(liveNow(), held[0][0]);
  liveSend({ type: "off", t: held[0][1], pitch });
}

function liveMessage(m) {
  if (m.type === "ready") {
    live.t0 = player.ctx.currentTime + 0.2;
    live.running = true;
    live.nextClick = 0;
    live.ticker = setInterval(liveTick, 50);
    $("live-ask").disabled = $("live-stop").disabled = false;
    liveStatus(`Jamming: bars of ${m.bar_s.toFixed(2)} s. Play a phrase, then stop.`);
    liveDraw();
  } else if (m.type === "notes") {
    for (const [t, off, pitch, velocity] of m.notes) liveAnswer(t, off, pitch, velocity);
  } else if (m.type === "cancel") {
    liveCancel(m.t);
  } else if (m.type === "error") {
    showMessage(m.message);
  } else if (m.type === "jam") {
    const link = downloadLink("Download the jam (MIDI)", "download-jam",
      new Blob([fromBase64(m.midi)], { type: "audio/midi" }), "jam.mid");
    $("live-jam").replaceChildren(link);
    const s = m.status;
    liveStatus(`Jam saved: ${s.answers} answers, ${s.bars_absorbed} bars heard, ` +
      `${s.dropped} events dropped, ${live.late} answer notes late.`);
  }
}

// An answer note: voiced at its time on the audio clock (and sent to the MIDI output).
function liveAnswer(t, off, pitch, velocity) {
  const now = player.ctx.currentTime;
  let when = live.t0 + t;
  if (when < now) {
    live.late++;
    when = now;
  }
  const voice = player.voice([0, 0, pitch, velocity, 0, off - t], when);
  live.voices.push([t, voice]);
  live.copilot.push([t, off, pitch, velocity]);
  live.heard++;
  if (live.midiOut) {
    const at = performance.now() + (when - now) * 1000;
    live.midiOut.send([0x90, pitch, velocity], at);
    live.midiOut.send([0x80, pitch, 0], at + (off - t) * 1000);
  }
}

// The player came back at `t`: the answer's notes after it never sound.
function liveCancel(t) {
  const when = Math.max(live.t0 + t, player.ctx.currentTime);
  for (const [, voice] of live.voices) player.release(voice, when);
  live.voices = [];
  live.copilot = live.copilot.filter((n) => n[0] < t).map((n) => [n[0], Math.min(n[1], t), n[2], n[3]]);
  if (live.midiOut) live.midiOut.send([0xb0, 123, 0]); // all notes off
}

function liveTick() {
  const t = liveNow();
  if (t >= 0) liveSend({ type: "tick", t });
  if ($("live-form").elements.metronome.checked) {
    // Clicks a little ahead, on the audio clock; the bar's first beat higher.
    while (live.t0 + live.nextClick * live.beatS < player.ctx.currentTime + 0.15) {
      const when = live.t0 + live.nextClick * live.beatS;
      if (when >= player.ctx.currentTime) liveClick(when, live.nextClick % live.beatsPerBar === 0);
      live.nextClick++;
    }
  }
}

function liveClick(when, downbeat) {
  const ctx = player.ctx;
  const o = ctx.createOscillator();
  const g = ctx.createGain();
  o.frequency.value = downbeat ? 1760 : 1320;
  g.gain.setValueAtTime(0.25, when);
  g.gain.exponentialRampToValueAtTime(0.001, when + 0.05);
  o.connect(g);
  g.connect(player.master);
  o.start(when);
  o.stop(when + 0.06);
}

// The rolling roll: the last four bars and the next one, the player and the copilot.
function liveDraw() {
  const canvas = $("live-roll");
  const g = canvas.getContext("2d");
  const W = canvas.width;
  const H = canvas.height;
  const now = live.running ? liveNow() : 0;
  const from = now - 4 * live.barS;
  const span = 5 * live.barS;
  const x = (t) => ((t - from) / span) * W;
  const y = (p) => H - ((p - 28) / 72) * H;
  g.clearRect(0, 0, W, H);
  g.strokeStyle = "#d9dee7";
  for (let b = Math.ceil(from / live.barS); b * live.barS < from + span; b++) {
    g.beginPath();
    g.moveTo(x(b * live.barS), 0);
    g.lineTo(x(b * live.barS), H);
    g.stroke();
  }
  const draw = (notes, ink) => {
    g.fillStyle = ink;
    for (const [s, e, p] of notes) {
      const end = e === null ? now : e;
      if (end < from || s > from + span) continue;
      g.fillRect(x(s), y(p) - 2, Math.max(x(end) - x(s), 2), 4);
    }
  };
  draw(live.player, LIVE_INK.player);
  draw(live.copilot, LIVE_INK.copilot);
  g.strokeStyle = "#1d2330";
  g.beginPath();
  g.moveTo(x(now), 0);
  g.lineTo(x(now), H);
  g.stroke();
  if (live.running) live.frame = requestAnimationFrame(liveDraw);
}

function liveStart() {
  clearMessage();
  player.ensure();
  const f = $("live-form").elements;
  const [num, den] = f.metre.value.split("/").map(Number);
  live.beatS = 60 / Number(f.bpm.value);
  live.beatsPerBar = (num * 4) / den;
  live.barS = live.beatS * live.beatsPerBar;
  Object.assign(live, { player: [], copilot: [], voices: [], heard: 0, late: 0 });
  $("live-jam").replaceChildren();
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${proto}//${location.host}/api/live`);
  live.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({
    type: "start", bpm: Number(f.bpm.value), metre: f.metre.value, bars: Number(f.bars.value),
    mode: f.mode.value,
    ...steeringFields(),
  }));
  ws.onmessage = (e) => liveMessage(JSON.parse(e.data));
  ws.onclose = () => liveEnd();
  $("live-start").disabled = true;
  liveStatus("Connecting…");
}

function liveStop() {
  const t = Math.max(liveNow(), 0);
  liveSend({ type: "stop", t });
  liveCancel(t); // what was to come never sounds, and the jam keeps it out too
  clearInterval(live.ticker);
}

function liveEnd() {
  clearInterval(live.ticker);
  live.running = false;
  cancelAnimationFrame(live.frame);
  $("live-start").disabled = false;
  $("live-ask").disabled = $("live-stop").disabled = true;
}

function liveTap() {
  const now = performance.now() / 1000;
  live.taps = live.taps.filter((t) => now - t < 2.5).concat(now);
  if (live.taps.length >= 3) {
    const gaps = live.taps.slice(1).map((t, i) => t - live.taps[i]);
    const bpm = 60 / (gaps.reduce((a, b) => a + b, 0) / gaps.length);
    $("live-form").elements.bpm.value = Math.round(Math.min(Math.max(bpm, 20), 300));
  }
}

// Web MIDI, where the browser has it: any input's keys, and an output for the answers.
async function liveMidi() {
  if (!navigator.requestMIDIAccess) return;
  let access;
  try {
    access = await navigator.requestMIDIAccess();
  } catch {
    return; // refused or unavailable: the computer keys still play
  }
  const f = $("live-form").elements;
  for (const input of access.inputs.values()) f.midi_in.appendChild(new Option(input.name, input.id));
  for (const out of access.outputs.values()) f.midi_out.appendChild(new Option(out.name, out.id));
  f.midi_in.onchange = () => {
    for (const input of access.inputs.values()) {
      input.onmidimessage = input.id === f.midi_in.value ? liveMidiMessage : null;
    }
  };
  f.midi_out.onchange = () => {
    live.midiOut = access.outputs.get(f.midi_out.value) || null;
  };
}

function liveMidiMessage(e) {
  const [status, pitch, velocity] = e.data;
  const kind = status & 0xf0;
  if (kind === 0x90 && velocity > 0) liveNoteOn(pitch, velocity);
  else if (kind === 0x80 || (kind === 0x90 && velocity === 0)) liveNoteOff(pitch);
}

function liveKeys() {
  const typing = (e) => e.target.closest && e.target.closest("input, select, textarea");
  document.addEventListener("keydown", (e) => {
    const pitch = KEYS[e.key];
    if (pitch === undefined || e.repeat || typing(e) || e.ctrlKey || e.metaKey) return;
    liveNoteOn(pitch, 90);
  });
  document.addEventListener("keyup", (e) => {
    const pitch = KEYS[e.key];
    if (pitch !== undefined) liveNoteOff(pitch);
  });
}

$("live-start").onclick = liveStart;
$("live-stop").onclick = liveStop;
$("live-ask").onclick = () => liveSend({ type: "trigger", t: Math.max(liveNow(), 0) });
$("live-tap").onclick = liveTap;
liveKeys();
liveMidi();
liveDraw();
