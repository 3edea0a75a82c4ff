"""A jam with the copilot: the player's notes come in as they are played, each finished bar
goes into the model's recurrent state once (the history is never read again), and when the
player stops the copilot answers, note by note, on the bar grid, until the player plays
again (call and response).

Time is seconds on the caller's clock from the session's first bar line (a metronome's
downbeat): a MIDI port loop, a browser, or a test playing a song faster than real time all
drive the same `LiveSession` through `note_on`, `note_off`, `trigger` and `poll`. Nothing
here sleeps or reads a clock, so every behaviour can be replayed exactly.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from pianomuse.copilot import Copilot
from pianomuse.copilot.core import DEFAULT_SAMPLING
from pianomuse.errors import FieldError
from pianomuse.generate.decode import stream_tokens
from pianomuse.generate.sampling import Sampling
from pianomuse.limits import LIVE_SILENT_BARS, TOKENS_PER_BAR
from pianomuse.live.scenes import accompany_scene, answer_scene
from pianomuse.live.settings import LiveSettings, Out
from pianomuse.steering import NO_STEERING, Steering
from pianomuse.steering.compile import Scene, compile_steering
from pianomuse.tokenizer import Kind
from pianomuse.tokenizer.live import WINDOW_BARS, LiveNote, NoteReader, bar_tokens, jam_midi


@dataclass
class _Answer:
    """An answer being written: its tokens stream in and become notes."""

    start_bar: int  # session bar its first bar begins at
    tokens: Any  # the token iterator (`stream_tokens`)
    reader: NoteReader
    notes: list[LiveNote] = field(default_factory=list)  # written so far (session beats)
    done: bool = False


class LiveSession:
    """One jam: the player's notes in, the copilot's answers out. See the module doc."""

    def __init__(
        self,
        copilot: Copilot,
        settings: LiveSettings,
        *,
        steering: Steering = NO_STEERING,
        sampling: Sampling = DEFAULT_SAMPLING,
    ):
        self.tok, self.engine, self.planner = copilot.tok, copilot.engine, copilot.planner
        st = self.tok.structure
        metre = f"TimeSig_{settings.metre}"
        if metre not in st.id:
            known = ", ".join(k.removeprefix("TimeSig_") for k in st.id if k.startswith("TimeSig_"))
            raise FieldError("metre", f"{settings.metre} is not a metre this model knows ({known})")
        if settings.mode == "accompany":
            if not self.tok.has_parts:
                raise FieldError("mode", "accompany needs a model with parts (tokenizer version 2)")
            if steering.chords is not None:
                raise FieldError("chords", "steer answers; the accompaniment follows the player")
        self.s, self.steering, self.sampling = settings, steering, sampling
        self.timesig = st.id[metre]
        # Every request is checked against what the session writes before the jam starts
        # (and before the warm-up), not when its first answer is due.
        if settings.mode == "accompany":
            compile_steering(steering, self._accompany_scene([], [], 1.0))
        else:
            compile_steering(steering, replace(self._answer_scene([]), context_density=1.0))
        # What the engine makes on its first step and reads (on PyTorch: the int8 copy, the
        # traced step and the bar prefills' graphs) is made here, once per model and process
        # (a server that never plays live does not pay it), not at the first bar or answer.
        self.engine.warm_up(reading=True)
        # numpy imports its masked arrays on the first percentile, which an answer's steering
        # takes (the context's density): 120 ms, here rather than in the first answer.
        import numpy.ma  # noqa: F401

        self.generator = sampling.generator()
        self.player: list[list[float]] = []  # [onset, off or nan, pitch, velocity] in beats
        self.down: dict[int, list[float]] = {}  # key -> its note in `player`, while held
        self.copilot: list[LiveNote] = []  # the copilot's notes that sounded (or will)
        self.fed = 0  # bars in the state
        # The last read: (state before, tokens, logits after, state after). A trigger reads
        # what a silent poll already read (`_prepare`), and takes it from here.
        self._last_read: tuple[Any, tuple[int, ...], np.ndarray, Any] | None = None
        self._prepared: tuple[int, int, int] | None = None  # (bars fed, answer start, notes)
        self.ids: list[int] = []  # every token in the state, in order
        self.state: Any = None  # the engine's state after `ids`
        self.logits: np.ndarray | None = None  # [1, V] after `ids`
        self.answer: _Answer | None = None
        self.asked = False  # a trigger key or message: answer at the next chance
        self.answered = -np.inf  # beats: the player's notes before this have had an answer
        self.fresh = False  # the player has struck a key since the last answer began
        self.fresh_off = -np.inf  # beats: the last release of those keys
        self.job: Iterator[list[Out]] | None = None  # the accompaniment being written
        self.given: dict[int, list[int]] = {}  # session bar -> its accompaniment's tokens
        self.planned = -1  # the last session bar whose accompaniment is written or under way
        self.last_event = 0.0  # seconds: events must not go back in time
        self.recent: list[float] = []  # onsets of the last second (flood control)
        self.status: dict[str, Any] = {
            "dropped": 0,
            "bars_absorbed": 0,
            "answers": 0,
            "cancelled": 0,
            "absorb_ms": deque(maxlen=4096),  # the cost of each bar read, the latest ones
        }

    # ----- the clock -------------------------------------------------------------------
    def beats(self, t: float) -> float:
        return t / self.s.beat_s

    def seconds(self, beats: float) -> float:
        return beats * self.s.beat_s

    def bar_of(self, beats: float) -> int:
        return int(np.floor(beats / self.s.bar_beats + 1e-9))

    # ----- the player ------------------------------------------------------------------
    def _in_order(self, t: float) -> bool:
        if not np.isfinite(t) or t < self.last_event - 1e-6:
            self.status["dropped"] += 1  # out of order: a clock that jumped back
            return False
        self.last_event = max(self.last_event, t)
        return True

    def note_on(self, t: float, pitch: int, velocity: int = 90) -> list[Out]:
        """The player strikes a key at `t`; what to stop playing, if an answer was on."""
        if not 0 <= pitch <= 127:
            self.status["dropped"] += 1  # no such key
            return []
        if not self._in_order(t):
            return []
        if velocity <= 0:  # MIDI's note-on with velocity 0 is a note-off
            self.note_off(t, pitch)
            return []
        if pitch == self.s.trigger_note:
            self.asked = True
            return []
        self.recent = [x for x in self.recent if x > t - 1.0]
        if len(self.recent) >= self.s.max_notes_per_s:
            self.status["dropped"] += 1
            return []
        self.recent.append(t)
        self._release(t, pitch)  # struck again without a note-off: the old note ends here
        note = [self.beats(t), np.nan, pitch, min(int(velocity), 127)]
        self.player.append(note)
        self.down[pitch] = note
        self.fresh = True
        return self._cancel(t)

    def note_off(self, t: float, pitch: int) -> None:
        if self._in_order(t):
            self._release(t, pitch)

    def _release(self, t: float, pitch: int) -> None:
        note = self.down.pop(pitch, None)
        if note is not None:
            note[1] = max(self.beats(t), note[0] + 1e-3)
            if note[0] >= self.answered:
                self.fresh_off = max(self.fresh_off, note[1])

    def trigger(self, t: float) -> None:
        """Ask for an answer now (a pedal, a key or a button), silence or not."""
        if self._in_order(t):
            self.asked = True

    # ----- the copilot -----------------------------------------------------------------
    def poll(self, t: float, budget_s: float = 0.02) -> list[Out]:
        """Everything due at `t`: finished bars go into the state; an answer starts when
        the player has been silent long enough (or asked); the answer being written gets
        its notes up to a bar ahead of `t`, spending about `budget_s` of compute at most."""
        t = max(t, self.last_event)  # a clock read late never takes the session back
        self.last_event = t
        now = self.beats(t)
        self._absorb(now)
        out: list[Out] = []
        if self.s.mode == "accompany":
            return self._accompany_step(time.perf_counter() + budget_s)
        if self.answer is None and self._wants_answer(now):
            self._start_answer(t)
        elif self.answer is None and self.fresh and not self.down:
            self._prepare(t)
        if self.answer is not None and not self.answer.done:
            out += self._write(now + self.s.bar_beats, time.perf_counter() + budget_s)
        if self.answer is not None and self.answer.done:
            end = self.seconds((self.answer.start_bar + self.s.bars) * self.s.bar_beats)
            if t >= end:
                self.answer = None
        return out

    def _wants_answer(self, now: float) -> bool:
        if not self.fresh or self.down:
            return self.asked and bool(self.player)
        silent = now - self.fresh_off
        return self.asked or silent >= self.s.silence_bars * self.s.bar_beats

    def _answer_start(self, t: float) -> int:
        """The first bar line far enough ahead of `t` for an answer's first notes to be
        written in time."""
        return int(np.ceil(self.beats(t + self.s.lead_s) / self.s.bar_beats - 1e-9))

    def _prepare(self, t: float) -> None:
        """While the player is silent, read the bars an answer asked now would read first
        (once per bars fed, answer start and notes played): the trigger then finds them read."""
        start, first = self._answer_start(t), self._first_bar()
        key = (self.fed, start, len(self.player))
        if self._prepared != key and first + self.fed < start:
            self._prepared = key
            self._feed(self.state, self.logits, range(first + self.fed, start), list(self.ids))

    def _start_answer(self, t: float) -> None:
        self.asked = False
        start = self._answer_start(t)
        self.answered = self.beats(t)
        self.fresh, self.fresh_off = False, -np.inf
        # The bars up to the answer go into a fork of the state: they are silent until it
        # starts (or the player comes back, and the answer is dropped).
        state, logits, ids = self._feed(
            self.state, self.logits, range(self._first_bar() + self.fed, start), list(self.ids)
        )
        tokens = stream_tokens(
            self.engine,
            logits,
            state,  # stepped into new states: the session's own stays as it was
            grammar=compile_steering(self.steering, self._answer_scene(ids)).grammar,
            generator=self.generator,
            sampling=self.sampling,
            max_new_tokens=self.s.bars * TOKENS_PER_BAR,
        )
        self.answer = _Answer(start, tokens, NoteReader(self.tok))
        self.status["answers"] += 1

    def _answer_scene(self, ids: list[int]) -> Scene:
        return answer_scene(self.tok, self.timesig, self.s.bars, ids, self.planner)

    def _accompany_scene(self, ids: list[int], sounding: list[int], density: float) -> Scene:
        return accompany_scene(self.tok, self.timesig, ids, sounding, density)

    def _write(self, until: float, deadline: float) -> list[Out]:
        """Notes of the answer up to `until` (beats), or until the deadline passes."""
        a = self.answer
        assert a is not None
        out = []
        origin = a.start_bar * self.s.bar_beats
        while not a.done and (not a.notes or a.notes[-1].onset < until):
            try:
                tok = next(a.tokens)
            except StopIteration:
                a.done = True
                break
            note = a.reader.feed(tok)
            if note is not None:
                n = LiveNote(origin + note.onset, note.duration, note.pitch, note.velocity)
                a.notes.append(n)
                self.copilot.append(n)
                out.append(
                    Out(
                        "note",
                        self.seconds(n.onset),
                        self.seconds(n.onset + n.duration),
                        n.pitch,
                        n.velocity,
                    )
                )
            if time.perf_counter() > deadline and out:
                break
        return out

    # ----- playing along ---------------------------------------------------------------
    def _accompany_step(self, deadline: float) -> list[Out]:
        """Write on the accompaniment under way; once a bar the player played in is in the
        state, start the one two bars on (the next bar already has its own)."""
        last = self._first_bar() + self.fed - 1  # the last bar in the state
        bb = self.s.bar_beats
        played = any(n[0] < (last + 1) * bb for n in self._player_from(last * bb))
        if self.job is None and self.fed and last + 2 > self.planned and played:
            self.planned = last + 2
            self.job = self._accompany(last)
        out: list[Out] = []
        while self.job is not None:
            try:
                out += next(self.job)
            except StopIteration:
                self.job = None
            if time.perf_counter() > deadline:
                break
        return out

    def _accompany(self, k: int) -> Iterator[list[Out]]:
        """The accompaniment of session bar k+2, written once bar k is in the state: the
        model first guesses bar k+1 (its melody is not played yet; its accompaniment is the
        one already sounding), then writes bar k+2. Yields after every token, with the notes
        of bar k+2 that token completed."""
        st = self.tok.structure
        # "As the context": the accompaniment's notes a bar so far (the melody's, at first).
        bb = self.s.bar_beats
        lo = max(k - 3, self._first_bar()) * bb
        hi = (k + 1) * bb
        recent = [n for n in self.copilot if lo <= n.onset < hi] or [
            n for n in self._player_from(lo) if n[0] < hi
        ]
        density = max(len(recent) / (hi - lo) * bb, 1.0)
        scene = self._accompany_scene(self.ids, self.given.get(k + 1, []), density)
        assert self.state is not None and self.logits is not None
        tokens = stream_tokens(
            self.engine,
            self.logits,
            self.state,
            grammar=compile_steering(self.steering, scene).grammar,
            generator=self.generator,
            sampling=self.sampling,
            max_new_tokens=2 * TOKENS_PER_BAR,
        )
        reader = NoteReader(self.tok)
        origin = (k + 1) * self.s.bar_beats
        bar, part, mine = -1, -1, []
        for tok in tokens:
            kind = st.kind[tok]
            if kind == Kind.BAR:
                bar, part = bar + 1, -1
            elif kind == Kind.PART:
                part = int(st.value[tok])
            if bar == 1 and part == 1:
                mine.append(tok)
            note = reader.feed(tok)
            if note is None or bar != 1 or note.part != 1:
                yield []
                continue
            n = LiveNote(origin + note.onset, note.duration, note.pitch, note.velocity, 1)
            self.copilot.append(n)
            on, off = self.seconds(n.onset), self.seconds(n.onset + n.duration)
            yield [Out("note", on, off, n.pitch, n.velocity)]
        self.given[k + 2] = mine

    def _cancel(self, t: float, *, counted: bool = True) -> list[Out]:
        """The player plays again (or the jam ends): the answer's notes after `t` never
        sound."""
        a = self.answer
        if a is None:
            return []
        now = self.beats(t)
        # The answer's notes are the last of the copilot's (an answer ends or is cut before
        # the next begins): those before `now` stay, cut at `now`.
        earlier = self.copilot[: len(self.copilot) - len(a.notes)]
        heard = [
            LiveNote(n.onset, min(n.duration, now - n.onset), n.pitch, n.velocity)
            for n in a.notes
            if n.onset < now
        ]
        self.copilot = earlier + heard
        self.answer = None
        self.status["cancelled"] += counted
        return [Out("cancel", t)]

    # ----- the state -------------------------------------------------------------------
    def _player_from(self, lo: float) -> list[list[float]]:
        """The player's notes struck at `lo` (beats) or later. They are kept in the order
        they were struck (`_in_order`), so a bar's window is found by bisection: a bar costs
        the same after an hour's jam as in the first minute."""
        return self.player[bisect.bisect_left(self.player, lo, key=lambda n: n[0]) :]

    def _tracks(self, lo: float, hi: float) -> dict[str, list[LiveNote]]:
        """The notes struck in [lo, hi) (beats), as the model reads them: one piano, or a
        melody and its accompaniment; times from the first played bar, a key still down
        lasting until `hi`."""
        origin = self._first_bar() * self.s.bar_beats
        player = [
            LiveNote(on - origin, (hi if np.isnan(off) else off) - on, int(p), int(v))
            for on, off, p, v in self._player_from(lo)
            if on < hi
        ]
        copilot = [
            LiveNote(n.onset - origin, n.duration, n.pitch, n.velocity)
            for n in self.copilot
            if lo <= n.onset < hi
        ]
        if self.s.mode == "accompany":
            return {"Melody": player, "Accompaniment": copilot}
        return {"Piano": player + copilot}

    def _feed(
        self,
        state: Any,
        logits: np.ndarray | None,
        bars: range,
        ids: list[int],
    ) -> tuple[Any, np.ndarray, list[int]]:
        """The state after `bars` (session bars from the first played one) are read: their
        tokens in one read (at a trigger, the bar under way and the silent ones before the
        answer cost one call of the engine, not one each)."""
        first, bb = self._first_bar(), self.s.bar_beats
        new: list[int] = []
        for b in bars:
            # Only the bars the encoder reads for this one (`bar_tokens`), not the history.
            lo = max(b - WINDOW_BARS, first) * bb
            new += bar_tokens(
                self.tok,
                self._tracks(lo, (b + 1) * bb),
                b - first,
                qpm=self.s.bpm,
                metre=self.s.time_signature,
            ).tolist()
        if new:
            last = self._last_read
            if last is not None and last[0] is state and last[1] == tuple(new):
                logits, state = last[2], last[3]  # read already (`_prepare`)
            else:
                # A new state; `state` stays. The jam's first bar (None) is read from the
                # start (a style's, if any).
                got = self.engine.read(np.asarray(new), state)
                self._last_read = (state, tuple(new), *got)
                logits, state = got
            ids += new
        assert state is not None and logits is not None
        return state, logits, ids

    def _first_bar(self) -> int:
        return self.bar_of(self.player[0][0]) if self.player else 0

    def _absorb(self, now: float) -> None:
        """Every bar that is over (and whose notes are all released) goes into the state."""
        if not self.player:
            return
        first = self._first_bar()
        b = first + self.fed
        while (b + 1) * self.s.bar_beats <= now:
            end = (b + 1) * self.s.bar_beats
            held = any(n[0] < end for n in self.down.values())
            if held and now < end + self.s.bar_beats and self.s.mode == "answer":
                # A key of this bar is still down: wait (a bar at most) for its length. Playing
                # along cannot wait: the note is read as lasting until now.
                break
            if not held and self._silent_since(b) > LIVE_SILENT_BARS:
                # Long silent: skip to the next bar with a note, or to now, unread.
                nxt = min(self._next_onset(b * self.s.bar_beats), now) / self.s.bar_beats
                skip = max(int(np.floor(nxt + 1e-9)) - b, 1)
                self.fed, b = self.fed + skip, b + skip
                continue
            t0 = time.perf_counter()
            self.state, self.logits, self.ids = self._feed(
                self.state, self.logits, range(b, b + 1), self.ids
            )
            self.status["absorb_ms"].append(1000 * (time.perf_counter() - t0))
            self.status["bars_absorbed"] += 1
            self.fed += 1
            b += 1

    def _silent_since(self, b: int) -> int:
        """Bars from the last onset before the end of bar b (the player's or the
        copilot's) to that end. Both lists are kept in onset order, so this is a bisection."""
        end = (b + 1) * self.s.bar_beats
        i = bisect.bisect_left(self.player, end, key=lambda n: n[0])
        j = bisect.bisect_left(self.copilot, end, key=lambda n: n.onset)
        onsets = [self.player[i - 1][0]] if i else []
        onsets += [self.copilot[j - 1].onset] if j else []
        return b + 1 - self.bar_of(max(onsets)) if onsets else b + 1 - self._first_bar()

    def _next_onset(self, lo: float) -> float:
        """The first onset at or after `lo` beats, the player's or the copilot's (inf: none)."""
        i = bisect.bisect_left(self.player, lo, key=lambda n: n[0])
        j = bisect.bisect_left(self.copilot, lo, key=lambda n: n.onset)
        later = [self.player[i][0]] if i < len(self.player) else []
        later += [self.copilot[j].onset] if j < len(self.copilot) else []
        return min(later, default=np.inf)

    # ----- the end ---------------------------------------------------------------------
    def stop(self, t: float) -> bytes:
        """End the jam at `t`: keys still down are released, the answer's unplayed notes
        dropped; the whole jam as MIDI (player and copilot as two tracks)."""
        t = max(t, self.last_event)
        self._cancel(t, counted=False)
        now = self.beats(t)
        player = [
            LiveNote(on, (now if np.isnan(off) else off) - on, int(p), int(v))
            for on, off, p, v in self.player
        ]
        copilot = [n for n in self.copilot if n.onset < now]
        return jam_midi(player, copilot, self.s.bpm, self.s.time_signature)
