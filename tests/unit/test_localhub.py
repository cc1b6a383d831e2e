"""LocalHub driven by the real huggingface_hub client (no network, one server per test)."""

import hashlib
import os
import subprocess
import sys
import time

import pytest

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from robocurate.hub.localhub import (  # noqa: E402
    DEFAULT_GITATTRIBUTES, LocalHub, git_blob_oid, lfs_pointer, upload_mode_for)

hf = pytest.importorskip("huggingface_hub")
from huggingface_hub import CommitOperationAdd, HfApi, constants, hf_hub_download  # noqa: E402
from huggingface_hub.errors import HfHubHTTPError  # noqa: E402

TOKEN, RO_TOKEN = "hf_test_token", "hf_read_only"
REPO = "robocurate/episodes"
BIG = 11 * 1024 * 1024  # over the 10 MiB LFS threshold


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf_home" / "hub"))
    # multipart kicks in above 8 MiB here, so the big file also exercises the HF multipart upload
    with LocalHub(tmp_path / "hub", token=TOKEN, read_tokens=[RO_TOKEN],
                  multipart_threshold=8 * 1024 * 1024, multipart_chunk_size=4 * 1024 * 1024) as h:
        yield h


@pytest.fixture
def folder(tmp_path):
    import h5py
    import numpy as np

    d = tmp_path / "export"
    (d / "meta").mkdir(parents=True)
    (d / "README.md").write_text("---\nlicense: apache-2.0\n---\n# Episodes\n")
    (d / "meta" / "info.json").write_text('{"fps": 15, "episodes": 2}\n')
    (d / "big.dat").write_bytes(os.urandom(BIG))
    with h5py.File(d / "episode_0.h5", "w") as f:
        f["actions"] = np.arange(12, dtype=np.float32).reshape(4, 3)
    return d


def _api(hub, token=TOKEN):
    return HfApi(endpoint=hub.url, token=token)


def _push(hub, folder):
    api = _api(hub)
    api.create_repo(REPO, repo_type="dataset", private=True, exist_ok=True)
    return api, api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder,
                                  commit_message="export v1")


def _sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_upload_list_download_roundtrip(hub, folder, tmp_path):
    api, info = _push(hub, folder)
    assert constants.HF_HUB_DISABLE_XET is True  # start() turned Xet off in the client
    assert len(info.oid) == 40 and info.oid == hub.branches(REPO, "dataset")["main"]
    assert info.commit_url == f"{hub.url}/datasets/{REPO}/commit/{info.oid}"

    assert sorted(api.list_repo_files(REPO, repo_type="dataset")) == [
        ".gitattributes", "README.md", "big.dat", "episode_0.h5", "meta/info.json"]
    tree = {e.path: e for e in api.list_repo_tree(REPO, repo_type="dataset", recursive=True)}
    assert tree["meta"].tree_id and not hasattr(tree["meta"], "size")
    for name in ("big.dat", "episode_0.h5"):  # LFS: by size, by *.h5 pattern
        entry, local = tree[name], folder / name
        assert entry.size == local.stat().st_size
        assert entry.lfs is not None and entry.lfs.sha256 == _sha256(local)
        assert entry.blob_id == git_blob_oid(lfs_pointer(entry.lfs.sha256, entry.size))
        assert hub.lfs_object_path(entry.lfs.sha256).read_bytes() == local.read_bytes()
    readme = tree["README.md"]
    assert readme.lfs is None and readme.blob_id == git_blob_oid((folder / "README.md").read_bytes())

    # the server's own record of the commit
    head = hub.commits(REPO, "dataset")[0]
    assert head["title"] == "export v1" and len(head["parents"]) == 1
    big_sha = _sha256(folder / "big.dat")
    assert head["files"]["big.dat"] == {"size": BIG, "lfs": True, "sha256": big_sha,
                                        "oid": tree["big.dat"].blob_id,
                                        "pointer_size": len(lfs_pointer(big_sha, BIG))}
    assert head["files"]["meta/info.json"]["lfs"] is False

    paths = api.get_paths_info(REPO, ["big.dat", "meta", "missing.txt"], repo_type="dataset")
    assert [p.path for p in paths] == ["big.dat", "meta"]
    ds = api.dataset_info(REPO, files_metadata=True)
    assert ds.sha == info.oid and ds.private is True
    assert {s.rfilename: s.size for s in ds.siblings}["big.dat"] == BIG

    for name in ("big.dat", "meta/info.json", "episode_0.h5"):
        got = hf_hub_download(REPO, name, repo_type="dataset", endpoint=hub.url, token=TOKEN,
                              cache_dir=tmp_path / "cache")
        assert open(got, "rb").read() == (folder / name).read_bytes()
        assert info.oid in got  # cached under the commit the server reported (X-Repo-Commit)

    paths = [r.path for r in hub.requests]
    assert any("/_lfs/part/" in p for p in paths)  # big.dat: multipart
    assert any(p.startswith("/_lfs/upload/") for p in paths)  # episode_0.h5: basic
    assert sum("/info/lfs/objects/verify" in p for p in paths) == 2
    assert not any("xet" in p for p in paths)


