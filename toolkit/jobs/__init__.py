"""Run recipes and stages as Hugging Face Jobs (``qup jobs``), resumable from the Hub.

- :mod:`toolkit.jobs.spec`: the job spec (``qup jobs submit``: flavor, timeout, image, secrets by
  name, env), submission through ``huggingface_hub``'s jobs API, status/logs/cancel.
- :mod:`toolkit.jobs.sync`: what runs inside the job (``toolkit/jobs/qup_job.py``): pull the run-state
  repo into the run dir, run the recipe or stage, push every finished step back.

Job disks are ephemeral, so a job's state lives in a private dataset repo (the *run-state repo*,
default ``<namespace>/qup-run-<recipe>``): ``code/`` holds the toolkit and the job script the
job runs, ``run/`` the run dir. A re-submitted job downloads ``run/`` and the step cache
(:mod:`toolkit.steps`) skips every finished step and resumes an interrupted one.
"""
