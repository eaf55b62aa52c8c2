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
#     "psutil",
# ]
# ///
"""Run a qup recipe or one stage, synced with a run-state repo on the Hub: the HF Jobs entry point.

The dependencies above are the toolkit's (``setup.cfg`` ``install_requires``; a test keeps them
equal). The script ships inside the package (``toolkit/jobs/qup_job.py``, so a wheel install can
submit jobs); the toolkit it runs is the ``toolkit/`` package around it: in a job, ``qup jobs
submit`` uploads the package to ``code/`` of the run-state repo and the job downloads it; in a
checkout or an install, it is that package.

    uv run toolkit/jobs/qup_job.py --state-repo me/qup-run-smoke recipe smoke   # like a job, locally
    python toolkit/jobs/qup_job.py recipe smoke --set hub.publish=false         # no Hub sync at all
    python toolkit/jobs/qup_job.py --state-repo me/st stage sample --model tiny-random --source svamp --limit 8 --out samples
"""
import sys
from pathlib import Path


def code_root() -> Path:
    """The dir holding the ``toolkit`` package this script is part of."""
    here = Path(__file__).resolve()
    return next(p for p in here.parents if (p / "toolkit" / "__init__.py").is_file())


if __name__ == "__main__":
    CODE = code_root()
    here = str(Path(__file__).resolve().parent)   # toolkit/jobs/ must not shadow top-level modules
    sys.path[:] = [str(CODE), *(p for p in sys.path if str(Path(p or ".").resolve()) != here)]
    from toolkit.jobs.sync import main
    sys.exit(main(code_root=CODE))
