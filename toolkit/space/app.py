"""The Gradio Blocks of the Space: Compare, Leaderboard, Configs, Details, The paradox.

Everything the page shows comes from :mod:`~toolkit.space.discovery` (the Hub), the backend's
streams and the published cards/results. Limits (:mod:`~toolkit.space.settings`) are checked on
the server; a visitor over a limit gets a message and the queue keeps serving the others.

Example:
    >>> demo = build_demo(SpaceSettings.from_env())                           # doctest: +SKIP
    >>> demo.launch()                                                         # doctest: +SKIP
"""
from __future__ import annotations

import gradio as gr

from ..hub.client import safe_endpoint
from .compare import compare, load_benchmark
from .discovery import Experiment, discover, is_repo_id, owner, pick
from .leaderboard import BASE, leaderboard
from .plots import paradox_plot
from .results import published
from .settings import MAX_MODELS, LimitError, SpaceSettings, check_models, check_question, clamp_new_tokens
from .tabs import configs_tab, details_tab, leaderboard_tab, paradox_tab

TITLE = "QUP arena: small math models trained on different data"
INTRO = ("Each model is the same small language model (SLM), fine-tuned with LoRA on a different *variant* of "
         "math reasoning traces: its own verified samples (`rft`), an Oracle's rewrites (`oracle_refine`), "
         "Style-Aligned Refinement (`style_aligned`), … The **Quality-Utility Paradox**: the data a reward model "
         "scores highest does not train the best SLM.")


def _label(key: str, exp: Experiment) -> str:
    return f"base: {exp.base_model}" if key == BASE else f"{key} (LoRA)"


def _code(text) -> str:
    """Card-derived text as inline code: no Markdown, HTML or remote image reaches the page."""
    return "`" + " ".join(str(text).split()).replace("`", "'")[:200] + "`"


def _private(api, repo_id: str) -> bool:
    """Whether the Hub dataset is private (or its visibility cannot be read): never shown then."""
    try:
        return bool(api.dataset_info(repo_id).private)
    except Exception:  # noqa: BLE001 - unknown visibility counts as private
        return True


def _benchmark(exp: Experiment, settings: SpaceSettings, api, author: str) -> tuple[str, str, str]:
    """(source, split, why not) of the benchmark picker: QUP_SPACE_PROBLEMS, else the adapters'
    eval set when it is a preset or a dataset of the owner's namespace; never a private dataset
    (the Space reads with its own token, visitors would see what they may not)."""
    from ..sources import PRESETS
    if settings.problems:
        source, _, split = settings.problems.partition(":")
        split = split or "test"
    else:
        e = next((e for a in exp.adapters for e in a.evals if e.get("dataset")), {})
        source, split = str(e.get("dataset") or ""), str(e.get("split") or "test")
        if source and source not in PRESETS and not (is_repo_id(source) and source.split("/")[0] == author):
            return "", split, (f"The cards name the benchmark {source[:100]!r}, outside this Space's "
                               "namespace: not opened.")
    if is_repo_id(source) and _private(api, source):
        return "", split, f"The benchmark {source!r} is private (or not visible): its problems are not shown."
    return source, split, ""


def _empty(settings: SpaceSettings, why: str = "") -> gr.Blocks:
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n\n" + (why or (
            f"No experiment found on {_code(safe_endpoint(settings.endpoint))}"
            + (f" named {_code(settings.experiment)}" if settings.experiment else "")
            + ": publish one with `qup run` (adapters tagged `qup`), then restart the Space.")))
    return demo


NO_OWNER = ("This Space does not know whose experiments to show: set `QUP_SPACE_AUTHOR` (the namespace "
            "it trusts), or run it as a Hugging Face Space (`SPACE_ID`) or with an `HF_TOKEN`.")


def build_demo(settings: SpaceSettings | None = None, api=None, backend=None) -> gr.Blocks:
    """The app for the experiment ``settings`` name (or the largest one found on the Hub)."""
    from huggingface_hub import HfApi

    from .backends import make_backend
    settings = settings or SpaceSettings.from_env()
    api = api or HfApi(endpoint=settings.endpoint, token=settings.token)
    author = owner(settings, api)      # the one namespace whose cards are read
    exp = pick(discover(api, author), settings.experiment) if author else None
    if exp is None:
        return _empty(settings, "" if author else NO_OWNER).queue(
            default_concurrency_limit=settings.concurrency, max_size=settings.queue)
    backend = backend or make_backend(api, exp, settings)
    keys = [k for k in backend.keys if k == BASE or k in exp.variants]
    got = published(api, exp.results_repo)
    rows, note = leaderboard(exp, got.results, got.error)
    fig, plot_note = paradox_plot(rows)
    source, split, refused = _benchmark(exp, settings, api, author)
    problems, problems_note = load_benchmark(source, split)
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\n\n{INTRO}\n\nExperiment: training data {_code(exp.dataset_repo)}, base model "
                    f"{_code(exp.base_model)}, {len(exp.adapters)} adapter(s). Backend: {backend.kind}.")
        with gr.Tab("Compare"):
            compare_tab(backend, exp, keys, problems, refused or problems_note, settings)
        with gr.Tab("Leaderboard"):
            leaderboard_tab(rows, note)
        with gr.Tab("Configs"):
            configs_tab(got.results)
        with gr.Tab("Details"):
            details_tab(got.results, got.details)
        with gr.Tab("The paradox"):
            paradox_tab(fig, plot_note, got.report)
    return demo.queue(default_concurrency_limit=settings.concurrency, max_size=settings.queue)


def compare_tab(backend, exp: Experiment, keys: list[str], problems, problems_note: str,
                settings: SpaceSettings) -> None:
    """Two to :data:`MAX_MODELS` models answer one question side by side, streamed; a benchmark
    problem picked from the list is graded against its gold answer."""
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
    choice = gr.CheckboxGroup([(_label(k, exp), k) for k in keys], value=keys[:2],
                              label=f"Models to compare (2–{MAX_MODELS})", elem_id="models")
    picker = gr.Dropdown([(f"{p['id']}: {p['question'][:90]}", i) for i, p in enumerate(problems)],
                         value=None, label="Benchmark problem (optional: answers get graded)",
                         info=problems_note, elem_id="problem")
    question = gr.Textbox(lines=3, label=f"Question (at most {settings.max_chars} characters)",
                          placeholder="A baker had 12 cakes and sold 5. How many are left?", elem_id="question")
    max_new = gr.Slider(16, settings.max_new_tokens, value=min(256, settings.max_new_tokens), step=1,
                        label="max new tokens", elem_id="max-new-tokens")
    go = gr.Button("Compare", variant="primary", elem_id="compare")
    with gr.Row():
        outs = [gr.Markdown(visible=False, elem_id=f"answer-{i}", elem_classes=["answer"])
                for i in range(MAX_MODELS)]
    picker.change(pick_problem, picker, question, queue=False)
    go.click(run, [choice, picker, question, max_new], outs, concurrency_limit="default")
