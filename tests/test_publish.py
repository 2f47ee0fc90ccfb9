"""Publishing without network: a stand-in Hub on 127.0.0.1 answers the HTTP calls; upload_folder is recorded."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from fastsynth.errors import FastsynthError
from fastsynth.publish.hub import plan_upload, publish, validate_dataset

from test_metrics import make_synth_dataset

GOOD, BAD = "hf_good_token_for_tests_123", "hf_bad_token_for_tests_456"


@pytest.fixture
def dataset(tmp_path):
    return make_synth_dataset(tmp_path / "ds", n=10, shard_size=4)


@pytest.fixture
def no_login(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no stored login
    monkeypatch.setattr("huggingface_hub.constants.HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))


@pytest.fixture
def hub(monkeypatch):
    """A local stand-in for the Hub API: records requests, accepts GOOD, answers 401 to anything else.

    Offline mode is lifted for these tests only: the one endpoint they can reach is this server on 127.0.0.1.
    """
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    seen = []

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _answer(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            seen.append({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                         "body": body.decode(errors="replace")})
            if self.headers.get("Authorization") != f"Bearer {GOOD}":
                self.send_response(401)
                payload = {"error": "Invalid credentials in Authorization header"}
            elif self.path.startswith("/api/whoami"):
                self.send_response(200)
                payload = {"type": "user", "name": "tester", "orgs": [], "auth": {"type": "access_token"}}
            elif self.path.startswith("/api/repos/create"):
                self.send_response(200)
                b = json.loads(body)
                payload = {"url": f"http://{self.headers['Host']}/datasets/{b['organization']}/{b['name']}"}
            else:
                self.send_response(404)
                payload = {"error": "not in this stand-in"}
            data = json.dumps(payload).encode()
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = _answer

    srv = HTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", seen
    srv.shutdown()


def test_plan_and_dry_run(dataset, no_login):
    (dataset / "data" / "train-00009.parquet.tmp").write_bytes(b"partial")
    (dataset / "notes.txt").write_text("private scratch")
    (dataset / "eval").mkdir()
    (dataset / "eval" / "metrics.json").write_text("{}")
    plan = publish(dataset, "me/polyps", dry_run=True)  # no token needed for a dry run
    paths = [f["path"] for f in plan["files"]]
    assert paths == ["README.md", "data/train-00000.parquet", "data/train-00001.parquet",
                     "data/train-00002.parquet", "eval/metrics.json", "fastsynth.json"]
    assert plan["validation"]["rows"] == 10 and plan["validation"]["features"]["image"] == "Image"
    assert plan_upload(dataset) == plan["files"]


def test_validation_errors(dataset):
    validate_dataset(dataset, load_check=False)
    (dataset / "data" / "train-00001.parquet").rename(dataset / "x.parquet")
    with pytest.raises(FastsynthError, match="train-00001.parquet is missing"):
        validate_dataset(dataset, load_check=False)
    (dataset / "x.parquet").rename(dataset / "data" / "train-00001.parquet")
    m = json.loads((dataset / "fastsynth.json").read_text())
    (dataset / "fastsynth.json").write_text(json.dumps({**m, "n": 11}))
    with pytest.raises(FastsynthError, match="has 2 rows, the manifest says 3"):
        validate_dataset(dataset, load_check=False)
    (dataset / "fastsynth.json").write_text(json.dumps({**m, "complete": False}))
    with pytest.raises(FastsynthError, match="incomplete"):
        validate_dataset(dataset, load_check=False)
    (dataset / "fastsynth.json").write_text(json.dumps(m))
    card = (dataset / "README.md").read_text()
    (dataset / "README.md").write_text(card.replace("task_categories:\n- image", "task_categories: [\n- image"))
    with pytest.raises(FastsynthError, match="invalid YAML"):
        validate_dataset(dataset, load_check=False)
    (dataset / "README.md").write_text(card.replace("data/train-*.parquet", "shards/*.parquet"))
    with pytest.raises(FastsynthError, match="do not cover"):
        validate_dataset(dataset, load_check=False)
    (dataset / "README.md").write_text(card)
    with pytest.raises(FastsynthError, match="ORG/NAME"):
        publish(dataset, "no-slash", dry_run=True)
    with pytest.raises(FastsynthError, match="not a fastsynth dataset"):
        validate_dataset(dataset / "data")


def test_no_token(dataset, no_login):
    with pytest.raises(FastsynthError, match="no Hugging Face token.*HF_TOKEN"):
        publish(dataset, "me/polyps", load_check=False)


def test_bad_token_401(dataset, no_login, hub, monkeypatch, capsys):
    from huggingface_hub import HfApi

    url, seen = hub
    monkeypatch.setenv("HF_TOKEN", BAD)
    with pytest.raises(FastsynthError, match="rejected.*401") as ei:
        publish(dataset, "me/polyps", api=HfApi(endpoint=url), load_check=False)
    assert BAD not in str(ei.value)
    assert seen and seen[0]["path"].startswith("/api/whoami") and seen[0]["auth"] == f"Bearer {BAD}"
    assert not any(s["path"].startswith("/api/repos/create") for s in seen)  # nothing created
    out = capsys.readouterr()
    assert BAD not in out.out + out.err


def test_upload_sends_the_right_requests(dataset, no_login, hub, monkeypatch, capsys):
    from huggingface_hub import HfApi

    url, seen = hub
    monkeypatch.setenv("HF_TOKEN", GOOD)
    api = HfApi(endpoint=url)
    calls = []

    def fake_commit(repo_id, operations, **kw):  # the commit itself is huggingface_hub's; record what we ask
        calls.append({"repo_id": repo_id, "paths": [op.path_in_repo for op in operations], **kw})
        return "http://127.0.0.1/commit/abc"

    def fake_branch(repo_id, **kw):
        calls.append({"branch": kw["branch"], "repo_id": repo_id})

    monkeypatch.setattr(api, "create_commit", fake_commit)
    monkeypatch.setattr(api, "create_branch", fake_branch)
    plan = publish(dataset, "me/polyps", private=True, revision="v1", api=api)
    create = [s for s in seen if s["path"].startswith("/api/repos/create")]
    assert len(create) == 1 and create[0]["method"] == "POST"
    body = json.loads(create[0]["body"])
    assert body["name"] == "polyps" and body["organization"] == "me" and body["type"] == "dataset"
    assert body.get("private") is True or body.get("visibility") == "private"
    assert calls[0] == {"branch": "v1", "repo_id": "me/polyps"}
    up = calls[1]
    assert up["repo_id"] == "me/polyps" and up["repo_type"] == "dataset" and up["revision"] == "v1"
    assert up["token"] == GOOD
    assert sorted(p for c in calls[1:] for p in c["paths"]) == [f["path"] for f in plan["files"]]
    assert calls[-1]["paths"][0] == "README.md"  # the card goes up last, after every shard
    assert plan["user"] == "tester"
    # the token is nowhere in the result, the output, or the folder
    assert GOOD not in json.dumps(plan, default=str)
    out = capsys.readouterr()
    assert GOOD not in out.out + out.err
    for f in dataset.rglob("*"):
        if f.is_file():
            assert GOOD.encode() not in f.read_bytes()


def test_cli_publish_dry_run(dataset, no_login, capsys):
    import argparse

    from fastsynth.cli import publish as pub

    p = argparse.ArgumentParser()
    pub.add_parser(p.add_subparsers(dest="command"))
    assert pub.run(p.parse_args(["publish", str(dataset), "--repo-id", "me/polyps", "--dry-run"])) == 0
    out = capsys.readouterr().out
    assert "would upload 5 files" in out and "data/train-00002.parquet" in out


class FakeHub:
    """An in-memory stand-in for HfApi (no network): repos with visibility and files; create_commit applies
    the operations like the Hub (atomically) and can be made to fail after some commits."""

    def __init__(self, repos=None, fail_after_commits=None):
        self.repos = repos or {}
        self.commits = []
        self.visibility_changes = []
        self.fail_after_commits = fail_after_commits

    def whoami(self, token=None):
        return {"name": "tester"}

    def repo_info(self, repo_id, repo_type=None, token=None):
        if repo_id not in self.repos:
            raise type("RepositoryNotFoundError", (Exception,), {})(f"{repo_id} not found")
        return type("Info", (), {"private": self.repos[repo_id]["private"]})()

    def create_repo(self, repo_id, repo_type=None, private=False, exist_ok=False, token=None):
        self.repos.setdefault(repo_id, {"private": private, "files": {}})

    def update_repo_settings(self, repo_id, private=None, repo_type=None, token=None):
        self.repos[repo_id]["private"] = private
        self.visibility_changes.append(private)

    def create_branch(self, *a, **kw):
        pass

    def list_repo_tree(self, repo_id, repo_type=None, revision=None, recursive=False, token=None):
        import hashlib

        for path, data in self.repos[repo_id]["files"].items():
            lfs = {"sha256": hashlib.sha256(data).hexdigest()} if path.endswith(".parquet") else None
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            yield type("RepoFile", (), {"path": path, "lfs": lfs, "blob_id": blob})()

    def create_commit(self, repo_id, operations, commit_message="", **kw):
        from pathlib import Path

        if self.fail_after_commits is not None and len(self.commits) >= self.fail_after_commits:
            raise ConnectionError("connection reset by peer")
        files = self.repos[repo_id]["files"]
        for op in operations:
            if type(op).__name__ == "CommitOperationDelete":
                files.pop(op.path_in_repo, None)
            else:
                src = op.path_or_fileobj
                files[op.path_in_repo] = src if isinstance(src, bytes) else Path(src).read_bytes()
        self.commits.append([op.path_in_repo for op in operations])
        return f"commit/{len(self.commits)}"


def _with_eval(dataset, monkeypatch):
    """An evaluated dataset whose local files hold what must not leave the machine."""
    import getpass

    user = getpass.getuser()
    (dataset / "eval").mkdir(exist_ok=True)
    for name in ("samples_real.png", "samples_synthetic.png", "metrics.png"):
        (dataset / "eval" / name).write_bytes(b"\x89PNG fake " + name.encode())
    metrics = {"synthetic_dir": f"/home/{user}/work/ds", "command": f"fastsynth evaluate /home/{user}/work/ds "
               "--real ../shared/data/kvasir-seg", "reference": {"root": "../shared/data/kvasir-seg"},
               "memorization": {"n_flagged": 1, "per_image_file": f"/home/{user}/work/ds/eval/memorization.json",
                                "flagged": [{"index": 3, "nearest_train": "cju0qkwl35piu0993l0dewei2",
                                             "similarity": 0.91}]}}
    (dataset / "eval" / "metrics.json").write_text(json.dumps(metrics))
    m = json.loads((dataset / "fastsynth.json").read_text())
    m["source_dir"] = f"/home/{user}/data/masks"
    (dataset / "fastsynth.json").write_text(json.dumps(m))
    return user


def test_no_real_images_paths_or_neighbour_stems_published(dataset, no_login, monkeypatch):
    user = _with_eval(dataset, monkeypatch)
    hub = FakeHub()
    plan = publish(dataset, "me/polyps", token=GOOD, api=hub, load_check=False)
    files = hub.repos["me/polyps"]["files"]
    assert "eval/samples_real.png" not in files and "eval/samples_real.png" not in [f["path"] for f in plan["files"]]
    assert "eval/samples_synthetic.png" in files and "eval/metrics.png" in files
    def values(v):  # the strings of a JSON value (keys are fixed names, e.g. "root", not data)
        if isinstance(v, dict):
            return " ".join(values(x) for x in v.values())
        return " ".join(values(x) for x in v) if isinstance(v, list) else str(v)

    for name in ("eval/metrics.json", "fastsynth.json", "README.md"):
        text = files[name].decode()
        text = values(json.loads(text)) if name.endswith(".json") else text
        for secret in ("/home/", user, "cju0qkwl35piu0993l0dewei2", "../shared", "memorization.json"):
            assert secret not in text, (name, secret)
    pub = json.loads(files["eval/metrics.json"])
    assert pub["memorization"]["flagged"] == [{"index": 3, "similarity": 0.91}]  # distances stay, names go
    assert pub["reference"]["root"] == "kvasir-seg" and json.loads(files["fastsynth.json"])["source_dir"] == "masks"
    # the local files are untouched
    assert "cju0qkwl35piu0993l0dewei2" in (dataset / "eval" / "metrics.json").read_text()


def test_private_means_private(dataset, no_login):
    hub = FakeHub({"me/polyps": {"private": False, "files": {}}})
    said = []
    with pytest.raises(FastsynthError, match="exists and is public, but private was asked.*--change-visibility"):
        publish(dataset, "me/polyps", private=True, token=GOOD, api=hub, load_check=False, log=said.append)
    assert hub.commits == [] and hub.repos["me/polyps"]["private"] is False
    plan = publish(dataset, "me/polyps", private=True, change_visibility=True, token=GOOD, api=hub,
                   load_check=False, log=said.append)
    assert hub.visibility_changes == [True] and plan["private"] and plan["visibility"] == "private"
    up = next(i for i, s in enumerate(said) if s.startswith("uploading"))
    assert "(private)" in said[up] and any("changed to private" in s for s in said[:up])
    # a private repo is not silently published as public either
    with pytest.raises(FastsynthError, match="exists and is private, but public was asked"):
        publish(dataset, "me/polyps", token=GOOD, api=hub, load_check=False)
    # a new repo is created with the asked visibility, and the output says so
    said.clear()
    publish(dataset, "me/new", private=True, token=GOOD, api=hub, load_check=False, log=said.append)
    assert hub.repos["me/new"]["private"] is True and "created datasets/me/new (private)" in said


def test_interrupted_upload_resumes(tmp_path, no_login, monkeypatch):
    from fastsynth.publish import hub as hubmod

    from test_metrics import make_synth_dataset

    ds = make_synth_dataset(tmp_path / "ds", n=10, shard_size=2)  # 5 shards
    monkeypatch.setattr(hubmod, "SHARDS_PER_COMMIT", 2)
    hub = FakeHub(fail_after_commits=2)
    with pytest.raises(FastsynthError, match="upload to me/polyps failed.*ConnectionError"):
        publish(ds, "me/polyps", token=GOOD, api=hub, load_check=False)
    assert hub.commits == [["data/train-00000.parquet", "data/train-00001.parquet"],
                           ["data/train-00002.parquet", "data/train-00003.parquet"]]
    assert "README.md" not in hub.repos["me/polyps"]["files"]  # the card goes up last
    hub.fail_after_commits = None
    hub.repos["me/polyps"]["files"]["data/train-00009.parquet"] = b"left from an earlier, larger upload"
    plan = publish(ds, "me/polyps", token=GOOD, api=hub, load_check=False)
    assert plan["skipped"] == 4
    assert hub.commits[2:] == [["data/train-00004.parquet"], ["README.md", "fastsynth.json",
                                                              "data/train-00009.parquet"]]
    assert sorted(hub.repos["me/polyps"]["files"]) == [f["path"] for f in plan["files"]]
    # nothing left: a third run commits nothing
    n = len(hub.commits)
    assert publish(ds, "me/polyps", token=GOOD, api=hub, load_check=False)["skipped"] == len(plan["files"])
    assert len(hub.commits) == n
