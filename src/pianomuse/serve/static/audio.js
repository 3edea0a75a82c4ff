"use strict";
// The page's piano: a small Web Audio synthesiser (a sampled-piano library from npm would
// sound better but weighs megabytes; this keeps the package small and the page
// self-contained).

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
    return voice;
  }

  // Let a voice go at `when` (a key released, an answer cut short).
  release(voice, when) {
    voice.env.gain.cancelScheduledValues(when);
    voice.env.gain.setTargetAtTime(0, when, 0.05);
    for (const o of voice.oscs) o.stop(when + 0.4);
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
