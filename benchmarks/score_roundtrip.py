"""MusicXML round trip over a POP909-layout folder: each song's first bars as tokenizer v2
reads them (re-timed onto its beats, with its chords), written by `pianomuse.notation`
(music21), read back by a second library (partitura) and checked against the MusicXML 4.0
schema (tests/data/musicxml). The scores keep every note on the tokenizer's grid
(`rhythm="exact"`); the copilot's default, "readable", is tested in tests/test_scores.py.

Prints, over every song and over the songs with a triplet feel (more than --triplet-share of
their onsets on triplet positions off the 16th grid): the share of notes read back with
pitch, onset and duration equal on the tokenizer's grid, the share of files valid against the
schema, the files that needed a simplification, and the seconds one score takes.

    uv run python benchmarks/score_roundtrip.py PATH/TO/pop909 [--bars 16] [--songs N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from pianomuse.copilot.score import read_score
from pianomuse.data.files import find_midi_files
from pianomuse.data.prepare import read_song
from pianomuse.notation import ScoreNotes, musicxml
from pianomuse.tokenizer import PianoTokenizerV2

SCHEMA = Path(__file__).resolve().parent.parent / "tests" / "data" / "musicxml"


def schema():
    from lxml import etree

    text = (SCHEMA / "musicxml.xsd").read_text()
    for name in ("xml", "xlink"):
        text = text.replace(
            f"http://www.musicxml.org/xsd/{name}.xsd", (SCHEMA / f"{name}.xsd").as_uri()
        )
    return etree.XMLSchema(etree.fromstring(text.encode(), base_url=SCHEMA.as_uri() + "/"))


def notes_of(s: ScoreNotes) -> Counter:
    q = lambda x: np.round(np.asarray(x, float) * s.grid).astype(int)  # noqa: E731
    return Counter(zip(q(s.onset).tolist(), np.maximum(q(s.duration), 1).tolist(),
                       s.pitch.tolist(), strict=True))  # fmt: skip


def read_back(xml: bytes, grid: int, folder: Path) -> Counter:
    import partitura

    path = folder / "back.musicxml"
    path.write_bytes(xml)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        n = partitura.load_musicxml(str(path)).note_array()
    q = lambda x: np.round(np.asarray(x, float) * grid).astype(int)  # noqa: E731
    return Counter(zip(q(n["onset_quarter"]).tolist(), q(n["duration_quarter"]).tolist(),
                       n["pitch"].tolist(), strict=True))  # fmt: skip


def triplet_share(s: ScoreNotes) -> float:
    """Share of onsets on triplet positions that are not on the 16th-note grid."""
    pos = np.round(s.onset * 12).astype(int) % 12  # twelfths of a beat
    on_grid = np.isclose(s.onset * 12, np.round(s.onset * 12), atol=1e-6)
    triplet = on_grid & (pos % 4 == 0) & (pos % 3 != 0)
    return float(triplet.mean()) if len(pos) else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--bars", type=int, default=16)
    ap.add_argument("--songs", type=int, default=None)
    ap.add_argument("--triplet-share", type=float, default=0.05)
    args = ap.parse_args()
    from lxml import etree

    tok, xsd = PianoTokenizerV2(), schema()
    parser = etree.XMLParser(load_dtd=False, no_network=True, resolve_entities=False)
    files = find_midi_files(args.data)[: args.songs]
    rows = []  # (want, matched, valid, simplified, seconds, triplet)
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            s = read_score(tok, read_song(f), bars=args.bars)
            t0 = time.perf_counter()
            xml, simplified = musicxml(s, rhythm="exact")
            seconds = time.perf_counter() - t0
            want = notes_of(s)
            try:
                got = read_back(xml, s.grid, Path(tmp))
            except Exception as e:  # noqa: BLE001 - the reader's failure is a finding
                print(f"{f.name}: partitura could not read it back ({type(e).__name__}: {e})")
                got = Counter()
            valid = bool(xsd.validate(etree.fromstring(xml, parser)))
            triplets = triplet_share(s) > args.triplet_share
            matched = sum((want & got).values())
            rows.append((sum(want.values()), matched, valid, bool(simplified), seconds, triplets))
    grid = tok.settings.positions_per_beat
    print(f"{len(rows)} songs, first {args.bars} bars, tokenizer v2 grid ({grid} a beat)")
    cols = ("n", "notes", "read back", "valid", "simplified", "s/score")
    print(f"{'songs':<22}" + "".join(f"{c:>11}" for c in cols))
    for label, keep in (("all", lambda r: True), ("triplet feel", lambda r: r[5])):
        sel = [r for r in rows if keep(r)]
        if not sel:
            continue
        want, matched = sum(r[0] for r in sel), sum(r[1] for r in sel)
        print(f"{label:<22}{len(sel):>11}{want:>11}{matched / want:>11.4f}"
              f"{np.mean([r[2] for r in sel]):>11.3f}{sum(r[3] for r in sel):>11}"
              f"{np.median([r[4] for r in sel]):>11.2f}")  # fmt: skip
    worst = min(rows, key=lambda r: r[1] / max(r[0], 1))
    print(f"worst song: {worst[1]}/{worst[0]} notes read back")


if __name__ == "__main__":
    main()