def test_second_identical_upload_is_skipped_by_the_client(hub, folder):
    api, first = _push(hub, folder)
    n_commits, n_requests = len(hub.commits(REPO, "dataset")), len(hub.requests)
    second = api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder)
    # preupload returns the remote oids; the client sees nothing changed, makes no commit
    # and answers with the current head (read back through repo_info)
    assert second.oid == first.oid
    assert len(hub.commits(REPO, "dataset")) == n_commits
    new = [(r.method, r.path) for r in hub.requests[n_requests:]]
    assert ("POST", f"/api/datasets/{REPO}/preupload/main") in new
    assert not any("/commit/" in p or p.startswith("/_lfs/") for _, p in new)


def test_auth_401_without_or_with_a_bad_token_and_403_read_only(hub, folder):
    _push(hub, folder)
    for token in (False, "hf_wrong"):
        with pytest.raises(HfHubHTTPError) as exc:
            _api(hub, token).list_repo_files(REPO, repo_type="dataset")
        assert exc.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as exc:
        _api(hub, "hf_wrong").whoami()
    assert exc.value.response.status_code == 401

    ro = _api(hub, RO_TOKEN)
    assert ro.whoami()["auth"]["accessToken"]["role"] == "read"
    assert "big.dat" in ro.list_repo_files(REPO, repo_type="dataset")  # reads are fine
    head = hub.branches(REPO, "dataset")["main"]
    (folder / "new.txt").write_text("new\n")
    with pytest.raises(HfHubHTTPError) as exc:
        ro.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder)
    assert exc.value.response.status_code == 403
    assert hub.branches(REPO, "dataset")["main"] == head
    # an existing repo answers 409 (so exist_ok=True works with a read-only token); a new one 403
    assert ro.create_repo(REPO, repo_type="dataset", exist_ok=True).repo_id == REPO
    with pytest.raises(HfHubHTTPError) as exc:
        ro.create_repo("robocurate/other", repo_type="dataset")
    assert exc.value.response.status_code == 403 and not hub.repo_exists("robocurate/other", "dataset")


def test_injected_503_on_commit_is_returned_and_changes_nothing(hub, folder):
    api, first = _push(hub, folder)
    (folder / "meta" / "info.json").write_text('{"fps": 30}\n')
    (folder / "extra.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2048))
    hub.fail_next(1, status=503, path_contains="/commit/")
    with pytest.raises(HfHubHTTPError) as exc:  # create_commit does not retry the commit POST
        api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder)
    assert exc.value.response.status_code == 503
    assert hub.requests[-1] == ("POST", f"/api/datasets/{REPO}/commit/main", 503)
    assert hub.branches(REPO, "dataset")["main"] == first.oid
    assert "extra.h5" not in hub.files(REPO, "dataset")

    # the LFS object did reach storage: the re-run skips its upload and only commits
    n = len(hub.requests)
    again = api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder)
    assert again.oid != first.oid and hub.read_file(REPO, "meta/info.json", "dataset") == b'{"fps": 30}\n'
    assert not any(r.path.startswith("/_lfs/") for r in hub.requests[n:])
    assert [c["id"] for c in hub.commits(REPO, "dataset")][:2] == [again.oid, first.oid]


def test_injected_429_with_retry_after_is_retried_by_the_client(hub, folder):
    api = _api(hub)
    api.create_repo(REPO, repo_type="dataset")
    hub.fail_next(1, status=429, path_contains="/preupload/", retry_after=0)
    (folder / "big.dat").unlink()
    api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder)
    pre = [r.status for r in hub.requests if "/preupload/" in r.path]
    assert pre == [429, 200]  # http_backoff honoured Retry-After and retried


