"""The images cannot be built here (no Docker engine): lint them, and check the assumptions
they encode against the repository (files they copy, entry point, user, paths, tags)."""

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = sorted((REPO / "containers").glob("*.Dockerfile"))
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def _instructions(path: Path) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            op, _, rest = line.partition(" ")
            out.append((op.upper(), rest.strip()))
    return out


def _final_stage(path: Path) -> list[tuple[str, str]]:
    ins = _instructions(path)
    last_from = max(i for i, (op, _) in enumerate(ins) if op == "FROM")
    return ins[last_from:]


def _ignored(rel: str) -> bool:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]
    return any(fnmatch.fnmatch(rel, p) or rel.split("/")[0] == p for p in patterns)


def test_three_images():
    assert {p.name for p in DOCKERFILES} == {"cpu.Dockerfile", "cuda.Dockerfile",
                                             "zed.Dockerfile"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_clean(dockerfile):
    # ./dev runs the venv's python without activating the venv: look beside it first.
    beside = Path(sys.executable).parent / "hadolint"
    hadolint = str(beside) if beside.exists() else shutil.which("hadolint")
    assert hadolint, "hadolint is part of the dev extra"
    proc = subprocess.run([hadolint, "--failure-threshold", "info", str(dockerfile)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_image_assumptions(dockerfile):
    ins = _instructions(dockerfile)
    # Base images pinned to a version, never a floating tag.
    for op, rest in ins:
        if op == "FROM":
            image = rest.split()[0]
            assert ":" in image and not image.endswith(":latest"), image
            assert re.search(r":\S*\d", image), f"unpinned base {image}"
        if op == "COPY" and not rest.startswith("--from"):
            for src in rest.split()[:-1]:
                assert (REPO / src).exists(), f"COPY source {src} missing"
                assert not _ignored(src), f"COPY source {src} is in .dockerignore"
        if op == "RUN" and "pip install" in rest:
            assert "--no-cache-dir" in rest
    final = _final_stage(dockerfile)
    users = [rest for op, rest in final if op == "USER"]
    assert users and users[-1] not in ("root", "0"), "final stage must run as non-root"
    # The embedded API's database is migrated at build time, as that user.
    user_at = max(i for i, (op, _) in enumerate(final) if op == "USER")
    assert any(op == "RUN" and "prefect server database upgrade -y" in rest
               for op, rest in final[user_at:])
    # Entry point = the console script the package installs.
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    entry = [json.loads(rest) for op, rest in final if op == "ENTRYPOINT"][-1]
    assert entry[0] in scripts
    # Deployments' pull step goes to $ROBOCURATE_WORKDIR, where prefect.yaml and flows/ are.
    env = " ".join(rest for op, rest in final if op == "ENV")
    workdir = re.search(r"ROBOCURATE_WORKDIR=(\S+)", env).group(1)
    copied = {rest.split()[-1] for op, rest in final if op == "COPY"}
    assert f"{workdir}/prefect.yaml" in copied and f"{workdir}/flows" in copied
    assert "PREFECT_HOME=" in env


def test_deployment_entrypoints_exist_in_images():
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    pull = config["pull"][0]["prefect.deployments.steps.set_working_directory"]
    assert pull["directory"] == "{{ $ROBOCURATE_WORKDIR }}"
    for dep in config["deployments"]:
        path = dep["entrypoint"].split(":")[0]
        assert path.startswith("flows/"), "images copy flows/ into the work dir only"


def test_gpu_job_template_requests_gpus_and_shares_data():
    template = json.loads((REPO / "deployments" / "gpu-job-template.json").read_text())
    props = template["variables"]["properties"]
    create = props["container_create_kwargs"]["default"]
    assert create["device_requests"] == [
        {"driver": "nvidia", "count": -1, "capabilities": [["gpu"]]}]
    assert create["shm_size"] == "8g"
    assert props["volumes"]["default"] == ["/data:/data"]
    assert props["image"]["default"] == f"ghcr.io/robocurate/robocurate-cuda:{VERSION}"
    env = props["env"]["default"]
    assert env["ROBOCURATE_STORAGE"].startswith("/data/")
    assert env["ROBOCURATE_HOME"].startswith("/data/")
    # Every variable the job configuration references is declared.
    for key, value in template["job_configuration"].items():
        name = re.fullmatch(r"\{\{ (\w+) \}\}", value).group(1)
        assert name in props, key
    cuda = (REPO / "containers" / "cuda.Dockerfile").read_text()
    assert f"robocurate-cuda:{VERSION}" in cuda
