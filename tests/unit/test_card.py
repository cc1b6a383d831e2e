import yaml

from robocurate.hub.card import BEGIN, END, write_card
from robocurate.hub.preflight import run_preflight


def test_card_written_then_refreshed_keeping_user_text(tmp_path):
    write_card(tmp_path, title="Molmo sample", counters={"trajectories": 1200, "files": 4},
               license="apache-2.0", task_categories=["robotics"], tags=["molmospaces"])
    text = (tmp_path / "README.md").read_text()
    assert "| trajectories | 1,200 |" in text
    # The user edits the card: adds metadata and prose on both sides of the section.
    text = text.replace("license: apache-2.0", "license: apache-2.0\npretty_name: Mine")
    text = text.replace(END, END + "\n\nWritten by a human.\n")
    text = text.replace("# Molmo sample", "# Molmo sample\n\nIntro by a human.")
    (tmp_path / "README.md").write_text(text)
    write_card(tmp_path, title="ignored", counters={"trajectories": 1300, "files": 5},
               tags=["molmospaces", "v2"])
    text = (tmp_path / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])
    assert meta["pretty_name"] == "Mine" and meta["tags"] == ["molmospaces", "v2"]
    assert meta["license"] == "apache-2.0"
    assert "Intro by a human." in text and "Written by a human." in text
    assert "1,300" in text and "1,200" not in text and text.count(BEGIN) == 1
    checks = {r["name"]: r for r in run_preflight(tmp_path)}
    assert checks["dataset_card"]["passed"]


def test_existing_card_without_markers_gets_a_section_after_its_title(tmp_path):
    (tmp_path / "README.md").write_text("# My data\n\nSome words.\n")
    write_card(tmp_path, title="x", counters={"episodes": 3})
    text = (tmp_path / "README.md").read_text()
    assert text.index("# My data") < text.index(BEGIN) < text.index("Some words.")
