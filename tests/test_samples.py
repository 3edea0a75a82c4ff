"""Training samples: windows at bars with their header, completion masks, augmentation."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import header_kinds
from pianomuse.data.export import export_jsonl, import_jsonl, make_pairs
from pianomuse.data.samples import SampleStream, collate, pair, transpose, transpose_range, window
from pianomuse.data.shards import TokenShards
from pianomuse.errors import UserError
from pianomuse.tokenizer import Kind, PianoTokenizer, TokenizerSettings


@pytest.fixture(scope="module")
def shards(prepared):
    return TokenShards(prepared, "train")


@pytest.mark.parametrize("objective", ["lm", "completion"])
def test_every_window_starts_with_its_header_and_ends_on_a_whole_note(shards, objective):
    stream = SampleStream(shards, max_seq_len=256, objective=objective, seed=3)
    st = stream.structure
    items = stream.items(0)
    assert len(items) >= sum(len(shards.song(i)) for i in range(len(shards))) // 256
    for i in range(0, len(items), 7):
        s = stream.sample(0, i)
        k = st.kinds(s.ids)
        assert len(s.ids) <= 257
        assert header_kinds(st, s.ids) == [Kind.BAR, Kind.TIMESIG, Kind.POSITION, Kind.TEMPO]
        assert k[0] not in (Kind.VELOCITY, Kind.DURATION, Kind.PITCH)
        assert shards.tokenizer.tokens_errors(s.ids) == 0.0
        song, start = shards.song(int(items[i, 0])), int(items[i, 1])
        assert s.ids[1] == st.header_at(song, start + 2).time_sig
        # The tempo in force: the bar's own (right after its Position_0) or the one before.
        skip = int(st.kinds(song)[start + 2] == Kind.PART)  # a v2 bar's first block
        own = st.kinds(song)[start + 3 + skip] == Kind.TEMPO
        want = st.header_at(song, start + 4 + skip if own else start).tempo
        assert want >= 0 and st.header_at(s.ids, 4 + int(k[2] == Kind.PART)).tempo == want


def test_windows_tile_the_song(shards):
    stream = SampleStream(shards, max_seq_len=512)
    items = stream.items(1)
    st = stream.structure
    for song_idx in range(len(shards)):
        song = shards.song(song_idx)
        starts = sorted(items[items[:, 0] == song_idx, 1].tolist())
        assert all(st.kinds(song)[s] == Kind.BAR for s in starts)
        covered = np.zeros(len(song), dtype=bool)
        for s in starts:
            w = window(st, song, s, 513)
            covered[s : s + len(w) - 4] = True
        first = starts[0]
        assert covered[first:].mean() > 0.97


def test_completion_mask_covers_exactly_the_completion(shards):
    stream = SampleStream(shards, max_seq_len=256, objective="completion", seed=1)
    st = stream.structure
    for i in range(20):
        s = stream.sample(0, i)
        split = int(np.argmax(s.loss_mask))
        assert split > 0 and st.kinds(s.ids)[split] == Kind.BAR
        assert not s.loss_mask[:split].any() and s.loss_mask[split:].all()


def test_positions_run_across_epochs_of_different_sizes(shards):
    stream = SampleStream(shards, 128, seed=5)
    n0, n1 = len(stream.items(0)), len(stream.items(1))
    assert stream.locate(n0 - 1) == (0, n0 - 1)
    assert stream.locate(n0) == (1, 0)
    assert stream.locate(n0 + n1 + 2) == (2, 2)
    assert np.array_equal(stream.sample_at(n0 + 3).ids, stream.sample(1, 3).ids)


def test_same_seed_same_samples(shards):
    a = SampleStream(shards, 128, seed=5, max_transpose=3)
    b = SampleStream(shards, 128, seed=5, max_transpose=3)
    for i in (0, 3, 9):
        assert np.array_equal(a.sample(2, i).ids, b.sample(2, i).ids)
    assert not np.array_equal(a.items(0), a.items(1))


def test_transposition_stays_on_the_keyboard(shards):
    st = shards.tokenizer.structure
    ids = shards.song(0)
    lo, hi = transpose_range(st, ids, 6)
    assert -6 <= lo <= 0 <= hi <= 6
    up = transpose(st, ids, hi)
    p0 = st.value[ids[st.kinds(ids) == Kind.PITCH]]
    p1 = st.value[up[st.kinds(up) == Kind.PITCH]]
    assert np.array_equal(p1 - p0, np.full(len(p0), hi)) and p1.max() <= 108
    assert np.array_equal(st.kinds(up), st.kinds(ids))
    with pytest.raises(ValueError):
        transpose(st, ids, 60)


def test_collate_pads_and_shifts(shards):
    stream = SampleStream(shards, 64, objective="completion", seed=0)
    samples = [stream.sample(0, i) for i in range(3)]
    batch = collate(samples, pad_id=0)
    T = max(len(s.ids) for s in samples) - 1
    assert batch["idx"].shape == batch["targets"].shape == batch["mask"].shape == (3, T)
    for b, s in enumerate(samples):
        n = len(s.ids) - 1
        assert batch["idx"][b, :n].tolist() == s.ids[:-1].tolist()
        assert batch["targets"][b, :n].tolist() == s.ids[1:].tolist()
        assert batch["mask"][b, :n].tolist() == s.loss_mask[1:].astype(float).tolist()
        assert batch["mask"][b, n:].sum() == 0


def test_pairs_and_jsonl_round_trip(shards, tmp_path):
    st = shards.tokenizer.structure
    song = shards.song(0)
    ctx, comp = pair(st, song, 2, 5, 9)
    bars = st.bar_starts(song)
    assert np.array_equal(comp, song[bars[5] : bars[9]])
    assert header_kinds(st, ctx) == [Kind.BAR, Kind.TIMESIG, Kind.POSITION, Kind.TEMPO]
    pairs = make_pairs(shards, 256)
    path = tmp_path / "pairs.jsonl"
    assert export_jsonl(pairs, shards.tokenizer, path) == len(pairs)
    back = import_jsonl(path, shards.tokenizer)
    assert len(back) == len(pairs)
    for (c0, d0), (c1, d1) in zip(pairs, back, strict=True):
        assert np.array_equal(c0, c1) and np.array_equal(d0, d1)
    other = PianoTokenizer(TokenizerSettings(num_velocities=8))
    with pytest.raises(UserError):
        import_jsonl(path, other)


def test_fim_samples_show_the_suffix_before_the_middle(shards):
    stream = SampleStream(shards, 256, objective="completion", seed=2, fim_rate=1.0)
    st, m = stream.structure, stream.markers
    n_fim = 0
    for i in range(30):
        s = stream.sample(0, i)
        assert len(s.ids) <= 257
        if s.ids[0] != m.suffix:
            continue
        n_fim += 1
        pos = {
            name: int(np.flatnonzero(s.ids == getattr(m, name))[0])
            for name in ("suffix", "prefix", "middle", "end")
        }
        assert pos["suffix"] < pos["prefix"] < pos["middle"] < pos["end"] == len(s.ids) - 1
        suffix = s.ids[1 : pos["prefix"]]
        prefix = s.ids[pos["prefix"] + 1 : pos["middle"]]
        middle = s.ids[pos["middle"] + 1 : pos["end"]]
        for part in (suffix, prefix):
            if len(part):
                assert header_kinds(st, part) == [Kind.BAR, Kind.TIMESIG, Kind.POSITION, Kind.TEMPO]
                assert shards.tokenizer.tokens_errors(part) == 0.0
        assert st.kinds(middle[:2]).tolist() == [Kind.BAR, Kind.TIMESIG]
        assert 1 <= len(st.bar_starts(middle)) <= 8
        # Loss only on the middle and its end marker.
        assert not s.loss_mask[: pos["middle"] + 1].any() and s.loss_mask[pos["middle"] + 1 :].all()
        # The middle is a run of whole bars of the window, verbatim, and the prefix its start.
        song, start = shards.song(int(stream.items(0)[i, 0])), int(stream.items(0)[i, 1])
        w = st.with_header(song, start)
        assert np.array_equal(w[: len(prefix)], prefix)
        assert np.array_equal(w[len(prefix) : len(prefix) + len(middle)], middle)
    assert n_fim >= 25


def test_part_infilling_and_plain_windows(shards):

    tok, st = shards.tokenizer, shards.tokenizer.structure
    stream = SampleStream(
        shards, 512, objective="completion", seed=4, part_rate=1.0, plain_rate=0.0
    )
    m = stream.markers
    seen = 0
    for i in range(0, 40, 3):
        s = stream.sample(0, i)
        if s.ids[0] != m.suffix:
            continue
        at, end = (int(np.flatnonzero(s.ids == x)[0]) for x in (m.middle, m.end))
        middle, mask = s.ids[at + 1 : end], s.loss_mask[at + 1 : end]
        assert not s.loss_mask[: at + 1].any() and s.loss_mask[end]
        bars = np.append(st.bar_starts(middle), len(middle))
        given = None
        for a, b in zip(bars[:-1], bars[1:], strict=True):
            head, parts = st.blocks(middle[a:b])
            assert not mask[a : a + len(head)].any()
            if len(parts) == 2:
                seen += 1
                first = int(st.value[parts[0][0]])
                given = first if given is None else given
                assert first == given  # the same part is given in every bar
                n0 = len(head) + len(parts[0])
                assert not mask[a : a + n0].any()  # the given block carries no loss
                written = mask[a + n0 : b]
                notes = st.kinds(middle[a + n0 : b]) == Kind.PITCH
                assert written[notes].all()  # every note of the other part does
        assert tok.tokens_errors(middle) == 0.0
    assert seen > 5
    plain = SampleStream(shards, 512, seed=4, plain_rate=1.0)
    for i in range(0, 20, 4):
        s = plain.sample(0, i)
        k = st.kinds(s.ids)
        assert not (k == Kind.PART).any() and (k == Kind.CHORD).any()
        assert tok.tokens_errors(s.ids) == 0.0 and len(s.ids) <= 513
