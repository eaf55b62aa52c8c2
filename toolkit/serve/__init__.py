"""Serving: a TGI-compatible HTTP server over the local engine (multi-LoRA, continuous batching)."""
from .server import TGIServer, serve

__all__ = ["TGIServer", "serve"]