def test_lfs_upload_whose_bytes_do_not_match_the_announced_oid_is_rejected(hub, tmp_path):
    api = _api(hub)
    api.create_repo(REPO, repo_type="dataset")
    f = tmp_path / "episode.h5"
    f.write_bytes(b"A" * 4096)
    op = CommitOperationAdd(path_in_repo="episode.h5", path_or_fileobj=str(f))
    announced = op.upload_info.sha256.hex()  # hashed now...
    f.write_bytes(b"B" * 4096)  # ...sent later: same size, other content
    with pytest.raises(Exception) as exc:
        api.create_commit(REPO, [op], commit_message="tampered", repo_type="dataset")
    cause = exc.value.__cause__ or exc.value
    assert isinstance(cause, HfHubHTTPError) and cause.response.status_code == 400
    assert "not the announced oid" in str(cause)
    assert hub.lfs_object_path(announced) is None
    assert hub.lfs_object_path(hashlib.sha256(b"B" * 4096).hexdigest()) is None
    assert ("PUT", f"/_lfs/upload/{announced}", 400) in hub.requests
    assert not any("/commit/" in r.path for r in hub.requests)
    assert "episode.h5" not in hub.files(REPO, "dataset")

    # a commit pointing at an LFS object that was never uploaded is refused too
    import httpx

    body = (b'{"key": "header", "value": {"summary": "x"}}\n'
            b'{"key": "lfsFile", "value": {"path": "a.h5", "algo": "sha256", "oid": "'
            + announced.encode() + b'", "size": 4096}}\n')
    r = httpx.post(f"{hub.url}/api/datasets/{REPO}/commit/main", content=body,
                   headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/x-ndjson"})
    assert r.status_code == 422 and "never uploaded" in r.json()["error"]


def test_branches_state_survives_a_restart_and_the_cli_serves(hub, folder, tmp_path):
    api, first = _push(hub, folder)
    api.create_branch(REPO, branch="curated", repo_type="dataset")
    assert hub.branches(REPO, "dataset") == {"main": first.oid, "curated": first.oid}
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_branch(REPO, branch="curated", repo_type="dataset")
    assert exc.value.response.status_code == 409
    api.create_branch(REPO, branch="curated", repo_type="dataset", exist_ok=True)
    hub.stop()

    before = (os.environ.get("HF_HUB_DISABLE_XET"), constants.HF_HUB_DISABLE_XET)
    with LocalHub(tmp_path / "hub", token=TOKEN) as again:
        assert constants.HF_HUB_DISABLE_XET is True and os.environ["HF_HUB_DISABLE_XET"] == "1"
        refs = HfApi(endpoint=again.url, token=TOKEN).list_repo_refs(REPO, repo_type="dataset")
        assert {b.name: b.target_commit for b in refs.branches} == {"main": first.oid, "curated": first.oid}
        assert again.read_file(REPO, "big.dat", "dataset") == (folder / "big.dat").read_bytes()
    assert (os.environ.get("HF_HUB_DISABLE_XET"), constants.HF_HUB_DISABLE_XET) == before

    proc = subprocess.Popen([sys.executable, "-m", "robocurate.hub.localhub", "--root",
                             str(tmp_path / "hub"), "--port", "0", "--token", "T"],
                            stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().split(" at ")[-1].strip()
        import httpx

        assert httpx.get(f"{url}/api/whoami-v2").status_code == 401
        r = httpx.get(f"{url}/api/datasets/{REPO}/tree/curated", headers={"Authorization": "Bearer T"})
        assert r.status_code == 200 and "big.dat" in {e["path"] for e in r.json()}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_upload_mode_rule():
    ga = DEFAULT_GITATTRIBUTES
    assert upload_mode_for("a/readme.md", 100, b"# hi", ga) == "regular"
    assert upload_mode_for("a/big.csv", 10 * 1024 * 1024, b"x,y", ga) == "lfs"  # size
    assert upload_mode_for("a/b.h5", 10, b"\x89HDF", None) == "lfs"  # robocurate pattern
    assert upload_mode_for("x/y.ckpt", 10, b"ckpt", ga) == "lfs"  # .gitattributes
    assert upload_mode_for("x/y.ckpt", 10, b"ckpt", None) == "regular"
    assert upload_mode_for("raw.dat", 10, b"ab\0cd", None) == "lfs"  # binary sample
    assert upload_mode_for("empty.h5", 0, b"", ga) == "regular"  # the client sends these regular
    assert upload_mode_for("saved_model/v1/vars.idx", 10, b"x", ga) == "lfs"  # ** patterns


def test_fail_next_matches_method_and_path_and_is_consumed(hub):
    import httpx

    hub.fail_next(2, status=500, path_contains="whoami", method="GET")
    auth = {"Authorization": f"Bearer {TOKEN}"}
    statuses = [httpx.get(f"{hub.url}/api/whoami-v2", headers=auth).status_code for _ in range(3)]
    assert statuses == [500, 500, 200]
    hub.fail_next(1, status=429, path_contains="whoami")
    r = httpx.get(f"{hub.url}/api/whoami-v2", headers=auth)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert [r.status for r in hub.requests] == [500, 500, 200, 429]
    t0 = time.time()
    assert httpx.get(f"{hub.url}/api/whoami-v2", headers=auth).status_code == 200
    assert time.time() - t0 < 1
