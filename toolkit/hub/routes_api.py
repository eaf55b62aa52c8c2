"""``/api/...`` routes of the Hub server: whoami, repos, info, preupload, commit, tree, refs, commits.

Shapes follow ``huggingface_hub`` (hf_api.py, _commit_api.py); e.g. ``GET /api/datasets/alice/x/refs``
returns ``{"branches": [{"name", "ref", "targetCommit"}], "tags": [...], "converts": [], ...}``.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
from urllib.parse import parse_qs

from starlette.responses import JSONResponse, Response

from .cards import MAX_README_BYTES, CardError, card_json, check_readme
from .errors import HubError
from .names import REPO_TYPES, check_oid, check_path, check_text, is_name

PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
logger = logging.getLogger(__name__)


def repo_url(ctx, repo_type: str, repo_id: str) -> str:
    return f"{ctx.base_url}/{PREFIX[repo_type]}{repo_id}"


def json_body(ctx) -> dict:
    try:
        data = json.loads(ctx.body or b"{}")
    except ValueError as e:
        raise HubError(400, f"Request body is not valid JSON: {e}") from None
    except RecursionError:
        raise HubError(400, "Request body is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise HubError(400, "Request body must be a JSON object")
    return data


def handle(ctx) -> Response:
    seg, m = ctx.segments, ctx.method
    if seg == ["api", "whoami-v2"]:
        return whoami(ctx)
    if seg == ["api", "repos", "create"] and m == "POST":
        return create_repo(ctx)
    if seg == ["api", "repos", "delete"] and m in ("DELETE", "POST"):
        return delete_repo(ctx)
    if seg == ["api", "validate-yaml"]:
        return JSONResponse({"errors": [], "warnings": []})
    if len(seg) == 2 and m == "GET" and seg[1] in ("models", "datasets", "spaces"):
        return list_repos(ctx, seg[1][:-1])
    if len(seg) >= 4 and seg[1].endswith("s") and seg[1][:-1] in REPO_TYPES:
        repo_type, repo_id, rest = seg[1][:-1], f"{seg[2]}/{seg[3]}", seg[4:]
        action, args = (rest[0], rest[1:]) if rest else ("", [])
        fn = ROUTES.get((m if m != "HEAD" else "GET", action))
        if fn is not None:
            return fn(ctx, repo_type, repo_id, args)
    raise HubError(404, f"Not found: {ctx.method} /{'/'.join(seg)}")


def whoami(ctx) -> Response:
    if ctx.user is None:
        raise HubError(401, "Invalid username or password.")
    orgs = [{"type": "org", "name": o, "fullname": o} for o in ctx.identity.orgs]
    return JSONResponse({"type": "user", "id": ctx.user, "name": ctx.user, "fullname": ctx.user,
                         "email": None, "emailVerified": False, "isPro": False, "orgs": orgs,
                         "auth": {"type": "access_token",
                                  "accessToken": {"displayName": ctx.user, "role": ctx.identity.role}}})


def list_repos(ctx, repo_type: str) -> Response:
    """GET /api/{type}s?author=&search=&filter=&cardData=: visible repos (one page).

    Each repo's ``tags`` are its card's ``tags`` plus ``dataset:<id>`` / ``base_model:<id>`` for
    the card's ``datasets`` / ``base_model`` (as the Hub derives them); every ``filter`` value must
    be among them. ``cardData`` (or ``full``, or ``expand=cardData``) adds the card's YAML.
    """
    author, search = ctx.q("author"), ctx.q("search").lower()
    filters = [f for f in ctx.query.get("filter", []) if f]
    want_card = ctx.flag("cardData") or ctx.flag("full") or "cardData" in ctx.query.get("expand", []) \
        or "cardData" in ctx.query.get("expand[]", [])
    out = []
    for meta in ctx.storage.list_repos(repo_type):
        if meta["private"] and not ctx.may_see(meta["id"].split("/")[0]):
            continue
        if (author and meta["id"].split("/")[0] != author) or (search and search not in meta["id"].lower()):
            continue
        card = _main_card(ctx, repo_type, meta["id"]) if filters or want_card else None
        tags = card_tags(card)
        if any(f not in tags for f in filters):
            continue
        item = {"_id": meta["id"], "id": meta["id"], "author": meta["id"].split("/")[0],
                "private": meta["private"], "createdAt": meta["createdAt"], "downloads": 0, "likes": 0,
                "tags": tags}
        if want_card and card is not None:
            item["cardData"] = card
        out.append(item)
    return JSONResponse(out)


def _main_card(ctx, repo_type: str, repo_id: str) -> dict | None:
    """``cardData`` of the repo's main branch (None for an empty repo or no card)."""
    try:
        commit, entries = ctx.storage.tree(repo_type, repo_id, "main", recursive=False)
    except HubError:   # no commit yet
        return None
    return card_data(ctx, repo_type, repo_id, commit, entries)


