"""Playing with the copilot live: a streaming session fed note by note, and the MIDI ports
and web socket that carry the notes to and from it."""

from pianomuse.live.session import LiveSession
from pianomuse.live.settings import LiveSettings, Out

__all__ = ["LiveSession", "LiveSettings", "Out"]
