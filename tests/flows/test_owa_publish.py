"""OWA event DatasetDict -> gated publish flow (preflight "owa") -> a local Hub repo."""

import json

import pytest

import robocurate.owa.preflight  # noqa: F401  registers kind "owa" (until hub.preflight imports it)
from robocurate.hub.localhub import LocalHub

pytestmark = [pytest.mark.flow, pytest.mark.usefixtures("prefect_harness")]

TOKEN = "hf_" + "OwaPublishTestToken" * 2
REPO = "me/owa-events"


@pytest.fixture
def hub(tmp_path):
    with LocalHub(tmp_path / "hub", token=TOKEN) as h:
        yield h


def _writes(hub):
    return [r for r in hub.requests if r.method in ("POST", "PUT") and "/preupload/" not in r.path
            and "/paths-info/" not in r.path and "/validate-yaml" not in r.path]


def test_event_dataset_is_pushed_through_the_owa_preflight(hub, tmp_path, monkeypatch):
    from datasets import load_from_disk

    from flows.owa import owa_events
    from flows.publish import RECEIPT_NAME, PreflightFailed, publish
    from robocurate.hub.card import write_card
    from robocurate.samples.owa import generate_owa_recordings

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    generate_owa_recordings(tmp_path / "in", files=2, minutes=0.02, with_faults=False)
    out = tmp_path / "events"
    result = owa_events(train_dir=str(tmp_path / "in"), output_dir=str(out), seed=0, workers=1)
    write_card(out, title="OWA events sample", license="mit", tags=["owa", "desktop"],
               counters={k: v for k, v in result["summary"].items() if k.endswith("rows")})

    # A dangling media reference stops the push before a single request reaches the Hub.
    video = tmp_path / "in" / "rec_001.mkv"
    aside = video.rename(tmp_path / "rec_001.mkv.aside")
    with pytest.raises(PreflightFailed, match="owa_media_refs_resolve") as err:
        publish(folder=str(out), repo_id=REPO, preflight="owa", approve=True)
    assert "rec_001.mkv" in str(err.value)
    assert hub.requests == [] and not (out / RECEIPT_NAME).exists()
    aside.rename(video)

    done = publish(folder=str(out), repo_id=REPO, preflight="owa", approve=True)
    assert done["status"] == "pushed"
    receipt = json.loads((out / RECEIPT_NAME).read_text())
    assert receipt["commits"] and receipt["commits"][0]["oid"]
    files = set(hub.files(REPO, "dataset")) - {".gitattributes"}  # the Hub's own file
    local = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {RECEIPT_NAME}
    assert files == local and receipt["sent"]["files"] == len(local)
    assert {"README.md", "dataset_dict.json", "train/state.json", "test/state.json",
            "train/data-00000-of-00001.arrow", "test/data-00000-of-00001.arrow"} <= files

    # What the Hub holds is the dataset: fetched back, it loads with the same rows.
    back = tmp_path / "from-hub"
    for path in files:
        (back / path).parent.mkdir(parents=True, exist_ok=True)
        (back / path).write_bytes(hub.read_file(REPO, path, "dataset"))
    pushed, original = load_from_disk(str(back)), load_from_disk(str(out))
    assert {k: len(v) for k, v in pushed.items()} == {k: len(v) for k, v in original.items()}
    assert pushed["train"]["mcap_message"] == original["train"]["mcap_message"]
    assert _writes(hub)  # and it did go through the Hub's write API

    # A pushed dataset pushed again sends nothing.
    again = publish(folder=str(out), repo_id=REPO, preflight="owa", approve=True)
    assert again["receipt"]["sent"]["files"] == 0