def card_tags(card: dict | None) -> list[str]:
    """The tags the Hub lists for a card: its ``tags``, ``dataset:<id>``, ``base_model:<id>``.

    >>> card_tags({"tags": ["qup"], "datasets": ["a/b"], "base_model": "c/d"})
    ['qup', 'dataset:a/b', 'base_model:c/d']
    """
    if not card:
        return []

    def strings(value) -> list[str]:
        value = [value] if isinstance(value, str) else value
        return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []
    return [*strings(card.get("tags")), *(f"dataset:{d}" for d in strings(card.get("datasets"))),
            *(f"base_model:{b}" for b in strings(card.get("base_model")))]


def settings(ctx, repo_type, repo_id, args) -> Response:
    """PUT /api/{type}s/{repo}/settings: only visibility (private/public) is stored."""
    ctx.can_write(repo_type, repo_id, f"changing settings of {repo_id}")
    data = json_body(ctx)
    if "visibility" in data or "private" in data:
        private = _private(data)
        ctx.storage.set_private(repo_type, repo_id, private)
    return JSONResponse({})


def _private(data: dict) -> bool:
    """The visibility asked by a create / settings body (``visibility`` wins over ``private``)."""
    visibility = data.get("visibility", "private" if data.get("private") else "public")
    if visibility not in ("public", "private", "protected") or data.get("private") not in (None, True, False):
        raise HubError(400, "Invalid visibility: expected 'visibility': 'public'|'private' or 'private': bool")
    return visibility != "public"


def _repo_from_payload(ctx, data: dict) -> tuple[str, str]:
    name, org = data.get("name"), data.get("organization") or ctx.user or "anonymous"
    repo_type = data.get("type") or "model"
    if not isinstance(name, str) or not name:
        raise HubError(400, "Missing 'name' in request body")
    if repo_type not in REPO_TYPES:
        raise HubError(400, f"Invalid repo type {repo_type!r}: expected one of {REPO_TYPES}")
    if not isinstance(org, str) or not is_name(org) or not is_name(name):
        raise HubError(400, f"Invalid repo id {str(org)[:100]!r}/{name[:100]!r}: expected 'namespace/name' "
                            "(letters, digits, '-', '_', '.'; no '--' or '..'; at most 96 characters)")
    return repo_type, f"{org}/{name}"


def create_repo(ctx) -> Response:
    ctx.need_write("creating a repo")  # before the body is read
    data = json_body(ctx)
    repo_type, repo_id = _repo_from_payload(ctx, data)
    namespace = repo_id.split("/")[0]
    if not (ctx.app.auth.open or ctx.identity.member_of(namespace)):
        raise HubError(403, f'You don\'t have the rights to create a {repo_type} under the namespace "{namespace}"')
    private = _private(data)
    try:
        ctx.storage.create_repo(repo_type, repo_id, private=private, sdk=data.get("sdk"),
                                author=ctx.user or "anonymous")
    except HubError as e:
        if e.status == 409:  # like the Hub: the body still names the repo's url (create_repo(exist_ok))
            raise HubError(409, f"You already created this {repo_type} repo: {repo_id}",
                           extra={"url": repo_url(ctx, repo_type, repo_id)}) from None
        raise
    url = repo_url(ctx, repo_type, repo_id)
    return JSONResponse({"url": url, "name": repo_id, "id": repo_id})


def delete_repo(ctx) -> Response:
    ctx.need_write("deleting a repo")  # before the body is read
    repo_type, repo_id = _repo_from_payload(ctx, json_body(ctx))
    ctx.can_write(repo_type, repo_id, f"deleting {repo_type} repo {repo_id}")
    ctx.storage.delete_repo(repo_type, repo_id)
    return JSONResponse({})


def entry_json(ctx, repo_type, repo_id, rev, e, expand: bool) -> dict:
    out = {"type": e.type, "oid": e.oid, "size": e.size, "path": e.path}
    if e.lfs:
        out["lfs"] = e.lfs
    if expand:
        out["lastCommit"] = ctx.storage.last_commit(repo_type, repo_id, rev, e.path)
    return out


