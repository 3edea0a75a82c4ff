"""`pianomuse serve`: the web copilot (a page and a JSON API over one shared model)."""

from pianomuse.serve.app import ServeLimits, create_app, web_app

__all__ = ["ServeLimits", "create_app", "web_app"]
