"""Generation backends: in-process transformers + PEFT, and TGI (`qup serve`) selected by adapter_id."""
from __future__ import annotations

from toolkit.answers import extract_answer, grade
from toolkit.space.backends import LocalBackend, TGIBackend
from toolkit.space.compare import compare, messages
from toolkit.space.discovery import discover

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"


def test_local_and_tgi_backends_give_the_same_greedy_answers(experiment, space_api):
    from toolkit.serve.server import TGIServer
    [exp] = discover(space_api)
    local = LocalBackend(space_api, exp)
    assert local.keys == ["base", "oracle_refine", "rft"]
    final = list(compare(local, ["base", "rft"], QUESTION, "7", max_new_tokens=24))[-1]
    for panel in final:
        assert panel.done and panel.text and not panel.error
        assert (panel.answer, panel.verdict) == grade(panel.text, "7")
        assert "<|im_end|>" not in panel.text                      # end of turn is not shown
    base, rft = final
    assert base.text != rft.text                                    # the adapter is applied
    ungraded = list(compare(local, ["base", "rft"], QUESTION, None, max_new_tokens=8))[-1]
    assert [p.verdict for p in ungraded] == ["", ""]
    assert [p.answer for p in ungraded] == [extract_answer(p.text) for p in ungraded]

    chat = messages(QUESTION)
    adapters = {exp.adapter(v).repo_id: experiment.adapter_dirs[v] for v in exp.variants}
    with TGIServer(experiment.base, adapters=adapters) as server:
        tgi = TGIBackend(space_api, exp, server.url)
        assert tgi.render(chat) == local.render(chat)
        for key in ("base", "rft", "oracle_refine"):
            assert "".join(tgi.stream(key, chat, 24)) == "".join(local.stream(key, chat, 24)), key
