"""`python -m flows.serve` builds the same deployments `prefect deploy` registers."""

from flows.serve import runner_deployments
from indexops.operations import deployment_specs, load_operations
from tests.conftest import REPO


def test_served_deployments_match_the_rendered_ones():
    ops = load_operations(REPO / "configs" / "operations.yaml").model_copy(update={"timezone": "America/New_York"})
    specs = {s["name"]: s for s in deployment_specs(ops)}
    deps = {d.name: d for d in runner_deployments(ops)}
    assert deps.keys() == specs.keys()
    for name, d in deps.items():
        assert d.parameters == specs[name]["parameters"] and set(d.tags) == set(specs[name]["tags"])
        (s,) = d.schedules
        assert s.schedule.timezone == "America/New_York"
    assert deps["nightly_regression-live"].schedules[0].schedule.cron == "0 2 * * *"
    assert deps["ingest-helpcenter"].schedules[0].schedule.interval.total_seconds() == 900


def test_the_demo_serves_them_paused_and_the_default_is_scheduled():
    ops = load_operations(REPO / "configs" / "operations.yaml")
    assert all(d.paused for d in runner_deployments(ops, paused=True))
    assert not any(d.paused for d in runner_deployments(ops))
