"""Gradio tabs over published results: the filterable leaderboard, Configs (protocols side by side),
Details (two models' per-problem outputs) and the paradox (plot and the study's report). Called
inside ``gr.Blocks`` by :mod:`.app`.

Example:
    >>> with gr.Blocks() as demo:                                             # doctest: +SKIP
    ...     configs_tab(results_rows)
"""
from __future__ import annotations

import gradio as gr
import pandas as pd

from . import protocols
from .leaderboard import COLUMNS, Row, filter_rows, table

NO_RESULTS = ("No results dataset published for this experiment: protocols and per-problem outputs come "
              "with `qup study` (its `<dataset>-results` repo).")


def leaderboard_tab(rows: list[Row], note: str) -> None:
    gr.Markdown(note, elem_id="leaderboard-note")
    with gr.Row():
        bench = gr.Dropdown([("all", ""), *[(b, b) for b in sorted({r.benchmark for r in rows} - {""})]],
                            value="", label="benchmark", elem_id="leaderboard-benchmark")
        text = gr.Textbox(label="filter: variant, metric or protocol", elem_id="leaderboard-filter")
    board = gr.Dataframe(value=pd.DataFrame(table(rows), columns=COLUMNS), interactive=False, wrap=True,
                         elem_id="leaderboard")

    def refilter(b, t):
        return pd.DataFrame(table(filter_rows(rows, b or "", t or "")), columns=COLUMNS)
    for c in (bench, text):
        c.change(refilter, [bench, text], board, queue=False)


def configs_tab(raw: list[dict]) -> None:
    if not raw:
        gr.Markdown(NO_RESULTS, elem_id="configs-note")
        return
    names = protocols.models(raw)
    benches = sorted({str(r.get("benchmark") or "") for r in raw})

    def show(chosen, bench):
        headers, rows, warning = protocols.configs(raw, list(chosen or []), bench or "")
        return pd.DataFrame(rows, columns=headers), warning or "Choose two or more models."
    first = show(names[:2], benches[0])
    gr.Markdown("Each column is one evaluated model: how its score was obtained (prompt template and its "
                "hash, shots, chat template, decoding, stop strings, answer extraction, engine, dtype, "
                "revisions). Scores of different protocols are different measurements.")
    with gr.Row():
        pick = gr.CheckboxGroup(names, value=names[:2], label="models", elem_id="config-models")
        bench = gr.Dropdown(benches, value=benches[0], label="benchmark", elem_id="config-benchmark")
    warning = gr.Markdown(first[1], elem_id="config-warning")
    grid = gr.Dataframe(value=first[0], interactive=False, wrap=True, elem_id="configs")
    for c in (pick, bench):
        c.change(show, [pick, bench], [grid, warning], queue=False)


def details_tab(raw: list[dict], detail_rows: list[dict]) -> None:
    if not detail_rows:
        gr.Markdown(NO_RESULTS if not raw else "The results dataset has no `details` config (per-problem "
                    "outputs): re-publish it with this version of `qup study`.", elem_id="details-note")
        return
    names = protocols.models(detail_rows)
    benches = sorted({str(r.get("benchmark") or "") for r in detail_rows})

    def show(a, b, bench):
        rows, note = protocols.details(detail_rows, a, b, bench)
        return pd.DataFrame(rows, columns=protocols.DETAIL_COLUMNS), note
    first = show(names[0], names[min(1, len(names) - 1)], benches[0])
    gr.Markdown("Two models on the same problems (sample 0 of each): extracted answers, ✓ correct / ✗ wrong, "
                "and the full outputs, from the published evaluation rows.")
    with gr.Row():
        a = gr.Dropdown(names, value=names[0], label="model A", elem_id="details-a")
        b = gr.Dropdown(names, value=names[min(1, len(names) - 1)], label="model B", elem_id="details-b")
        bench = gr.Dropdown(benches, value=benches[0], label="benchmark", elem_id="details-benchmark")
    note = gr.Markdown(first[1], elem_id="details-note")
    grid = gr.Dataframe(value=first[0], interactive=False, wrap=True, elem_id="details")
    for c in (a, b, bench):
        c.change(show, [a, b, bench], [grid, note], queue=False)


def paradox_tab(fig, plot_note: str, report: str) -> None:
    """The paradox plot (reward and NLL against accuracy) and, when the study published one, its report."""
    if fig is not None:
        gr.Plot(fig, elem_id="paradox")
    gr.Markdown(plot_note or "Each point is a variant: its training data's mean reward (left) or NLL "
                "(right) against the held-out accuracy of the SLM trained on it; bars are 95% intervals.")
    if report:
        gr.Markdown(report, elem_id="study-report")
