"use strict";
// The style picker (app.js's steering form): a style file made by `pianomuse tune` goes to the
// server, which keeps it and names it by an id; the picker lists the styles added since the
// page opened, and a request sends the chosen one's id (app.js, `generate`).

async function addStyle(file) {
  clearMessage();
  if (!file) return;
  startProgress("Reading the style…");
  try {
    const s = await api("/api/style", { data: toBase64(await file.arrayBuffer()), name: file.name });
    const select = $("steering-form").elements.style;
    let option = [...select.options].find((o) => o.value === s.id);
    if (!option) option = select.appendChild(new Option(`${s.name} (${s.method})`, s.id));
    select.value = s.id;
    const bits = s.bits_before == null ? "" : `: held-out bits a note ${s.bits_before.toFixed(2)} → ${s.bits_after.toFixed(2)}`;
    $("style-info").textContent = `${s.name}, tuned on ${s.pieces ?? "?"} pieces${bits}`;
  } catch (e) {
    showMessage(e.message);
  } finally {
    stopProgress();
    $("style-file").value = "";
  }
}

$("style-file").addEventListener("change", (e) => addStyle(e.target.files[0]));
