"""Every deployment in prefect.yaml points at a real flow whose parameters have a schema."""

import importlib.util
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def _load_flow(entrypoint: str):
    path, name = entrypoint.split(":")
    spec = importlib.util.spec_from_file_location(Path(path).stem + "_entry", REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def test_every_entrypoint_loads_with_a_parameter_schema():
    from prefect.utilities.callables import parameter_schema

    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    assert config["deployments"]
    for dep in config["deployments"]:
        flow = _load_flow(dep["entrypoint"])
        schema = parameter_schema(flow).model_dump()
        for param in dep.get("parameters", {}):
            assert param in schema["properties"], (dep["name"], param)
        assert dep["work_pool"]["name"].startswith("robocurate-")
