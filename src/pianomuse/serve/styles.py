"""Styles uploaded to the web copilot: each becomes a copilot of the served model in that
style (`Copilot.with_style`), found by an id the page sends with its requests."""

from __future__ import annotations

import base64
import binascii
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

from pianomuse.copilot import Copilot
from pianomuse.errors import FieldError
from pianomuse.modelfiles import TORCH_MISSING, have_torch

if TYPE_CHECKING:
    from pianomuse.style import Style

MAX_STYLE_BYTES = 2 * 1024 * 1024  # a style of the bundled model is 0.4-0.7 MB
KEPT_STYLES = 4  # a head style holds a copy of the model's weights: the oldest goes first


class StyleShelf:
    """The last `KEPT_STYLES` styles uploaded, by id (the first 16 hex digits of their
    content's sha256), each as a copilot ready to write in it."""

    def __init__(self, base: Copilot) -> None:
        self.base = base
        self._kept: OrderedDict[str, Copilot] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, data_b64: str, name: str) -> tuple[str, Style]:
        """Read an uploaded style (base64 of its file) and keep it; its id and the style.
        Every problem is one line naming the field."""
        try:
            data = base64.b64decode(data_b64, validate=True)
        except (binascii.Error, ValueError):
            raise FieldError("style", "is not valid base64") from None
        if len(data) > MAX_STYLE_BYTES:
            raise FieldError("style", f"files are at most {MAX_STYLE_BYTES // 2**20} MB here")
        if not have_torch():  # a style changes the weights: PyTorch runs them
            raise FieldError("style", f"cannot be used on this server: {TORCH_MISSING}")
        from pianomuse.style import Style

        # safetensors reads its metadata from a file: the upload goes through one.
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / (Path(name).name or "style.safetensors")
            path.write_bytes(data)
            try:
                style = Style.load(path)
                copilot = self.base.with_style(style)
            except Exception as e:  # noqa: BLE001 - UserError lines, named for the field
                raise FieldError("style", str(e).removeprefix(f"{path}: ")) from None
        style_id = style.digest[:16]
        with self._lock:
            self._kept[style_id] = copilot
            self._kept.move_to_end(style_id)
            while len(self._kept) > KEPT_STYLES:
                self._kept.popitem(last=False)
        return style_id, style

    def copilot(self, style_id: str | None) -> Copilot:
        """The copilot of a kept style (None: the served one as it is)."""
        if style_id is None:
            return self.base
        with self._lock:
            found = self._kept.get(style_id)
        if found is None:
            raise FieldError("style", "is not on this server (it keeps the last "
                             f"{KEPT_STYLES} uploaded): upload it again")  # fmt: skip
        return found