def repo_info(ctx, repo_type, repo_id, args) -> Response:
    meta = ctx.can_read(repo_type, repo_id)
    rev = "/".join(args) or "main"
    commit, entries = ctx.storage.tree(repo_type, repo_id, rev, recursive=True)
    blobs = ctx.flag("blobs")
    siblings = []
    for e in entries:
        if e.type == "file":
            s = {"rfilename": e.path}
            if blobs:
                s.update(size=e.size, blobId=e.oid)
                if e.lfs:
                    s["lfs"] = {"size": e.lfs["size"], "sha256": e.lfs["oid"], "pointerSize": e.lfs["pointerSize"]}
            siblings.append(s)
    last = ctx.storage.log(repo_type, repo_id, commit)[0]
    info = {"_id": repo_id, "id": repo_id, "author": repo_id.split("/")[0], "sha": commit,
            "lastModified": last["date"], "createdAt": meta["createdAt"], "private": meta["private"],
            "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
            "siblings": siblings, "usedStorage": sum(e.size for e in entries if e.type == "file")}
    card = card_data(ctx, repo_type, repo_id, commit, entries)
    if card is not None:
        info["cardData"] = card
    if repo_type == "space":
        info.update(sdk=meta.get("sdk"), runtime={"stage": "NO_APP_FILE", "hardware": {}})
    return JSONResponse(info)


def card_data(ctx, repo_type, repo_id, commit, entries) -> dict | None:
    """The README's YAML front matter, as the Hub returns it in ``cardData`` (None if absent)."""
    readme = next((e for e in entries if e.path == "README.md" and e.type == "file"), None)
    if readme is None or readme.size > MAX_README_BYTES:
        return None
    f = ctx.storage.read(repo_type, repo_id, commit, "README.md")
    text = (f.content if f.content is not None else f.lfs_path.read_bytes()).decode("utf-8", "replace")
    try:
        return card_json(text)
    except CardError as e:   # committed before the check existed (or via LFS): listed without its card
        logger.warning("%s %s: card skipped: %s", repo_type, repo_id, e.message)
        return None


def preupload(ctx, repo_type, repo_id, args) -> Response:
    ctx.can_write(repo_type, repo_id, f"uploading to {repo_id}")
    rev = "/".join(args) or "main"
    files = json_body(ctx).get("files")
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise HubError(400, "preupload: body must be {\"files\": [{\"path\", \"sample\", \"size\"}]}")
    head = ctx.storage.resolve(repo_type, repo_id, rev) if not ctx.flag("create_pr") else None
    existing = {}
    if head:
        existing = {e.path: e for e in ctx.storage.paths_info(repo_type, repo_id, head,
                                                               [f.get("path", "") for f in files])}
    out = []
    for f in files:
        path, size = f.get("path"), f.get("size")
        if not isinstance(path, str) or not isinstance(size, int):
            raise HubError(400, f"preupload: each file needs a string 'path' and int 'size', got {f!r}"[:300])
        check_path(path)
        old = existing.get(path)
        try:
            sample = base64.b64decode(f.get("sample") or "", validate=True)
        except (binascii.Error, TypeError, ValueError):
            raise HubError(400, f"preupload: 'sample' of {path!r} is not base64") from None
        mode = "lfs" if old is not None and old.lfs else ctx.storage.upload_mode(path, size, sample)
        oid = None if old is None or old.type != "file" else (old.lfs["oid"] if old.lfs else old.oid)
        out.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
    return JSONResponse({"files": out, "commitOid": head})


