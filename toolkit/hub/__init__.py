"""A Hub-compatible server (``qup hub serve``) and Hub publishing helpers.

Example::

    from toolkit.hub import HubServer
    with HubServer("/tmp/hub", tokens={"alice": ("hf_x", "write")}) as hub:
        print(hub.url)   # point HF_ENDPOINT / HfApi(endpoint=...) here
"""
from .server import HubServer, serve

__all__ = ["HubServer", "serve"]
