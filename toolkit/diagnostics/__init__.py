"""Diagnostics of a trace dataset before any training, per row (see ``qup score``):

* perceived quality (``reward``): a reward model or a generative judge (:mod:`.reward`);
* adaptation cost (``nll``): the learner's mean token NLL of the completion (:mod:`.adaptation_cost`);
* drift from the SLM's own traces of the same problem (:mod:`.drift`).

Each column is declared once in :mod:`.columns` (name, type, label, aggregation, direction and
its scoring function); :mod:`.tables` turns them into per-variant tables with 95% intervals and plots.
"""
