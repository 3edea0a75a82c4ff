"""Training samples cut from token shards, every cut on a musical boundary.

A sample is `max_seq_len + 1` tokens (inputs and next-token targets overlap by one) with a
mask of the positions that carry loss. Two objectives share the same windows:
- "lm": every token of the window is a target;
- "completion": (context, completion) pairs: the window is split at a bar into a context
  and a completion, and only completion tokens are targets.

Windows start at a bar, prefixed with the header in force there (time signature, tempo); only
when one bar is longer than a whole window does a window start mid-bar, at a note. Windows
end on a whole note too. An epoch tiles every song with windows (consecutive windows share at
most one bar), from a random first bar, in a shuffled order that depends only on (seed, epoch),
so a run can be resumed at any sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from pianomuse.data.fim import FIM_OVERHEAD, FimMarkers, fim_from_window, part_infill_from_window
from pianomuse.data.shards import TokenShards
from pianomuse.tokenizer import Kind, Structure

OBJECTIVES = ("lm", "completion")


@dataclass
class Sample:
    """One training sequence."""

    ids: np.ndarray  # (T+1,) int64 token ids
    loss_mask: np.ndarray  # (T+1,) bool: True where the token is a prediction target


def window(structure: Structure, song: np.ndarray, start: int, length: int) -> np.ndarray:
    """`length` tokens or fewer of `song` from the safe cut `start`, header first, cut at the
    end before a note, position or bar so that no note is split."""
    w = structure.with_header(song, start)
    if len(w) <= length:
        return w
    cut = structure.last_cut_at_most(w, length)
    return w[:cut] if cut > 0 else w[:length]


def window_starts(
    structure: Structure, song: np.ndarray, length: int, first_bar: int = 0
) -> list[int]:
    """Starts of windows of `length` tokens that tile `song` from its `first_bar`-th bar.

    Each next window starts at the last bar start inside the previous window (one bar of
    overlap at most); inside a bar longer than a window, at the last note start instead.
    """
    bars = structure.bar_starts(song)
    if len(bars) == 0:
        return [0]
    cuts = structure.safe_cuts(song)
    pos = int(bars[min(first_bar, len(bars) - 1)])
    starts = [pos]
    # Header tokens (up to Position_0 + Tempo) eat into the window: keep a margin of 4.
    span = max(length - 4, 1)
    while pos + span < len(song):
        nxt_bar = bars[(bars > pos) & (bars <= pos + span)]
        if len(nxt_bar):
            nxt = int(nxt_bar[-1])
        else:
            inner = cuts[(cuts > pos) & (cuts <= pos + span)]
            nxt = int(inner[-1]) if len(inner) else pos + span
        starts.append(nxt)
        pos = nxt
    return starts


def transpose(structure: Structure, ids: np.ndarray, semitones: int) -> np.ndarray:
    """The music moved by `semitones`: every Pitch, and with it every Chord root and Bass (the
    caller keeps pitches inside the range)."""
    out = structure.transposer(semitones)[ids]
    if (out < 0).any():
        raise ValueError("transposition leaves the piano range")
    return out


def transpose_range(structure: Structure, ids: np.ndarray, max_shift: int) -> tuple[int, int]:
    """Smallest and largest shift (within ±max_shift) that keeps every pitch on the keyboard."""
    pitches = structure.value[ids[structure.kinds(ids) == Kind.PITCH]]
    if len(pitches) == 0:
        return 0, 0
    keys = np.flatnonzero(structure.pitch_id >= 0)
    lo = max(-max_shift, int(keys.min() - pitches.min()))
    hi = min(max_shift, int(keys.max() - pitches.max()))
    return (lo, hi) if lo <= hi else (0, 0)


class SampleStream:
    """Deterministic training samples of one split: `items(epoch)` lists (song, start) pairs,
    `sample(epoch, i)` builds the i-th sample of an epoch."""

    def __init__(
        self,
        shards: TokenShards,
        max_seq_len: int,
        objective: str = "lm",
        max_transpose: int = 0,
        seed: int = 0,
        fim_rate: float = 0.0,
        *,
        part_rate: float = 0.0,
        plain_rate: float = 0.0,
    ):
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}")
        if max_seq_len < 16:
            raise ValueError("max_seq_len must be at least 16")
        self.shards = shards
        self.structure = shards.tokenizer.structure
        self.length = max_seq_len + 1
        self.objective = objective
        self.max_transpose = max_transpose
        self.seed = seed
        for name, rate in (("fim", fim_rate), ("part", part_rate), ("plain", plain_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name}_rate must be in [0, 1]")
        if fim_rate + part_rate > 1.0:
            raise ValueError("fim_rate + part_rate must be at most 1")
        if (part_rate or plain_rate) and shards.tokenizer.version < 2:
            raise ValueError("part infilling and plain windows need tokenizer version 2 data")
        self.fim_rate, self.part_rate, self.plain_rate = fim_rate, part_rate, plain_rate
        self.markers = FimMarkers.of(self.structure)
        self._items: dict[int, np.ndarray] = {}
        self._sizes: list[int] = []  # windows of epochs 0, 1, ... (they differ a little)

    def items(self, epoch: int) -> np.ndarray:
        """(n, 2) array of (song, start) for an epoch, shuffled by (seed, epoch)."""
        if epoch not in self._items:
            rng = np.random.default_rng([self.seed, epoch, 0])
            rows = []
            for s in range(len(self.shards)):
                song = self.shards.song(s)
                n_bars = len(self.structure.bar_starts(song))
                first = int(rng.integers(0, min(n_bars, 4))) if n_bars > 1 else 0
                rows += [(s, st) for st in window_starts(self.structure, song, self.length, first)]
            arr = np.asarray(rows, dtype=np.int64).reshape(-1, 2)
            self._items = {epoch: arr[rng.permutation(len(arr))]}
        return self._items[epoch]

    def locate(self, position: int) -> tuple[int, int]:
        """(epoch, index) of the `position`-th sample counted over all epochs in order."""
        epoch = 0
        while True:
            if epoch == len(self._sizes):
                self._sizes.append(len(self.items(epoch)))
            if position < self._sizes[epoch]:
                return epoch, position
            position -= self._sizes[epoch]
            epoch += 1

    def sample_at(self, position: int) -> Sample:
        """The `position`-th sample over all epochs: how a training run walks the data."""
        return self.sample(*self.locate(position))

    def sample(self, epoch: int, i: int) -> Sample:
        """The i-th sample of an epoch, the training mix: a window as it is; with probability
        `plain_rate` read as a plain piano file (parts merged, chords recognised); then
        rearranged for fill-in-the-middle (`fim_rate`) or part infilling (`part_rate`, when
        the window has parts); transposed by up to `max_transpose` semitones."""
        song_idx, start = self.items(epoch)[i]
        rng = np.random.default_rng([self.seed, epoch, 1, i])
        draw = rng.random()
        fim, part = draw < self.fim_rate, self.fim_rate <= draw < self.fim_rate + self.part_rate
        plain = self.plain_rate > 0 and rng.random() < self.plain_rate and not part
        length = self.length - FIM_OVERHEAD if fim or part else self.length
        ids = window(self.structure, self.shards.song(int(song_idx)), int(start), length)
        if plain:  # the recogniser's chords may take a few more tokens: cut again
            ids = self.shards.tokenizer.plain(ids)
            ids = ids[: self.structure.last_cut_at_most(ids, length)] if len(ids) > length else ids
        if self.max_transpose:
            lo, hi = transpose_range(self.structure, ids, self.max_transpose)
            ids = transpose(self.structure, ids, int(rng.integers(lo, hi + 1)))
        if part and (infill := part_infill_from_window(self.structure, ids, rng, self.markers)):
            ids, mask = infill
            if self.objective == "lm":  # the context is scored too, as for any window
                mask[: int(np.flatnonzero(ids == self.markers.middle)[0])] = True
            return Sample(ids, mask)
        if (fim or part) and (arranged := fim_from_window(self.structure, ids, rng, self.markers)):
            ids, middle = arranged
            mask = np.ones(len(ids), dtype=bool)
            if self.objective == "completion":
                mask[:middle] = False  # the middle and its end marker are the completion
            return Sample(ids, mask)
        mask = np.ones(len(ids), dtype=bool)
        if self.objective == "completion":
            mask[:] = False
            mask[completion_split(self.structure, ids, rng) :] = True
        return Sample(ids, mask)


def completion_split(structure: Structure, ids: np.ndarray, rng: np.random.Generator) -> int:
    """A bar start that splits `ids` into a non-empty context and completion (random bar
    after the first; the middle of the sequence at a note when it holds a single bar)."""
    bars = structure.bar_starts(ids)
    bars = bars[bars > 0]
    if len(bars):
        return int(rng.choice(bars))
    cuts = structure.safe_cuts(ids)
    cuts = cuts[cuts > 0]
    return int(cuts[len(cuts) // 2]) if len(cuts) else len(ids) // 2


def pair(
    structure: Structure, song: np.ndarray, start_bar: int, split_bar: int, end_bar: int
) -> tuple[np.ndarray, np.ndarray]:
    """(context, completion) of a song: bars [start_bar, split_bar) with their header, then
    bars [split_bar, end_bar)."""
    bars = np.append(structure.bar_starts(song), len(song))
    if not 0 <= start_bar < split_bar < end_bar <= len(bars) - 1:
        raise ValueError("need start_bar < split_bar < end_bar within the song")
    context = structure.with_header(song[: bars[split_bar]], int(bars[start_bar]))
    return context, song[bars[split_bar] : bars[end_bar]].copy()


def collate(
    samples: list[Sample], pad_id: int, length: int | None = None
) -> dict[str, torch.Tensor]:
    """Pad a list of samples into model inputs, targets and a loss mask.

    Returns idx (B, T) inputs, targets (B, T) next tokens and mask (B, T) float, where T is
    the longest sample minus one, or at least `length`; padding has mask 0.
    """
    T1 = max(max(len(s.ids) for s in samples), (length or 0) + 1)
    ids = np.full((len(samples), T1), pad_id, dtype=np.int64)
    mask = np.zeros((len(samples), T1), dtype=bool)
    for b, s in enumerate(samples):
        ids[b, : len(s.ids)] = s.ids
        mask[b, : len(s.ids)] = s.loss_mask
    t = torch.from_numpy(ids)
    return {
        "idx": t[:, :-1],
        "targets": t[:, 1:],
        "mask": torch.from_numpy(mask[:, 1:]).float(),
    }
