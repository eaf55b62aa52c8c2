"""QUP arena, a Hugging Face Space: compare the SLMs of a QUP experiment, its leaderboard, the paradox.

Configured by environment variables (see ``toolkit/space/settings.py``); the logic lives in
``toolkit.space`` (installed with the toolkit locally; shipped next to this file by
``qup space deploy``). Locally: ``qup space run --run-dir runs/cpu-demo``.
"""
from toolkit.space.app import build_demo

demo = build_demo()

if __name__ == "__main__":
    demo.launch()
