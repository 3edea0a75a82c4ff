"""The copilot: MIDI in, K ranked continuations or infills out.

It glues the layers together: the tokenizer reads the piece (MIDI -> `Piece`, token ids and
bar lines) and writes the result back into it; generation sees only token ids; this module
chooses the prompt, the metre and the constraints, and calls one generation path.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from pianomuse.bundled import bundled_planner
from pianomuse.copilot.prompts import context_window, fim_prompt, prevailing_metre
from pianomuse.copilot.result import Candidate, Generation, Span, new_bar_beats
from pianomuse.copilot.score import as_read
from pianomuse.copilot.weights import Weights
from pianomuse.errors import FieldError, UserError
from pianomuse.generate.decode import continue_tokens
from pianomuse.generate.engine import Engine, check_precision
from pianomuse.generate.grammar import Grammar
from pianomuse.generate.sampling import Sampling
from pianomuse.limits import (
    DEFAULT_CONTEXT_TOKENS,
    MAX_BARS,
    MAX_CANDIDATES,
    MAX_GAP_BARS,
    TOKENS_PER_BAR,
)
from pianomuse.planner import Selector
from pianomuse.steering import NO_STEERING, Steering
from pianomuse.steering.compile import WRITES, Plan, Scene, compile_steering
from pianomuse.tokenizer import Kind, MidiSource, Piece, Tokenizer, blank_piece, load_score
from pianomuse.tokenizer.compose import (
    NEVER,
    continue_piece,
    decode_bars,
    keep_tracks,
    replace_span,
    seam_keys,
)
from pianomuse.tokenizer.remi2 import TRACK_OF_PART

if TYPE_CHECKING:
    from pianomuse.model import RWKV7
    from pianomuse.style import Style

Progress = Callable[[float], None]
DEFAULT_SAMPLING = Sampling()  # frozen: safe to share as a default


class Copilot:
    """Continue and infill piano MIDI with one RWKV-7 model.

    >>> cp = Copilot("runs/small/best.safetensors")   # or Copilot(load_model(path))
    >>> result = cp.complete("song.mid", bars=8, candidates=4, sampling=Sampling(seed=1))
    >>> result.candidates[0].full  # a symusic Score: the piece with the new bars
    """

    def __init__(
        self,
        model: RWKV7 | str | os.PathLike,
        tokenizer: Tokenizer | None = None,
        device: str | Any | None = None,
        max_context_tokens: int | None = None,
        precision: str | None = None,
        planner: Selector | None = None,
        style: Style | None = None,
        runtime: str = "auto",
        threads: int | None = None,
    ):
        # The weights inference runs on a CPU (int8 or fp32); None: the default (int8).
        self.precision = check_precision(precision)
        self.weights = Weights(model, precision=self.precision, runtime=runtime, device=device,
                               threads=threads, styled=style is not None)  # fmt: skip
        self.model_info = dict(self.weights.info)
        facts = self.weights.engine.facts
        if tokenizer is None:
            if facts.tokenizer_config is None:
                raise UserError("the model carries no tokenizer; pass its tokenizer")
            what = f"the tokenizer in the model {self.model_info['model']}"
            tokenizer = Tokenizer.from_config(facts.tokenizer_config, what=what)
        if facts.tokenizer_hash is not None:
            tokenizer.check_hash(facts.tokenizer_hash, what=f"the model {self.model_info['model']}")
        if facts.vocab_size != tokenizer.vocab_size:
            raise UserError("the model's vocabulary does not match the tokenizer's")
        self.tok = tokenizer
        self.model_info["tokenizer_hash"] = tokenizer.hash
        self.model_info["precision"] = self.precision  # int8 and fp32 sample differently
        self._use_style(style)
        # How the chords of new bars are planned where none are given (`steering.plan`).
        self.planner = planner if planner is not None else bundled_planner()
        trained = facts.trained_seq_len
        self.max_context_tokens = int(max_context_tokens or trained or DEFAULT_CONTEXT_TOKENS)

    @property
    def model(self) -> RWKV7:
        """The PyTorch model generation runs (with the style), or the base model where it
        runs on ONNX Runtime (loaded then): what scoring and tests read."""
        return self.engine.model if self.engine.runtime == "torch" else self.weights.torch_model()

    def _use_style(self, style: Style | None) -> None:
        """Write in `style` (tuned for this model by `pianomuse tune`; None: none)."""
        self.style = style
        self.model_info.pop("style", None)
        if style is None:
            self.engine: Engine = self.weights.engine
        else:
            self.engine = self.weights.styled(style)
            self.model_info["style"] = style.meta.get("name", "in-memory")
        self.model_info["runtime"] = self.engine.runtime  # they sample differently

    def with_style(self, style: Style | None) -> Copilot:
        """This copilot in `style` (None: in none): the same weights, tokenizer, planner and
        settings, nothing read again; a head style copies the weights it changes."""
        out = copy.copy(self)
        out.model_info = dict(self.model_info)
        out._use_style(style)
        return out

    def warm_up(self, reading: bool = False) -> None:
        """Make what the first generation would otherwise make on its way (on PyTorch: the
        int8 copy of the model and the traced step; with `reading`, the traced short
        prefills of live play): a server calls this before its first user, a live session
        before its first note."""
        self.engine.warm_up(reading)

    def read(
        self, midi: MidiSource | Piece, name: str | None = None, write: str | None = None
    ) -> Piece:
        """The piece as given and as the model reads it (see `Piece`). To `write` one part
        of a file without parts, the file is read as the other part (a melody alone gets an
        accompaniment written under it)."""
        if isinstance(midi, Piece):
            return midi
        given = None if write not in WRITES else 1 - WRITES[write]
        return self.tok.read_piece(midi, name=name, as_part=given)

    def chords(self, piece: Piece) -> list[list[Any]]:
        """[beat, symbol] of the piece's chord changes as the model reads them (annotated,
        else recognised; none with a tokenizer without chords), in the piece's own beats."""
        return as_read(self.tok, piece)[1] if self.tok.has_chords else []

    # ----- continuation ------------------------------------------------------------------
    def complete(
        self,
        midi: MidiSource | Piece,
        *,
        bars: int | None = 8,
        candidates: int = 4,
        sampling: Sampling = DEFAULT_SAMPLING,
        context_bars: int | None = None,
        max_new_tokens: int | None = None,
        grammar: bool = True,
        steering: Steering = NO_STEERING,
        progress: Progress | None = None,
    ) -> Generation:
        """Continue `midi` (path, bytes, symusic Score or `Piece`) by `bars` bars (or
        `max_new_tokens` tokens), `candidates` at once from one prefill, ranked by mean
        log-likelihood. The new bars take the metre that prevails in the context; `steering`
        gives chords, a key, registers or a density they keep to."""
        if bars is None and max_new_tokens is None:
            raise FieldError("bars", "or max_new_tokens must be given")
        if bars is not None and not 1 <= bars <= MAX_BARS:
            raise FieldError("bars", f"must be between 1 and {MAX_BARS}")
        if max_new_tokens is not None and not 1 <= max_new_tokens <= MAX_BARS * TOKENS_PER_BAR:
            raise FieldError("max_new_tokens", f"must be between 1 and {MAX_BARS * TOKENS_PER_BAR}")
        if context_bars is not None and context_bars < 1:
            raise FieldError("context_bars", "must be at least 1")
        _check_candidates(candidates)
        piece = self.read(midi)
        st = self.tok.structure
        window, first = context_window(
            st, piece.ids, piece.n_bars, self.max_context_tokens, context_bars
        )
        span = Span("continuation", piece.n_bars, bars, int(piece.bar_ticks[-1]))
        context = {"first_bar": first + 1, "last_bar": piece.n_bars, "tokens": len(window)}
        if context_bars is not None or max_new_tokens is not None:
            context |= {"context_bars": context_bars, "max_new_tokens": max_new_tokens}
        scene = Scene(
            self.tok,
            metres=[prevailing_metre(st, window)],
            bars=bars,
            prompt=window,
            parts=_has_parts(st, piece),
            keys=self._keys(piece, span),
            candidates=candidates,
            history=piece.ids,
            planner=self.planner,
        )
        g = self._steer(steering, scene, context)
        return self._generate(
            piece,
            span,
            prompt=window,
            grammar=g if grammar else None,
            budget=max_new_tokens or bars * TOKENS_PER_BAR,
            candidates=candidates,
            sampling=sampling,
            context=context,
            progress=progress,
            steering=steering,
        )

    # ----- infilling ---------------------------------------------------------------------
    def infill(
        self,
        midi: MidiSource | Piece,
        first_bar: int,
        last_bar: int,
        *,
        candidates: int = 4,
        sampling: Sampling = DEFAULT_SAMPLING,
        steering: Steering = NO_STEERING,
        write: str | None = None,
        progress: Progress | None = None,
    ) -> Generation:
        """Rewrite bars first_bar..last_bar (1-based, inclusive) of `midi` so that they lead
        into the music after them, in the same metres; everything outside the gap is kept.

        With `write` ("accompaniment" or "melody"), only that part is rewritten: the other
        part's notes in the gap are kept note for note and given to the model first in every
        bar (a piece with a melody track and its accompaniment, tokenizer version 2)."""
        _check_candidates(candidates)
        piece = self.read(midi)
        st = self.tok.structure
        if write is not None and write not in WRITES:
            raise FieldError("write", f"must be {' or '.join(WRITES)}, not {write!r}")
        if write is not None and not _has_parts(st, piece):
            raise FieldError("write", "needs a piece with a melody track and its accompaniment")
        i, j = self._gap(piece, first_bar, last_bar)  # gap = bars [i, j), 0-based
        prompt = fim_prompt(st, piece.ids, i, j, self.max_context_tokens)
        start, end = int(piece.bar_ticks[i]), int(piece.bar_ticks[j])
        part = -1 if write is None else WRITES[write]
        span = Span("infill" if write is None else "arrange", i, j - i, start, end, write=part)
        context: dict[str, Any] = {
            "first_bar": prompt.first_bar + 1,
            "last_bar": prompt.suffix_end,
            "gap": [first_bar, last_bar],
            "prefix_tokens": prompt.prefix_tokens,
            "suffix_tokens": prompt.suffix_tokens,
            "tokens": len(prompt.ids),
            "suffix_last_bar": prompt.suffix_end,
        }
        scene = Scene(
            self.tok,
            metres=[int(m) for m in st.bar_metres(piece.ids)[i:j]],
            bars=j - i,
            prompt=prompt.ids,
            close_id=st.id["FIM_End"],
            parts=_has_parts(st, piece),
            keys=self._keys(piece, span),
            candidates=candidates,
            history=piece.ids[: st.bar_starts(piece.ids)[i]],  # planned from the bars before
            planner=self.planner,
        )
        if write is not None:
            # The given part is written out ahead of the model in every bar, with the bar's
            # chords (the song's own, or those asked for).
            context["write"] = write
            scene = replace(
                scene,
                write=part,
                given=self._part_blocks(piece, i, j, part=1 - part),
                piece_chords=self._piece_plan(piece, i, j),
            )
        return self._generate(
            piece,
            span,
            prompt=prompt.ids,
            grammar=self._steer(steering, scene, context),
            budget=(j - i) * TOKENS_PER_BAR,
            candidates=candidates,
            sampling=sampling,
            context=context,
            progress=progress,
            steering=steering,
        )

    def arrange(
        self,
        midi: MidiSource | Piece,
        first_bar: int,
        last_bar: int,
        *,
        write: str = "accompaniment",
        candidates: int = 4,
        sampling: Sampling = DEFAULT_SAMPLING,
        steering: Steering = NO_STEERING,
        progress: Progress | None = None,
    ) -> Generation:
        """`infill(write=...)` over any number of bars (`pianomuse.copilot.arrange`)."""
        from pianomuse.copilot.arrange import arrange  # it builds on this class

        return arrange(self, midi, first_bar, last_bar, write=write, candidates=candidates,
                       sampling=sampling, steering=steering, progress=progress)  # fmt: skip

    # ----- music from chords alone ------------------------------------------------------
    def sketch(
        self,
        *,
        bars: int,
        write: str = "accompaniment",
        steering: Steering,
        candidates: int = 4,
        sampling: Sampling = DEFAULT_SAMPLING,
        qpm: float = 120.0,
        progress: Progress | None = None,
    ) -> Generation:
        """`bars` bars of 4/4 at `qpm` over the chords of `steering` (repeated as needed),
        with no music given: an accompaniment pattern, or with `write="melody"` a tune. The
        model writes them as the middle of an empty piece (it learnt gaps at a piece's start
        and end), the chords forced at their beats, only the part asked for."""
        _check_candidates(candidates)
        if write not in WRITES:
            raise FieldError("write", f"must be {' or '.join(WRITES)}, not {write!r}")
        if steering.chords is None:
            raise FieldError("chords", "are needed to write music without a piece")
        if not 1 <= bars <= MAX_GAP_BARS:
            raise FieldError("bars", f"must be between 1 and {MAX_GAP_BARS} without a piece")
        if not 20 <= qpm <= 300:
            raise FieldError("tempo", "must be between 20 and 300 beats a minute")
        st = self.tok.structure
        if not self.tok.has_parts:
            raise FieldError("write", "needs a model whose tokenizer has parts (version 2)")
        piece = blank_piece(qpm)
        prompt = np.array([st.id["FIM_Suffix"], st.id["FIM_Prefix"], st.id["FIM_Middle"]])
        span = Span("sketch", 0, bars, 0)
        context = {"bars": bars, "write": write, "tempo": qpm}
        scene = Scene(
            self.tok,
            metres=[st.id["TimeSig_4/4"]] * bars,
            bars=bars,
            prompt=prompt,
            close_id=st.id["FIM_End"],
            parts=True,
            write=WRITES[write],
        )
        return self._generate(
            piece,
            span,
            prompt=prompt,
            grammar=self._steer(steering, scene, context),
            budget=bars * TOKENS_PER_BAR,
            candidates=candidates,
            sampling=sampling,
            context=context,
            progress=progress,
            steering=steering,
        )

    # ----- the one generation path -------------------------------------------------------
    def _steer(self, steering: Steering, scene: Scene, context: dict[str, Any]) -> Grammar:
        """The grammar of the new bars under `steering`; what it asked goes into `context`."""
        steered = compile_steering(steering, scene)
        if steered.density is not None:
            context["density"] = steered.density
        if steered.plans is not None:
            context["plans"] = steered.plans
        return steered.grammar

    def _gap(self, piece: Piece, first_bar: int, last_bar: int) -> tuple[int, int]:
        """Bars first_bar..last_bar (1-based, inclusive) as [i, j) (0-based), checked."""
        n_bars = piece.n_bars
        if not 1 <= first_bar <= last_bar <= n_bars:
            raise FieldError(
                "first_bar", f"{first_bar}-{last_bar} is outside the piece's bars 1-{n_bars}"
            )
        n_gap = last_bar - first_bar + 1
        if n_gap > MAX_GAP_BARS:
            raise FieldError(
                "last_bar",
                f"makes a gap of {n_gap} bars, longer than the {MAX_GAP_BARS} this model can fill",
            )
        return first_bar - 1, last_bar

    def _keys(self, piece: Piece, span: Span) -> tuple[np.ndarray, np.ndarray]:
        """For each key, the grid step (from the span's start) where the kept music releases
        it and where it strikes it next (see `KeysFree`)."""
        ppb = self.tok.settings.positions_per_beat
        held, nxt = seam_keys(piece, span.start_tick, span.end_tick)
        steps = ppb / piece.tpq  # grid steps per tick
        free = np.ceil((held - span.start_tick) * steps).astype(np.int64)
        stop = np.where(nxt == NEVER, NEVER, np.floor((nxt - span.start_tick) * steps))
        return free, stop.astype(np.int64)

    def _bars(self, piece: Piece, i: int, j: int) -> list[np.ndarray]:
        """The tokens of bars i..j-1 of the piece."""
        edges = np.append(self.tok.structure.bar_starts(piece.ids), len(piece.ids))
        return [piece.ids[edges[b] : edges[b + 1]] for b in range(i, j)]

    def _piece_plan(self, piece: Piece, i: int, j: int) -> Plan:
        """The chords the piece has in bars i..j-1, as a plan (its annotations, else what
        the tokenizer recognised)."""
        st = self.tok.structure
        plan = []
        for bar in self._bars(piece, i, j):
            marks: list[tuple[int, list[int]]] = []
            at = 0
            for t in bar.tolist():
                kind = st.kind[t]
                if kind == Kind.POSITION:
                    at = int(st.value[t])
                elif kind == Kind.CHORD:
                    marks.append((at, [t]))
                elif kind == Kind.BASS and marks:
                    marks[-1][1].append(t)
            plan.append(marks)
        return plan

    def _part_blocks(self, piece: Piece, i: int, j: int, part: int) -> list[list[int]]:
        """`part`'s block (from its Part token) in each bar i..j-1 of the piece, or []."""
        st = self.tok.structure
        out = []
        for bar in self._bars(piece, i, j):
            mine = [blk for blk in st.blocks(bar)[1] if st.value[blk[0]] == part]
            out.append(mine[0].tolist() if mine else [])
        return out

    def _generate(
        self,
        piece: Piece,
        span: Span,
        *,
        prompt: np.ndarray,
        grammar: Grammar | None,
        budget: int,
        candidates: int,
        sampling: Sampling,
        context: dict[str, Any],
        progress: Progress | None,
        steering: Steering = NO_STEERING,
    ) -> Generation:
        """Decode K candidates after `prompt`, put each into the piece at `span`, rank them."""
        st = self.tok.structure
        conts, stats = continue_tokens(
            self.engine,
            prompt,
            candidates=candidates,
            sampling=sampling,
            bar_id=st.id["Bar_None"],
            grammar=grammar,
            bars=span.bars,
            max_new_tokens=budget,
            progress=progress,
        )
        qpm = piece.qpm_at(span.start_tick)
        out = []
        for n, c in enumerate(conts):
            ids = c.ids if span.bars is not None else _whole_notes(st, c.ids)
            new = decode_bars(self.tok, ids, piece.tpq, qpm)
            if span.kind == "arrange":  # the written part alone; the given part stays
                new = keep_tracks(new, {TRACK_OF_PART[span.write]})
                parts = self.tok.track_parts(piece.source)
                clear = {t for t, p in enumerate(parts) if p == span.write}
                full_midi = replace_span(piece, new, span.start_tick, span.end_tick, clear)
            elif span.kind == "infill":
                full_midi = replace_span(piece, new, span.start_tick, span.end_tick)
            else:
                full_midi = continue_piece(piece, new, span.start_tick, piece.metres[-1])
            full = load_score(full_midi)
            out.append(Candidate(0, n, ids, c.loglik, new, new_bar_beats(st, ids), full, full_midi))
        out.sort(key=lambda c: (-c.loglik, c.index))
        for r, c in enumerate(out, 1):
            c.rank = r
        info = self.model_info
        return Generation(out, piece, span, context, sampling, stats, info, steering, self.tok)


def _has_parts(st: Any, piece: Piece) -> bool:
    """The piece has a melody and an accompaniment part (the new bars then do too)."""
    return bool((st.kinds(piece.ids) == Kind.PART).any())


def _check_candidates(candidates: int) -> None:
    if not 1 <= candidates <= MAX_CANDIDATES:
        raise FieldError("candidates", f"must be between 1 and {MAX_CANDIDATES}")


def _whole_notes(st: Any, ids: np.ndarray) -> np.ndarray:
    """Cut a token-budgeted continuation after its last whole note."""
    if len(ids) == 0 or st.kinds(ids[-1:])[0] == Kind.DURATION:
        return ids
    return ids[: st.last_cut_at_most(ids, len(ids) - 1)]
