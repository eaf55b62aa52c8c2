"""The Gradio Blocks of the Space: Compare, Leaderboard, The paradox.

Everything the page shows comes from :mod:`~toolkit.space.discovery` (the Hub), the backend's
streams and the published cards/results. Limits (:mod:`~toolkit.space.settings`) are checked on
the server; a visitor over a limit gets a message and the queue keeps serving the others.

Example:
    >>> demo = build_demo(SpaceSettings.from_env())                           # doctest: +SKIP
    >>> demo.launch()                                                         # doctest: +SKIP
"""
from __future__ import annotations

import logging

import gradio as gr

from ..hub.client import safe_endpoint
from .compare import compare, load_benchmark
from .discovery import Experiment, discover, pick
from .leaderboard import BASE, COLUMNS, leaderboard, table
from .plots import paradox_plot
from .settings import MAX_MODELS, LimitError, SpaceSettings, check_models, check_question, clamp_new_tokens

log = logging.getLogger(__name__)
TITLE = "QUP arena: small math models trained on different data"
INTRO = ("Each model is the same small language model (SLM), fine-tuned with LoRA on a different *variant* of "
         "math reasoning traces: its own verified samples (`rft`), an Oracle's rewrites (`oracle_refine`), "
         "Style-Aligned Refinement (`style_aligned`), … The **Quality-Utility Paradox**: the data a reward model "
         "scores highest does not train the best SLM.")


def _label(key: str, exp: Experiment) -> str:
    return f"base: {exp.base_model}" if key == BASE else f"{key} (LoRA)"


def _benchmark(exp: Experiment, settings: SpaceSettings) -> tuple[str, str]:
    """(source, split) of the benchmark picker: QUP_SPACE_PROBLEMS, else the adapters' eval set."""
    if settings.problems:
        source, _, split = settings.problems.partition(":")
        return source, split or "test"
    e = next((e for a in exp.adapters for e in a.evals if e.get("dataset")), {})
    return str(e.get("dataset") or ""), str(e.get("split") or "test")


def _empty(settings: SpaceSettings) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n\nNo experiment found on `{safe_endpoint(settings.endpoint)}`"
                    + (f" named `{settings.experiment}`" if settings.experiment else "")
                    + ": publish one with `qup run` (adapters tagged `qup`), then restart the Space.")
    return demo


def build_demo(settings: SpaceSettings | None = None, api=None, backend=None) -> gr.Blocks:
    """The app for the experiment ``settings`` name (or the largest one found on the Hub)."""
    from huggingface_hub import HfApi

    from .backends import make_backend
    settings = settings or SpaceSettings.from_env()
    api = api or HfApi(endpoint=settings.endpoint, token=settings.token)
    exp = pick(discover(api, settings.author), settings.experiment)
    if exp is None:
        return _empty(settings).queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue)
    backend = backend or make_backend(api, exp, settings)
    keys = [k for k in backend.keys if k == BASE or k in exp.variants]
    rows, note = leaderboard(api, exp)
    fig, plot_note = paradox_plot(rows)
    source, split = _benchmark(exp, settings)
    problems, problems_note = load_benchmark(source, split)

    def run(models, problem, question, max_new_tokens):
        try:
            models = check_models(models)
            question = check_question(question, settings)
            max_new_tokens = clamp_new_tokens(max_new_tokens, settings)
        except LimitError as e:
            raise gr.Error(str(e)) from None
        if any(m not in keys for m in models):
            raise gr.Error("Unknown model; reload the page.")
        gold = None
        if isinstance(problem, int) and 0 <= problem < len(problems) \
                and problems[problem]["question"].strip() == question:
            gold = problems[problem]["gold_answer"]
        blank = [gr.update(value="", visible=False)] * (MAX_MODELS - len(models))
        for panels in compare(backend, models, question, gold, max_new_tokens, exp.prompt):
            yield [gr.update(value=p.markdown(), visible=True) for p in panels] + blank

    def pick_problem(index):
        if isinstance(index, int) and 0 <= index < len(problems):
            return problems[index]["question"]
        return gr.update()

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n\n{INTRO}\n\nExperiment: training data `{exp.dataset_repo}`, base model "
                    f"`{exp.base_model}`, {len(exp.adapters)} adapter(s). Backend: {backend.kind}.")
        with gr.Tab("Compare"):
            choice = gr.CheckboxGroup([(_label(k, exp), k) for k in keys], value=keys[:2],
                                      label=f"Models to compare (2–{MAX_MODELS})", elem_id="models")
            picker = gr.Dropdown([(f"{p['id']}: {p['question'][:90]}", i) for i, p in enumerate(problems)],
                                 value=None, label="Benchmark problem (optional: answers get graded)",
                                 info=problems_note, elem_id="problem")
            question = gr.Textbox(lines=3, label=f"Question (at most {settings.max_chars} characters)",
                                  placeholder="A baker had 12 cakes and sold 5. How many are left?",
                                  elem_id="question")
            max_new = gr.Slider(16, settings.max_new_tokens, value=min(256, settings.max_new_tokens), step=1,
                                label="max new tokens", elem_id="max-new-tokens")
            go = gr.Button("Compare", variant="primary", elem_id="compare")
            with gr.Row():
                outs = [gr.Markdown(visible=False, elem_id=f"answer-{i}", elem_classes=["answer"])
                        for i in range(MAX_MODELS)]
            picker.change(pick_problem, picker, question, queue=False)
            go.click(run, [choice, picker, question, max_new], outs, concurrency_limit="default")
        with gr.Tab("Leaderboard"):
            gr.Markdown(note)
            gr.Dataframe(value=table(rows), headers=COLUMNS, interactive=False, wrap=True, elem_id="leaderboard")
        with gr.Tab("The paradox"):
            if fig is not None:
                gr.Plot(fig, elem_id="paradox")
            gr.Markdown(plot_note or "Each point is a variant: its training data's mean reward (left) or NLL "
                        "(right) against the held-out accuracy of the SLM trained on it; bars are 95% intervals.")
    return demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue)
