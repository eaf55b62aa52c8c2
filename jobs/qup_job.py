# /// script
# requires-python = ">=3.11"
# dependencies = [
#     "torch>=2.4",
#     "transformers>=5.16.1",
#     "trl>=1.0",
#     "peft>=0.15",
#     "datasets>=4.0",
#     "huggingface_hub>=1.0",
#     "math-verify>=0.8",
#     "gguf>=0.10",
#     "dulwich>=0.22",
#     "pyyaml",
#     "tqdm",
#     "rich",
#     "jinja2",
#     "rapidfuzz>=3.0",
#     "rouge-score>=0.1.2",
#     "matplotlib",
#     "aiohttp",
#     "starlette",
#     "uvicorn",
# ]
# ///
"""Run a qup recipe or one stage, synced with a run-state repo on the Hub: the HF Jobs entry point.

The dependencies above are the toolkit's (``setup.cfg`` ``install_requires``; a test keeps them
equal). The toolkit itself is the ``toolkit/`` package next to this script's parent dir: in a
job, ``qup jobs submit`` uploads both to ``code/`` of the run-state repo and the job downloads
them; in a checkout, it is the repo itself.

    uv run jobs/qup_job.py --state-repo me/qup-run-smoke recipe smoke          # like a job, locally
    python jobs/qup_job.py recipe smoke --set hub.publish=false                # no Hub sync at all
    python jobs/qup_job.py --state-repo me/st stage sample --model tiny-random --source svamp --limit 8 --out samples
"""
import sys
from pathlib import Path

CODE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(CODE))

from toolkit.jobs.sync import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(code_root=CODE))
