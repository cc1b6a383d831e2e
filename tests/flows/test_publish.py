"""Publishing against a local Hub-compatible server with the real huggingface_hub client."""

import json
import logging
import os

import pytest

from robocurate.hub.localhub import LocalHub
from robocurate.hub.push import PushAuthError, Target, push_folder

TOKEN = "hf_" + "S3cretTokenValue" * 3


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", token=TOKEN) as h:
        yield h


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "dataset"
    (d / "data").mkdir(parents=True)
    (d / "README.md").write_text("---\nlicense: mit\ntags: [robotics]\n---\n# Sample\n")
    (d / "data" / "a.txt").write_text("alpha\n")
    (d / "data" / "b.bin").write_bytes(os.urandom(2048))
    (d / "data" / "big.h5").write_bytes(os.urandom(3 << 20))
    return d


def _writes(hub):
    return [r for r in hub.requests if r.method in ("POST", "PUT") and "/preupload/" not in r.path
            and "/paths-info/" not in r.path and "/validate-yaml" not in r.path]


def test_first_push_then_incremental_push_sends_nothing(hub, folder):
    target = Target("me/ds", endpoint=hub.url)
    receipt = push_folder(folder, target, TOKEN)
    assert receipt["sent"]["files"] == 4 and len(receipt["commits"]) == 1
    files = hub.files("me/ds", "dataset")
    assert hub.read_file("me/ds", "data/big.h5", "dataset") == (folder / "data/big.h5").read_bytes()
    assert files["data/big.h5"]["lfs"]
    again = push_folder(folder, target, TOKEN)
    assert again["sent"]["files"] == 0 and again["commits"] == []
    assert {s["path"] for s in again["skipped"]} == {"README.md", "data/a.txt", "data/b.bin",
                                                     "data/big.h5"}


def test_interrupted_push_resumes_with_only_the_rest(hub, folder):
    target = Target("me/ds", endpoint=hub.url)
    hub.fail_next(20, status=500, path_contains="/commit/")  # outlasts the retries
    with pytest.raises(Exception):
        push_folder(folder, target, TOKEN, max_files_per_commit=2, retry_base=0.01)
    # The first commit had no chance either; now let one commit through, then fail.
    hub.clear_faults()
    first = push_folder(folder, target, TOKEN, max_files_per_commit=2, retry_base=0.01)
    assert first["sent"]["files"] == 4 and len(first["commits"]) == 2
    (folder / "data" / "c.txt").write_text("new\n")
    resumed = push_folder(folder, target, TOKEN, max_files_per_commit=2, retry_base=0.01)
    assert resumed["sent"]["paths"] == ["data/c.txt"]


def test_429_then_success(hub, folder):
    hub.fail_next(2, status=429, path_contains="/commit/", retry_after=0)
    receipt = push_folder(folder, Target("me/ds", endpoint=hub.url), TOKEN, retry_base=0.01)
    assert receipt["sent"]["files"] == 4
    statuses = [r.status for r in hub.requests if "/commit/" in r.path]
    assert statuses[:2] == [429, 429] and statuses[-1] == 200


def test_bad_token_stops_at_once_without_echoing_it(hub, folder):
    bad = "hf_" + "WrongToken" * 4
    with pytest.raises(PushAuthError) as err:
        push_folder(folder, Target("me/ds", endpoint=hub.url), bad, retry_base=0.01)
    assert bad not in str(err.value) and "401" in str(err.value)
    # No retry: one create attempt (the client itself then probes the repo once).
    assert len([r for r in hub.requests if r.path == "/api/repos/create"]) == 1
    assert not any("/commit/" in r.path for r in hub.requests)


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_flow_gates_and_receipt_without_the_token(hub, folder, monkeypatch, caplog):
    from flows.publish import PreflightFailed, publish

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    caplog.set_level(logging.DEBUG)
    # Preflight failure: a secret-looking file stops everything before a request is sent.
    (folder / ".env").write_text("KEY=1\n")
    with pytest.raises(PreflightFailed, match="no_secrets"):
        publish(folder=str(folder), repo_id="me/ds")
    assert hub.requests == []
    (folder / ".env").unlink()
    # Without approval (no --approve, not on a deployment) nothing is uploaded.
    rejected = publish(folder=str(folder), repo_id="me/ds")
    assert rejected["status"] == "not-approved" and _writes(hub) == []
    dry = publish(folder=str(folder), repo_id="me/ds", dry_run=True)
    assert dry["plan"]["upload_files"] == 4 and _writes(hub) == []
    done = publish(folder=str(folder), repo_id="me/ds", approve=True)
    assert done["status"] == "pushed"
    receipt = json.loads((folder / "robocurate-push-receipt.json").read_text())
    assert receipt["sent"]["files"] == 4 and receipt["commits"][0]["oid"]
    again = publish(folder=str(folder), repo_id="me/ds", approve=True)
    assert again["receipt"]["sent"]["files"] == 0  # the receipt file itself is never sent
    everything = json.dumps([rejected, dry, done, again]) + caplog.text + \
        (folder / "robocurate-push-receipt.json").read_text()
    assert TOKEN not in everything


@pytest.mark.flow
@pytest.mark.usefixtures("prefect_harness")
def test_token_from_a_prefect_secret_block(hub, folder, monkeypatch):
    from prefect.blocks.system import Secret

    from flows.publish import publish

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    Secret(value=TOKEN).save("hf-publish-token", overwrite=True)
    done = publish(folder=str(folder), repo_id="me/secret-ds", approve=True,
                   token_block="hf-publish-token")
    assert done["status"] == "pushed" and TOKEN not in json.dumps(done)
    assert "README.md" in hub.files("me/secret-ds", "dataset")
