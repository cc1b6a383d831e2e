"""Batched publishing across a simulated restart, against the local Hub server."""

import pytest

from robocurate.hub.batch import BatchPublisher, BatchTarget
from robocurate.hub.localhub import LocalHub
from robocurate.hub.push import Target

TOKEN = "hf_batchtesttoken_0123456789abcdef"


def _episode(root, name, size=100):
    d = root / name
    d.mkdir(parents=True)
    (d / "metadata.json").write_text(f'{{"episode": "{name}"}}')
    (d / "tracks.npz").write_bytes(bytes(range(256)) * size)
    return d


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", token=TOKEN) as h:
        yield h


def test_batches_by_count_to_two_repos_and_survive_a_restart(hub, tmp_path):
    targets = [BatchTarget(Target("lab/full", endpoint=hub.url)),
               BatchTarget(Target("lab/meta", endpoint=hub.url), include=["*/metadata.json"])]
    queue = tmp_path / "queue"
    pub = BatchPublisher(queue, targets, token=TOKEN, every_n=2, every_s=1e9)
    pub.stage(_episode(tmp_path / "src", "ep1"))
    assert not pub.due() and pub.maybe_publish() == []
    pub.stage(_episode(tmp_path / "src", "ep2"))
    # A copy that was interrupted mid-way is never published.
    (queue / "staging" / "ep9.partial").mkdir()
    (queue / "staging" / "ep9.partial" / "metadata.json").write_text("{")
    [record] = pub.maybe_publish()
    assert record["episodes"] == ["ep1", "ep2"]
    assert set(hub.files("lab/full", "dataset")) >= {"ep1/tracks.npz", "ep2/metadata.json"}
    assert not any(p.endswith("tracks.npz") for p in hub.files("lab/meta", "dataset"))

    # Crash during the second batch: the full repo got it, the metadata repo did not.
    pub.stage(_episode(tmp_path / "src", "ep3"))
    pub.stage(_episode(tmp_path / "src", "ep4"))
    hub.fail_next(50, status=500, path_contains="/api/datasets/lab/meta/commit/")
    calls = []

    def fast_push(*a, **kw):
        from robocurate.hub.push import push_folder

        calls.append(a[1].repo_id)
        return push_folder(*a, **kw, retry_base=0.001)

    pub = BatchPublisher(queue, targets, token=TOKEN, every_n=2, push=fast_push)
    with pytest.raises(Exception):
        pub.maybe_publish()
    hub.clear_faults()
    before = len([r for r in hub.requests if "/lab/full/commit/" in r.path])
    restarted = BatchPublisher(queue, targets, token=TOKEN, every_n=2, push=fast_push)
    assert not (queue / "staging" / "ep9.partial").exists()
    [record] = restarted.maybe_publish()
    assert record["episodes"] == ["ep3", "ep4"]
    # The full repo already had the batch: no new commit there after the restart.
    assert len([r for r in hub.requests if "/lab/full/commit/" in r.path]) == before
    assert calls.count("lab/full") == 1 and calls.count("lab/meta") == 2
    assert "ep4/metadata.json" in hub.files("lab/meta", "dataset")
    assert restarted.pending() == [] and list((queue / "batches").iterdir()) == []
