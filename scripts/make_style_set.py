"""The public style set of `pianomuse tune`'s tests and README: 24 Bach chorales from the
corpus bundled with music21 (BSD licence; the chorales are in the public domain), written as
MIDI into tests/data/style/ (four voices, one track each; the tokenizer merges them into one
piano part).

    uv run --with music21 python scripts/make_style_set.py
"""

from __future__ import annotations

from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "data" / "style"
COUNT = 24


def main() -> None:
    from music21 import corpus

    OUT.mkdir(parents=True, exist_ok=True)
    chorales = sorted(p for p in corpus.getComposer("bach") if p.name.startswith("bwv"))
    written = 0
    for path in chorales:
        score = corpus.parse(path)
        if len(score.parts) != 4:  # SATB chorales only
            continue
        score.write("midi", fp=OUT / f"{path.stem.replace('.', '_')}.mid")
        written += 1
        if written == COUNT:
            break
    print(f"{OUT}: {written} chorales")


if __name__ == "__main__":
    main()
