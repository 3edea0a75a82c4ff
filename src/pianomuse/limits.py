"""The fixed limits of Piano Muse, read by the command line, the web API and the live socket
alike (the web server's configurable limits are `pianomuse.serve.ServeLimits`)."""

# A solo-piano MIDI file is rarely above a few hundred kB; 16 MB is far beyond any real piece
# and keeps a hostile or accidental input from exhausting memory.
MAX_MIDI_BYTES = 16 * 1024 * 1024
# One million notes is ~ 10 hours of dense piano: anything beyond is not a piece.
MAX_NOTES = 1_000_000
# Length of a piece in quarter-note beats, counting every event (notes, tempo and metre
# changes, markers, controllers): 20,000 beats is ~3 hours at 120 qpm. Bars are counted
# from the start, so a stray event far away would otherwise mean a million empty bars.
MAX_BEATS = 20_000
# Audio is rendered whole in memory (44.1 kHz stereo float32, 21 MB a minute): a piece
# sounding longer than this is refused rather than taking gigabytes.
MAX_AUDIO_SECONDS = 30 * 60
# Bars one continuation may ask for, and alternatives written from one prefill.
MAX_BARS = 256
MAX_CANDIDATES = 64
# Training shows gaps (fill-in-the-middle middles) of up to 8 bars; an infill may ask twice
# that, which is still sensible.
MAX_MIDDLE_BARS = 8
MAX_GAP_BARS = 16
# Context of a model file that does not say how long its training windows were.
DEFAULT_CONTEXT_TOKENS = 1024
# Decoding budget per bar asked for: POP909's densest bars take ~300 tokens.
TOKENS_PER_BAR = 512
# Seeds below 2**31 mean the same in every client language (a JavaScript number, a C int).
MAX_SEED = 2**31 - 1
# Sampling temperature: 0 is greedy; below MIN_TEMPERATURE the logits' scaling overflows
# (1/t of a float32 logit), above MAX_TEMPERATURE the draw is noise.
MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 5.0
# The shortest chord a progression may give: a sixteenth note, room for a note to sound it.
MIN_CHORD_BEATS = 0.25
# Notes a bar a density may ask: the densest bars of POP909 hold about this many.
MAX_NOTES_PER_BAR = 48
# A live jam: the silent bars after the last note that go into the model (later ones are
# skipped, so a clock that jumps ahead costs nothing), how long a socket may wait before its
# start and between messages, and what one message may hold.
LIVE_SILENT_BARS = 4
LIVE_START_S = 30.0
LIVE_IDLE_S = 60.0
LIVE_MESSAGE_BYTES = 16_384
LIVE_JSON_DEPTH = 4
