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

    def fake_upload_folder(**kw):  # the multi-commit upload itself is huggingface_hub's; record what we ask
        calls.append(kw)
        return "http://127.0.0.1/commit/abc"

    def fake_branch(repo_id, **kw):
        calls.append({"branch": kw["branch"], "repo_id": repo_id})

    monkeypatch.setattr(api, "upload_folder", fake_upload_folder)
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
    assert up["token"] == GOOD and up["folder_path"] == str(dataset)
    assert up["allow_patterns"] == [f["path"] for f in plan["files"]]
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
