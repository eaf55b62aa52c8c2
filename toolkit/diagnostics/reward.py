"""Perceived quality (``reward``) of a trace, two kinds:

* :class:`RewardModel`: any transformers sequence-classification reward model with one label
  (a preset such as ``tiny-random-rm``, a local dir or a Hub id such as Skywork-Reward);
* :class:`Judge`: a generative judge (any Generator: local, TGI) asked whether the solution is
  correct and well reasoned; the reward is P("Yes") normalised over {Yes, No}, read from the
  judge's next-token log-probabilities.

Example:
    >>> judge = Judge(LocalEngine("qwen2.5-coder-0.5b-instruct"))               # doctest: +SKIP
    >>> judge(["What is 2+3?"], ["2+3=5. The answer is: 5"])                    # doctest: +SKIP
    [(0.93, 0.99)]                                   # (P(Yes), P(Yes)+P(No) mass)
"""
from __future__ import annotations

import math
from typing import Sequence

from ..errors import QupError
from ..prompts import load_prompt

VERDICTS = ("Yes", "No")


class RewardError(QupError, ValueError):
    """A reward model or judge cannot give a reward as configured."""


class RewardModel:
    """A one-label ``AutoModelForSequenceClassification``: reward = its logit for the conversation
    (user question, assistant completion) rendered with its chat template."""
    kind = "classifier"

    def __init__(self, model: str, batch_size: int = 8, dtype="auto"):
        from transformers import AutoModelForSequenceClassification

        from ..models import load_tokenizer, model_info, resolve_dtype
        info = model_info(model)
        self.model_id = info.label
        try:
            self.model = AutoModelForSequenceClassification.from_pretrained(
                info.path, dtype=resolve_dtype(dtype)).eval()
        except (OSError, ValueError) as e:
            raise RewardError(f"reward model {model!r} cannot be loaded as a sequence classifier: "
                              f"{str(e).splitlines()[0]}") from None
        labels = self.model.config.num_labels
        if labels != 1:
            raise RewardError(f"reward model {model!r}: its head has {labels} labels; a reward model "
                              "has one (a scalar score per sequence)")
        self.tokenizer = load_tokenizer(model)
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self.batch_size = batch_size

    def _text(self, question: str, completion: str) -> str:
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": question}, {"role": "assistant", "content": completion}],
                tokenize=False)
        return f"{question}\n\n{completion}"

    def __call__(self, questions: Sequence[str], completions: Sequence[str]) -> list[float]:
        import torch
        texts = [self._text(q, c) for q, c in zip(questions, completions)]
        out: list[float] = []
        with torch.inference_mode():
            for k in range(0, len(texts), self.batch_size):
                batch = self.tokenizer(texts[k:k + self.batch_size], return_tensors="pt", padding=True,
                                       add_special_tokens=False).to(self.model.device)
                out.extend(self.model(**batch).logits[:, 0].float().tolist())
        return out


class Judge:
    """A Generator as judge: ``(P(Yes), P(Yes)+P(No))`` per row, from one next-token distribution
    after the judge's chat prompt (template ``judge_yes_no``)."""
    kind = "judge"

    def __init__(self, generator, template: str = "judge_yes_no"):
        self.generator = generator
        self.template = load_prompt(template)
        self.model_id = f"{generator.model_id}@{generator.model_revision}".rstrip("@")
        encode = generator.encode
        probe = generator.render_chat([{"role": "user", "content": "x"}])
        self.token_ids = []
        for word in VERDICTS:
            ids = encode(probe + word)[len(encode(probe)):]
            if len(ids) != 1:
                raise RewardError(f"judge {self.model_id}: {word!r} is {len(ids)} tokens after its "
                                  "chat prompt; the judge needs one-token verdicts")
            self.token_ids.append(ids[0])

    def prompts(self, questions: Sequence[str], completions: Sequence[str]) -> list[str]:
        return [self.generator.render_chat(self.template.messages(q, solution=c))
                for q, c in zip(questions, completions)]

    def __call__(self, questions: Sequence[str], completions: Sequence[str]) -> list[tuple[float, float]]:
        prompts = self.prompts(questions, completions)
        if hasattr(self.generator, "next_token_logprobs"):   # the local engine: one forward pass
            pairs = self.generator.next_token_logprobs(prompts, self.token_ids)
        else:                                                 # an endpoint: prefill logprobs
            n = len(prompts)
            lps = self.generator.score(prompts * 2, [VERDICTS[0]] * n + [VERDICTS[1]] * n)
            pairs = [(lps[i][0], lps[n + i][0]) for i in range(n)]
        out = []
        for yes, no in pairs:
            py, pn = math.exp(yes), math.exp(no)
            mass = py + pn
            out.append((py / mass if mass > 0 else 0.5, mass))
        return out


def score_rows(rows: list[dict], models) -> dict[str, list]:
    """The ``reward``/``reward_kind``/``reward_model`` columns of ``rows`` under ``models.reward``
    (a :class:`Judge` or :class:`RewardModel`); a judge's row with less than
    ``models.min_verdict_mass`` on Yes+No gets no reward (counted as ``judge_no_verdict``)."""
    scorer, floor = models.reward, models.min_verdict_mass
    q, c = [r["question"] for r in rows], [r["completion"] for r in rows]
    if isinstance(scorer, Judge):
        verdicts = scorer(q, c)
        if rows and not any(m >= floor for _, m in verdicts) and len(rows) >= 4:
            raise RewardError(
                f"judge {scorer.model_id} never says Yes/No: row {rows[0]['trace_id']!r} field "
                f"reward: P(Yes)+P(No) = {verdicts[0][1]:.2g} < min_verdict_mass "
                f"{floor} (and on all {len(rows)} rows of this shard)")
        models.counts["judge_no_verdict"] += sum(m < floor for _, m in verdicts)
        reward = [p if m >= floor else None for p, m in verdicts]
    else:
        reward = list(scorer(q, c))
    return {"reward": reward, "reward_kind": [scorer.kind] * len(rows),
            "reward_model": [scorer.model_id] * len(rows)}
