"""The public Space (``spaces/app.py``): compare the SLMs of an experiment, its leaderboard and the paradox.

The app stays thin; its logic lives here, one module per concern, so that tests, ``qup space`` and
the deployed Space share it (``qup space deploy`` ships this package next to ``app.py``):

| module | what |
|---|---|
| ``settings`` | the Space's configuration from environment variables, and its abuse limits |
| ``discovery`` | experiments on a Hub: adapters tagged ``qup`` grouped by their ``datasets:`` repo |
| ``results`` | what a study published (results rows, per-sample details, report), read once at its newest tag |
| ``leaderboard`` | per-variant rows from the results dataset, else the adapters' cards |
| ``protocols`` | the Configs and Details tabs' tables: protocols and per-problem outputs side by side |
| ``plots`` | the paradox plot: training-data reward / NLL vs held-out accuracy |
| ``backends`` | generation: in-process transformers + PEFT (multi-adapter) or TGI with ``adapter_id`` |
| ``compare`` | prompts, streaming side by side, answer extraction and grading |
| ``app``, ``tabs`` | the Gradio Blocks and its tabs |
| ``launch`` | ``qup space run`` (a run dir's Hub + the app) and ``qup space deploy`` |
"""
