"use strict";
// The score tab of a candidate (app.js, `addCandidate`): its new bars engraved by the server
// (/api/score: MusicXML drawn by Verovio as SVG), beside the roll, and the MusicXML to
// download. Engraving takes a second or two, so it is asked for on the first switch only.
// And its sound: the whole piece played on the server's grand piano (/api/audio), rendered
// when asked, then kept as a download link.

function addScoreTab(card, roll, c, stem) {
  const tabs = document.createElement("div");
  tabs.className = "tabs";
  const rollTab = button("Roll", "tab active", () => show(false));
  const scoreTab = button("Score", "tab", () => show(true));
  tabs.append(rollTab, scoreTab);
  const view = document.createElement("div");
  view.className = "score-view";
  view.hidden = true;
  card.insertBefore(tabs, roll);
  roll.after(view);
  let asked = false;
  async function show(score) {
    rollTab.classList.toggle("active", !score);
    scoreTab.classList.toggle("active", score);
    roll.hidden = score;
    view.hidden = !score;
    if (!score || asked) return;
    asked = true;
    view.textContent = "Engraving the new bars…";
    try {
      const key = $("steering-form").elements.key.value;
      const body = { midi: c.new_midi, name: `${stem}_new.mid`, ...(key ? { key } : {}) };
      const out = await api("/api/score", body);
      view.innerHTML = out.svg; // drawn by the server's Verovio from the model's own notes
      const xml = new Blob([fromBase64(out.musicxml)], { type: "application/vnd.recordare.musicxml+xml" });
      const link = downloadLink("Download score (MusicXML)", "download-score", xml, `${stem}_new.musicxml`);
      view.prepend(link);
      if (out.simplified.length) view.prepend(`Simplified: ${out.simplified.join("; ")}. `);
    } catch (e) {
      asked = false;
      view.textContent = e.message;
    }
  }
}

function soundButton(c, stem, format) {
  const label = format.toUpperCase();
  const b = button(`Audio (${label})`, "secondary render-audio", async () => {
    b.disabled = true;
    b.textContent = "Rendering…";
    try {
      const body = { midi: c.midi, name: `${stem}.mid`, format };
      const sound = await api("/api/audio", body, null, true);
      const mb = (sound.size / 1e6).toFixed(1);
      const link = downloadLink(`Download audio (${label}, ${mb} MB)`, `download-audio download-${format}`,
        sound, `${stem}.${format}`);
      b.replaceWith(link);
      link.click();
    } catch (e) {
      b.disabled = false;
      b.textContent = `Audio (${label})`;
      showMessage(e.message, "error");
    }
  });
  return b;
}
