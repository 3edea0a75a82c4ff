"""The models that come with Piano Muse, found inside an installed wheel (pianomuse/models/)
or in a source checkout's models/ folder."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pianomuse.planner import Selector

DEFAULT_MODEL_NAME = "pianomuse-small-pop909.safetensors"
# The model for chords and parts (tokenizer version 2): steering by chords, arrange, playing
# along, and the web page. It continues a plain piece less well than the default (its model
# card), so each job gets the model that does it best.
PARTS_MODEL_NAME = "pianomuse-v3-pop909.safetensors"
# The chord planner's learnt choice of experts (`pianomuse.planner.Selector`).
PLANNER_NAME = "chord_planner.json"


def default_model(parts: bool = False) -> Path | None:
    """The bundled default model, or with `parts` the one for chords and parts; None in an
    install without them."""
    return bundled_file(PARTS_MODEL_NAME if parts else DEFAULT_MODEL_NAME)


def bundled_planner() -> Selector | None:
    """The bundled chord planner; None in an install without it."""
    from pianomuse.planner import Selector

    path = bundled_file(PLANNER_NAME)
    return None if path is None else Selector.load(path)


def bundled_file(name: str) -> Path | None:
    """A file of the bundled models' folder; None where it is absent."""
    for candidate in (
        Path(str(resources.files("pianomuse"))) / "models" / name,
        Path(__file__).resolve().parents[2] / "models" / name,
    ):
        if candidate.is_file():
            return candidate
    return None
