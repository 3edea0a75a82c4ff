"""Piano Muse: an RWKV-7 piano copilot over REMI tokens."""

__version__ = "0.1.0"
