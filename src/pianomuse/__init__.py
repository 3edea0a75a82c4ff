"""Piano Muse: an RWKV-7 piano copilot over REMI tokens.

The main entry points are `pianomuse.Copilot` (continue and infill MIDI) and
`pianomuse.load_model` (official RWKV-7 `.pth` or this project's safetensors);
`pianomuse.bundled_model()` is the bundled default (`parts=True`: the model for chords and
parts). They are imported on first use, so `import pianomuse` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Copilot", "Sampling", "bundled_model", "load_model"]

if TYPE_CHECKING:
    from pianomuse.bundled import default_model as bundled_model
    from pianomuse.copilot import Copilot, Sampling
    from pianomuse.model import load_model


def __getattr__(name: str) -> Any:
    if name == "Copilot":
        from pianomuse.copilot import Copilot

        return Copilot
    if name == "Sampling":
        from pianomuse.generate.sampling import Sampling

        return Sampling
    if name == "bundled_model":
        from pianomuse.bundled import default_model

        return default_model
    if name == "load_model":
        from pianomuse.model import load_model

        return load_model
    raise AttributeError(f"module 'pianomuse' has no attribute {name!r}")
