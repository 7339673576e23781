"""The operations config: validation, the rendered prefect.yaml, and what each automation matches."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from indexops.operations import (
    Destination,
    OperationsSettings,
    automation_specs,
    block_name,
    deployment_specs,
    email_apprise_url,
    load_operations,
    render_prefect_yaml,
    with_quickstart_webhook,
)
from tests.conftest import REPO

OPS = REPO / "configs" / "operations.yaml"


def test_committed_prefect_yaml_is_rendered_from_the_operations_config():
    assert (REPO / "deployments" / "prefect.yaml").read_text() == render_prefect_yaml(load_operations(OPS), source="configs/operations.yaml")


def test_every_flow_has_a_deployment_with_tags_schedule_and_the_configured_timezone():
    ops = load_operations(OPS).model_copy(update={"timezone": "Europe/Berlin"})
    specs = {s["name"]: s for s in deployment_specs(ops)}
    assert {s["entrypoint"].rsplit(":", 1)[1] for s in specs.values()} == {"ingest", "evaluate", "nightly_regression", "drift_report", "maintenance"}
    assert specs["nightly_regression-live"]["schedules"] == [{"cron": "0 2 * * *", "timezone": "Europe/Berlin"}]
    assert specs["ingest-helpcenter"]["schedules"] == [{"interval": 900, "timezone": "Europe/Berlin"}]
    assert specs["maintenance-weekly"]["schedules"][0]["cron"].endswith(" 0")  # weekly
    for s in specs.values():
        assert s["description"] and "indexops" in s["tags"] and s["work_pool"]["name"] == "indexops"
    doc = yaml.safe_load(render_prefect_yaml(ops))
    assert [d["name"] for d in doc["deployments"]] == list(specs)


def test_a_feed_added_in_config_gets_an_ingest_deployment_and_a_stale_alert():
    ops = load_operations(OPS)
    ops = ops.model_copy(update={"feeds": ops.feeds + [ops.feeds[0].model_copy(update={"name": "billing", "path": "./feeds/billing", "interval_minutes": 5})]})
    assert "ingest-billing" in {s["name"] for s in deployment_specs(ops)}
    stale = next(s for s in automation_specs(ops) if s["name"] == "indexops: feed billing stale")
    t = stale["trigger"]
    assert t["posture"] == "Proactive" and t["within"] == 3 * 5 * 60 and t["expect"] == ["prefect.flow-run.Completed"]
    assert {"prefect.resource.role": "deployment", "prefect.resource.name": "ingest-billing"} in t["match_related"]


def test_failure_automations_match_the_flow_and_failed_or_crashed_states():
    specs = {s["name"]: s for s in automation_specs(load_operations(OPS))}
    t = specs["indexops: ingest failed or crashed"]["trigger"]
    assert t["posture"] == "Reactive" and set(t["expect"]) == {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"}
    assert t["match_related"] == [{"prefect.resource.role": "flow", "prefect.resource.name": "ingest"}]
    assert specs["indexops: nightly regression failed"]["channel"] == "owners"
    nightly_stale = specs["indexops: no nightly regression"]["trigger"]
    assert nightly_stale["posture"] == "Proactive" and nightly_stale["within"] == 26 * 3600
    assert specs["indexops: quarantine spike"]["trigger"]["expect"] == ["indexops.ingest.quarantine-spike"]
    body = specs["indexops: ingest failed or crashed"]["body"]
    for field in ("flow.name", "deployment.name", "flow_run.state.message", "feed_name", "ui_url"):
        assert field in body


def test_ui_url_fallback_only_when_configured():
    ops = load_operations(OPS)
    assert "runs/flow-run/" not in automation_specs(ops)[0]["body"]
    ops.alerts.ui_url = "http://prefect.internal:4200/"
    assert "'http://prefect.internal:4200/runs/flow-run/' ~ flow_run.id" in automation_specs(ops)[0]["body"]


@pytest.mark.parametrize("bad", [
    {"timezone": "Mars/Olympus"},
    {"nightly_regression_cron": "0 2 * *"},
    {"feeds": [{"name": "a", "path": "x"}, {"name": "a", "path": "y"}]},
    {"feeds": [{"name": "Has Space", "path": "x"}]},
    {"feeds": [{"name": "crm", "path": "postgresql+psycopg://app:pw-in-url@db/crm", "source_kind": "sql"}]},  # kept with every run
    {"feeds": [{"name": "crm", "path": "x", "source_kind": "table"}]},
    {"alerts": {"channels": {"oncall": [{"kind": "slack", "url": "https://hooks.slack.com/services/T/B/SECRET"}]}}},
    {"alerts": {"channels": {"oncall": [{"kind": "email", "smtp_server": "s", "smtp_password": "hunter2", "from_addr": "a@b", "to": ["c@d"]}]}}},
    {"alerts": {"channels": {"oncall": [{"kind": "email", "smtp_server": "s", "from_addr": "a@b"}]}}},
    {"unknown_key": 1},
])
def test_invalid_operations_configs_are_refused(bad):
    with pytest.raises(ValidationError):
        OperationsSettings.model_validate(bad)


def test_a_rule_routed_to_an_undefined_channel_is_an_error_and_quickstart_routes_all():
    ops = OperationsSettings.model_validate({"alerts": {"channels": {"oncall": [{"kind": "webhook", "url": "env:X"}]}}})
    with pytest.raises(ValueError, match="owners"):
        automation_specs(ops)
    quick = with_quickstart_webhook(ops, "env:HOOK")
    specs = automation_specs(quick)
    assert {s["channel"] for s in specs} <= set(quick.alerts.channels)
    assert all(d[0].url == "env:HOOK" for d in quick.alerts.channels.values())


def test_block_names_are_stable_and_email_url_quotes_the_password():
    d = Destination(kind="email", smtp_server="smtp.example.com", smtp_port=587, smtp_mode="starttls", smtp_username="a@example.com",
                    smtp_password="env:PW", from_addr="a@example.com", to=["x@example.com", "y@example.com"])
    assert block_name("Data Team", 0, d) == block_name("Data Team", 0, d) == "indexops-data-team-0-email"
    url = email_apprise_url(d, "p@ss/w:rd")
    assert url.startswith("mailtos://a%40example.com:p%40ss%2Fw%3Ard@smtp.example.com:587?")
    assert "to=x@example.com,y@example.com" in url and "mode=starttls" in url