def parse_commit(body: bytes) -> tuple[dict, list[tuple]]:
    """(header, ops) from the Hub's NDJSON commit payload; 400 naming the bad line otherwise."""
    header, ops = None, []
    for n, line in enumerate(body.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if not isinstance(value, dict):
                raise ValueError("'value' must be an object")
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise ValueError(f"unsupported encoding {value.get('encoding')!r}")
                ops.append(("file", value["path"], base64.b64decode(value["content"], validate=True)))
            elif key == "lfsFile":
                if not isinstance(value["size"], int) or value["size"] < 0:
                    raise ValueError("'size' must be a non-negative integer")
                ops.append(("lfsFile", value["path"], check_oid(value["oid"]), value["size"]))
            elif key in ("deletedFile", "deletedFolder"):
                ops.append((key, value["path"]))
            else:
                raise ValueError(f"unknown key {key!r}")
        except (ValueError, KeyError, TypeError, binascii.Error) as e:
            raise HubError(400, f"Invalid commit payload, line {n}: {getattr(e, 'message', e)}") from None
        except RecursionError:
            raise HubError(400, f"Invalid commit payload, line {n}: JSON nested too deeply") from None
    if not isinstance(header, dict) or not header.get("summary"):
        raise HubError(400, "Invalid commit payload: missing header line with a 'summary'")
    check_text(header["summary"], "commit summary")
    check_text(header.get("description") or "", "commit description")
    check_text(header.get("parentCommit") or "", "parentCommit")
    return header, ops


def commit(ctx, repo_type, repo_id, args) -> Response:
    ctx.can_write(repo_type, repo_id, f"committing to {repo_id}")
    rev = "/".join(args) or "main"
    header, ops = parse_commit(ctx.body)
    for op in ops:   # the card's metadata reaches every listing: refuse a hostile one now
        if op[0] == "file" and op[1] == "README.md":
            check_readme(op[2])
    sha, num = ctx.storage.commit(repo_type, repo_id, rev, ops, header["summary"],
                                  header.get("description") or "", parent_commit=header.get("parentCommit"),
                                  author=ctx.user or "anonymous", create_pr=ctx.flag("create_pr"))
    pr_url = f"{repo_url(ctx, repo_type, repo_id)}/discussions/{num}" if num else None
    return JSONResponse({"success": True, "commitOid": sha, "pullRequestUrl": pr_url,
                         "commitUrl": f"{repo_url(ctx, repo_type, repo_id)}/commit/{sha}"})


def tree(ctx, repo_type, repo_id, args) -> Response:
    ctx.can_read(repo_type, repo_id)
    if not args:
        raise HubError(400, "tree: missing revision")
    rev, path = _split_rev(args)
    commit, entries = ctx.storage.tree(repo_type, repo_id, rev, path, recursive=ctx.flag("recursive"))
    expand = ctx.flag("expand")
    return JSONResponse([entry_json(ctx, repo_type, repo_id, commit, e, expand) for e in entries])


def _split_rev(args: list[str]) -> tuple[str, str]:
    """Revision then path; an unencoded ``refs/pr/N`` or ``refs/convert/x`` takes three segments."""
    n = 3 if args[0] == "refs" and len(args) >= 3 else 1
    return "/".join(args[:n]), "/".join(args[n:])


def paths_info(ctx, repo_type, repo_id, args) -> Response:
    ctx.can_read(repo_type, repo_id)
    rev = "/".join(args) or "main"
    if ctx.request.headers.get("content-type", "").startswith("application/json"):
        data = json_body(ctx)
        paths, expand = data.get("paths", []), bool(data.get("expand"))
        if not isinstance(paths, list):
            raise HubError(400, "paths-info: 'paths' must be a list of strings")
    else:
        form = parse_qs(ctx.body.decode("utf-8", "replace"))
        paths, expand = form.get("paths", []), form.get("expand", ["False"])[0].lower() == "true"
    commit = ctx.storage.resolve(repo_type, repo_id, rev)
    entries = ctx.storage.paths_info(repo_type, repo_id, commit, paths)
    return JSONResponse([entry_json(ctx, repo_type, repo_id, commit, e, expand) for e in entries])


def refs(ctx, repo_type, repo_id, args) -> Response:
    ctx.can_read(repo_type, repo_id)
    data = ctx.storage.refs(repo_type, repo_id)
    if not ctx.flag("include_prs"):
        data.pop("pullRequests")
    return JSONResponse(data)


def commits(ctx, repo_type, repo_id, args) -> Response:
    ctx.can_read(repo_type, repo_id)
    return JSONResponse(ctx.storage.log(repo_type, repo_id, "/".join(args) or "main"))


def branch(ctx, repo_type, repo_id, args) -> Response:
    name = "/".join(args)
    ctx.can_write(repo_type, repo_id, f"changing branch {name!r} of {repo_id}")
    if not name:
        raise HubError(400, "Missing branch name")
    if ctx.method == "DELETE":
        ctx.storage.delete_ref(repo_type, repo_id, f"refs/heads/{name}")
    else:
        start = json_body(ctx).get("startingPoint") or "main"
        if not isinstance(start, str):
            raise HubError(400, "'startingPoint' must be a string")
        ctx.storage.create_ref(repo_type, repo_id, f"refs/heads/{name}", start)
    return JSONResponse({})


def tag(ctx, repo_type, repo_id, args) -> Response:
    ctx.can_write(repo_type, repo_id, f"changing tags of {repo_id}")
    if ctx.method == "DELETE":
        ctx.storage.delete_ref(repo_type, repo_id, f"refs/tags/{'/'.join(args)}")
        return JSONResponse({})
    name = json_body(ctx).get("tag")
    if not isinstance(name, str) or not name:
        raise HubError(400, "Missing 'tag' in request body")
    ctx.storage.create_ref(repo_type, repo_id, f"refs/tags/{name}", "/".join(args) or "main")
    return JSONResponse({})


ROUTES = {
    ("GET", ""): repo_info, ("GET", "revision"): repo_info,
    ("POST", "preupload"): preupload, ("POST", "commit"): commit,
    ("GET", "tree"): tree, ("POST", "paths-info"): paths_info,
    ("GET", "refs"): refs, ("GET", "commits"): commits,
    ("POST", "branch"): branch, ("DELETE", "branch"): branch,
    ("POST", "tag"): tag, ("DELETE", "tag"): tag, ("PUT", "settings"): settings,
}
