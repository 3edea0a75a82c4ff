"""How a jam goes (`LiveSettings`) and what the copilot plays (`Out`)."""

from __future__ import annotations

from dataclasses import dataclass

from pianomuse.errors import FieldError

# answer: call and response; accompany: an accompaniment under the player's melody, bar by bar
MODES = ("answer", "accompany")


@dataclass(frozen=True)
class LiveSettings:
    """How the copilot jams (every field checked here, one line naming it)."""

    bpm: float = 96.0  # quarter notes a minute
    metre: str = "4/4"  # the bar, as a time signature
    bars: int = 4  # bars of each answer
    silence_bars: float = 1.0  # the player's silence that asks for an answer, in bars
    lead_s: float = 0.25  # an answer starts on the first bar line at least this long after
    trigger_note: int | None = None  # a key that asks for an answer at once (not recorded)
    max_notes_per_s: int = 100  # beyond this many note-ons in a second, notes are dropped
    mode: str = "answer"  # answer (call and response) or accompany (play along under a melody)

    def __post_init__(self) -> None:
        if not 20 <= self.bpm <= 300:
            raise FieldError("bpm", f"must be between 20 and 300 beats a minute, not {self.bpm:g}")
        num, sep, den = self.metre.partition("/")
        if not (sep and num.isdigit() and den.isdigit() and int(num) > 0 and int(den) > 0):
            raise FieldError("metre", f"takes a time signature like 4/4, not {self.metre!r}")
        if not 1 <= self.bars <= 16:
            raise FieldError("bars", "an answer is between 1 and 16 bars")
        if not 0.25 <= self.silence_bars <= 8:
            raise FieldError("silence_bars", "must be between 0.25 and 8 bars")
        if not 0 <= self.lead_s <= 2:
            raise FieldError("lead_s", "must be between 0 and 2 seconds")
        if self.trigger_note is not None and not 0 <= self.trigger_note <= 127:
            raise FieldError("trigger_note", "must be a MIDI key, 0..127")
        if not 1 <= self.max_notes_per_s <= 1000:
            raise FieldError("max_notes_per_s", "must be between 1 and 1000")
        if self.mode not in MODES:
            raise FieldError("mode", f"must be {' or '.join(MODES)}, not {self.mode!r}")

    @property
    def time_signature(self) -> tuple[int, int]:
        num, _, den = self.metre.partition("/")
        return int(num), int(den)

    @property
    def beat_s(self) -> float:
        return 60.0 / self.bpm

    @property
    def bar_beats(self) -> float:
        num, den = self.time_signature
        return 4 * num / den


@dataclass(frozen=True)
class Out:
    """A note of the copilot to play (seconds on the session's clock), or `cancel`: stop
    every copilot note after `time` (the player came back)."""

    kind: str  # "note" | "cancel"
    time: float  # onset (or the moment of the cancel)
    off: float = 0.0  # when the note ends
    pitch: int = 0
    velocity: int = 0
