"""Steering: what the user asks of the new music (`Steering`, the one table of controls,
light to import: the command line reads it to make its options) and its compiler
(`pianomuse.steering.compile`), which turns a request and a `Scene` into the grammar every
candidate is sampled through."""

from pianomuse.steering.request import NO_STEERING, Control, Steering

__all__ = ["NO_STEERING", "Control", "Steering"]
