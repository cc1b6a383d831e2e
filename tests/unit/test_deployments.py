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


def test_every_flow_is_deployed_and_parameters_validate():
    from prefect.flows import Flow

    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    deployed = {dep["entrypoint"] for dep in config["deployments"]}
    # Every flow module's flows have a deployment.
    for module in sorted((REPO / "flows").glob("*.py")):
        text = module.read_text()
        if "@pipeline_flow(" not in text:
            continue
        spec = importlib.util.spec_from_file_location(module.stem + "_scan", module)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        for name, obj in vars(mod).items():
            if isinstance(obj, Flow) and obj.fn.__module__ == mod.__name__:
                if name == "demos_split" or name == "demos_normalizer_fit":
                    continue  # one-off maintenance flows, run from the CLI
                assert f"flows/{module.name}:{name}" in deployed, name
    # Default parameters pass the flow's own validation (enforce_parameter_schema).
    for dep in config["deployments"]:
        assert dep.get("enforce_parameter_schema") is True, dep["name"]
        flow = _load_flow(dep["entrypoint"])
        missing = [p for p, info in flow.parameters.model_dump()["properties"].items()
                   if p in flow.parameters.required and p not in dep.get("parameters", {})]
        # GPU steps get their parameters from the flow that dispatches them.
        gpu_child = dep["name"] in ("react-contact-index", "droid-depth")
        assert gpu_child or not missing, (dep["name"], missing)
        if not gpu_child:
            flow.validate_parameters(dep.get("parameters", {}))


def test_gpu_job_variables_snapshot():
    config = yaml.safe_load((REPO / "prefect.yaml").read_text())
    gpu = {dep["name"]: dep["work_pool"] for dep in config["deployments"]
           if dep["work_pool"]["name"] == "robocurate-gpu"}
    assert sorted(gpu) == ["droid-depth", "react-contact-index"]
    # Flows with a GPU step run on the CPU pool and dispatch the step to the GPU pool.
    full = next(d for d in config["deployments"] if d["name"] == "droid-tracks-full")
    assert full["work_pool"]["name"] == "robocurate-cpu"
    assert full["parameters"]["gpu_pool"] == "robocurate-gpu"
    for pool in gpu.values():
        assert pool["job_variables"] == {"image": "ghcr.io/robocurate/robocurate-cuda:0.1.0"}
    publish = next(d for d in config["deployments"] if d["name"] == "publish")
    assert publish["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
