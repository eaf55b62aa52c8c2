"""Listing repos by tag and with their card data (what the Space's discovery uses), and Space repos."""
from __future__ import annotations

from huggingface_hub import HfApi

from tests.conftest import BOB


def _card(api, repo_id, yaml_text, repo_type="model"):
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    api.upload_file(path_or_fileobj=f"---\n{yaml_text}\n---\n# card\n".encode(), path_in_repo="README.md",
                    repo_id=repo_id, repo_type=repo_type)


def test_list_models_filter_by_card_tags_and_datasets(api, hub):
    _card(api, "alice/a-lora", "tags: [peft, qup]\ndatasets: [alice/exp1]\nbase_model: org/base")
    _card(api, "alice/b-lora", "tags: [qup]\ndatasets: [alice/exp2]")
    _card(api, "alice/other", "tags: [peft]")
    api.create_repo("alice/empty")                                   # no commit, no card
    assert sorted(m.id for m in api.list_models(filter="qup")) == ["alice/a-lora", "alice/b-lora"]
    assert [m.id for m in api.list_models(filter=["qup", "dataset:alice/exp1"])] == ["alice/a-lora"]
    assert [m.id for m in api.list_models(trained_dataset="alice/exp2")] == ["alice/b-lora"]
    assert [m.id for m in api.list_models(filter="base_model:org/base")] == ["alice/a-lora"]
    assert list(api.list_models(filter="nope")) == []
    [a] = [m for m in api.list_models(filter="dataset:alice/exp1", cardData=True)]
    assert a.card_data["datasets"] == ["alice/exp1"] and "qup" in a.tags
    [plain] = list(api.list_models(search="a-lora"))
    assert plain.card_data is None                                   # only when asked for


def test_private_repos_stay_hidden_from_filtered_listing(api, hub):
    _card(api, "alice/hidden", "tags: [qup]")
    api.update_repo_settings("alice/hidden", private=True)
    bob = HfApi(endpoint=hub.url, token=BOB)
    assert [m.id for m in bob.list_models(filter="qup")] == []
    assert [m.id for m in api.list_models(filter="qup")] == ["alice/hidden"]


def test_space_repo_upload_info_and_listing(api, tmp_path):
    folder = tmp_path / "space"
    folder.mkdir()
    (folder / "README.md").write_text("---\nsdk: gradio\napp_file: app.py\ntags: [qup]\n---\n# Space\n")
    (folder / "app.py").write_text("print('hi')\n")
    api.create_repo("alice/arena", repo_type="space", space_sdk="gradio")
    api.upload_folder(folder_path=folder, repo_id="alice/arena", repo_type="space")
    info = api.space_info("alice/arena")
    assert info.sdk == "gradio" and info.card_data["app_file"] == "app.py"
    assert {"README.md", "app.py"} <= {s.rfilename for s in info.siblings}
    assert [s.id for s in api.list_spaces(filter="qup")] == ["alice/arena"]
    path = api.hf_hub_download("alice/arena", "app.py", repo_type="space", cache_dir=tmp_path / "c")
    assert open(path).read() == "print('hi')\n"


# YAML that JSON cannot carry: each once made every cardData listing answer 500
ODD_CARDS = {"alice/dated": ("date: 2024-01-02\nwhen: 2024-01-02 10:00:00", {"date": "2024-01-02"}),
             "alice/nan": ("score: .nan\nbig: .inf", {"score": None, "big": None}),
             "alice/binary": ("blob: !!binary aGk=", {"blob": "aGk="}),
             "alice/set": ("labels: !!set {b: null, a: null}\n2: two\nnull: none", {"labels": ["a", "b"], "2": "two"})}
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcdefg", "bcdefgh"))


def test_odd_card_yaml_is_listed_as_json_and_bombs_are_refused(api, hub):
    import httpx

    from huggingface_hub.errors import HfHubHTTPError
    for repo, (text, want) in ODD_CARDS.items():
        _card(api, repo, "tags: [qup]\n" + text)
    r = httpx.get(f"{hub.url}/api/models", params={"cardData": "1", "filter": "qup"})
    assert r.status_code == 200, r.text
    cards = {m["id"]: m["cardData"] for m in r.json()}
    for repo, (_, want) in ODD_CARDS.items():
        assert all(cards[repo][k] == v for k, v in want.items()), (repo, cards[repo])
    assert cards["alice/dated"]["when"].startswith("2024-01-02") and cards["alice/set"]["null"] == "none"
    assert sorted(m.id for m in api.list_models(filter="qup", cardData=True)) == sorted(ODD_CARDS)
    assert api.model_info("alice/nan").card_data["score"] is None
    # an alias bomb (a few hundred bytes, megabytes expanded) or a self-reference: refused on commit
    for name, text in (("bomb", BOMB), ("loop", "a: &a [*a]"), ("aliases", "a: &a x\nb: [" + "*a, " * 40 + "]")):
        api.create_repo(f"alice/{name}")
        try:
            _card(api, f"alice/{name}", "tags: [qup]\n" + text)
            raise AssertionError(f"{name} was accepted")
        except HfHubHTTPError as e:
            assert e.response.status_code == 400 and "Invalid metadata in README.md" in e.response.json()["error"]
        assert api.list_repo_files(f"alice/{name}") == [".gitattributes"]
    # one already stored (committed before the check) is listed without its card, never a 500
    hub.app.storage.commit("model", "alice/bomb", "main", [("file", "README.md", f"---\n{BOMB}---\n".encode())],
                           "old bomb")
    r = httpx.get(f"{hub.url}/api/models", params={"cardData": "1"})
    assert r.status_code == 200 and len(r.content) < 100_000
    assert "cardData" not in next(m for m in r.json() if m["id"] == "alice/bomb")
