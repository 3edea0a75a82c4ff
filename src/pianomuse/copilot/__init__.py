"""The copilot: read a piece, write K ranked continuations or infills into it.

- `core`: `Copilot`, one generation path behind `complete` and `infill`;
- `prompts`: what the model reads (context window, fill-in-the-middle prompt), over token ids;
- `result`: `Generation`, `Candidate` and the `Span` where the new music lies;
- `writers`: the output formats, shared by the command line and the web API.
"""

from pianomuse.copilot.core import Copilot
from pianomuse.copilot.result import Candidate, Generation, Span
from pianomuse.copilot.writers import WRITERS, Writer, write
from pianomuse.generate.sampling import Sampling

__all__ = ["WRITERS", "Candidate", "Copilot", "Generation", "Sampling", "Span", "Writer", "write"]
