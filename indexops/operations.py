"""Operations config: which flows run when and where, and who is told when something goes wrong.

One YAML file (``configs/operations.yaml``) drives both the Prefect deployments (rendered to
``deployments/prefect.yaml``) and the alert automations, so a feed added in one place gets its
schedule, its stale-feed alert and its concurrency guard together. The file holds references to
secrets (``env:VAR`` or ``secret:<Prefect Secret block>``), never the secrets themselves.
Pure logic: the Prefect API calls live in ``tasks/alerts.py``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from indexops.ingest.storage import has_password

SLUG = r"^[a-z0-9][a-z0-9_-]{0,62}$"
SECRET_REF = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|secret:[a-z0-9][a-z0-9-]*)$")
QUARANTINE_SPIKE_EVENT = "indexops.ingest.quarantine-spike"
INGEST_FAILED_EVENT = "indexops.ingest.failed"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _cron_ok(v: str) -> str:
    if len(v.split()) != 5:
        raise ValueError(f"cron {v!r} must have 5 fields (minute hour day month weekday)")
    return v


class FeedDeployment(_Strict):
    """One feed: an ingest deployment on an interval, and a stale alert at `stale_intervals` of it."""

    name: str = Field(pattern=SLUG, description="feed name; the deployment is ingest-<name>")
    path: str = Field(description="delta-feed directory or fsspec URL (s3://bucket/prefix), snapshot/BEIR folder, document "
                      "tree (path or URL), or a database URL without its password (source_kind sql)")
    interval_minutes: int = Field(15, gt=0)
    source_kind: Literal["auto", "delta", "snapshot", "beir", "documents", "sql"] = Field(
        "auto", description="what the path holds; the ingest deployment's source_kind parameter")

    @field_validator("path")
    @classmethod
    def _no_password(cls, v: str) -> str:
        if has_password(v):  # a deployment's parameters are shown in the UI and kept with every run
            raise ValueError("a feed path must not hold a password: set it in the environment (sql.password_env, PGPASSWORD)")
        return v


class Destination(_Strict):
    """Where a notification goes. URLs and passwords are references, resolved at setup time."""

    kind: Literal["slack", "teams", "webhook", "email"]
    url: str | None = Field(None, description="env:VAR or secret:block-name holding the webhook URL")
    smtp_server: str | None = None
    smtp_port: int = Field(465, gt=0)
    smtp_mode: Literal["ssl", "starttls", "insecure"] = "ssl"
    smtp_username: str | None = None
    smtp_password: str | None = Field(None, description="env:VAR or secret:block-name")
    from_addr: str | None = None
    to: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _complete(self) -> "Destination":
        for field in ("url", "smtp_password"):
            v = getattr(self, field)
            if v is not None and not SECRET_REF.match(v):
                raise ValueError(f"{field} must be a reference (env:VAR or secret:block-name), never the value itself")
        if self.kind == "email":
            if not (self.smtp_server and self.to and self.from_addr):
                raise ValueError("an email destination needs smtp_server, from_addr and at least one address in to")
        elif self.url is None:
            raise ValueError(f"a {self.kind} destination needs url (env:VAR or secret:block-name)")
        return self


class Rule(_Strict):
    channel: str = Field(description="the channel (a key of alerts.channels) that is told")
    enabled: bool = True


class AlertsSettings(_Strict):
    channels: dict[str, list[Destination]] = Field(default_factory=dict, description="channel name -> destinations")
    ui_url: str | None = Field(None, description="Prefect UI base URL for links when the server has no PREFECT_UI_URL")
    ingest_failed: Rule = Rule(channel="oncall")
    nightly_failed: Rule = Rule(channel="owners")
    nightly_stale: Rule = Rule(channel="oncall")
    nightly_stale_after_s: float = Field(26 * 3600, ge=10, description="no completed nightly regression for this long alerts")
    ingest_stale: Rule = Rule(channel="oncall")
    ingest_stale_intervals: float = Field(3, gt=0, description="no completed ingest of a feed for this many schedule intervals alerts")
    quarantine_spike: Rule = Rule(channel="data_team")


class OperationsSettings(_Strict):
    timezone: str = Field("UTC", description="IANA zone every cron schedule is read in")
    work_pool: str = Field("indexops", pattern=SLUG)
    workspace: str = "./.demo/workspace"
    config_path: str = "configs/default.yaml"
    queries: str = "indexops/sample_data/queries.jsonl"
    qrels: str = "indexops/sample_data/qrels/test.tsv"
    reports_dir: str = "./.demo/reports"
    feeds: list[FeedDeployment] = Field(default_factory=list)
    evaluate_cron: str = "0 * * * *"
    nightly_regression_cron: str = "0 2 * * *"
    drift_report_cron: str = "30 6 * * *"
    maintenance_cron: str = "0 4 * * 0"
    ingest_concurrency_limit: str = Field("indexops-ingest", description="Prefect global concurrency limit (1 slot) every ingest occupies")
    alerts: AlertsSettings = AlertsSettings()

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v

    @field_validator("evaluate_cron", "nightly_regression_cron", "drift_report_cron", "maintenance_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        return _cron_ok(v)

    @model_validator(mode="after")
    def _unique_feeds(self) -> "OperationsSettings":
        names = [f.name for f in self.feeds]
        if len(set(names)) != len(names):
            raise ValueError(f"feed names must be unique: {names}")
        return self


def load_operations(path: str | Path) -> OperationsSettings:
    """Read and validate an operations YAML.

    Raises:
        FileNotFoundError: no such file.
        pydantic.ValidationError: a key is unknown or a value is invalid (e.g. a literal secret).
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"operations config not found: {p}")
    return OperationsSettings.model_validate(yaml.safe_load(p.read_text()) or {})


# ------------------------------------------------------------------------------------------
# Deployments
# ------------------------------------------------------------------------------------------


def deployment_specs(ops: OperationsSettings) -> list[dict[str, Any]]:
    """Every deployment as a prefect.yaml entry: per-feed ingest, evaluate, nightly, drift, maintenance."""
    pool = {"name": ops.work_pool, "work_queue_name": "default"}
    cron = lambda expr: [{"cron": expr, "timezone": ops.timezone}]  # noqa: E731
    base = {"workspace": ops.workspace, "config_path": ops.config_path}
    out: list[dict[str, Any]] = []
    for f in ops.feeds:
        out.append({
            "name": f"ingest-{f.name}",
            "description": f"Apply pending changes of feed '{f.name}' ({f.path}) every {f.interval_minutes} min and publish a snapshot id.",
            "entrypoint": "flows/ingest.py:ingest",
            "tags": ["indexops", "ingest", f"feed:{f.name}"],
            "parameters": {"feed_path": f.path, **base, "source_kind": f.source_kind, "feed_name": f.name, "lock_wait_s": 60},
            "work_pool": pool,
            "schedules": [{"interval": f.interval_minutes * 60, "timezone": ops.timezone}],
            "concurrency_limit": 1,
        })
    evalp = {**base, "queries": ops.queries, "qrels": ops.qrels}
    out += [
        {"name": "evaluate-live", "description": "Hourly recall@k / nDCG / MRR of the live snapshot on the labeled queries; fails under the floor.",
         "entrypoint": "flows/evaluate.py:evaluate", "tags": ["indexops", "evaluate"], "parameters": evalp,
         "work_pool": pool, "schedules": cron(ops.evaluate_cron), "concurrency_limit": 1},
        {"name": "nightly_regression-live", "description": "Nightly paired comparison of the live index with the pinned baseline; fails (and pages owners) on a significant drop.",
         "entrypoint": "flows/nightly_regression.py:nightly_regression", "tags": ["indexops", "regression"], "parameters": evalp,
         "work_pool": pool, "schedules": cron(ops.nightly_regression_cron), "concurrency_limit": 1},
        {"name": "drift_report-daily", "description": "Daily drift report (quality, corpus, embeddings, coverage) as HTML + Prefect artifacts.",
         "entrypoint": "flows/drift_report.py:drift_report", "tags": ["indexops", "report"],
         "parameters": {**base, "out_dir": ops.reports_dir}, "work_pool": pool, "schedules": cron(ops.drift_report_cron), "concurrency_limit": 1},
        {"name": "maintenance-weekly", "description": "Reconcile every point of the index with the ledger, repair, optimize the store; fails (and alerts) when drift remains.",
         "entrypoint": "flows/maintenance.py:maintenance", "tags": ["indexops", "maintenance"],
         "parameters": {**base, "lock_wait_s": 900}, "work_pool": pool, "schedules": cron(ops.maintenance_cron), "concurrency_limit": 1},
    ]
    return out


def render_prefect_yaml(ops: OperationsSettings, source: str = "configs/operations.yaml") -> str:
    """The prefect.yaml text for `prefect deploy --all` (generated: edit the operations config)."""
    doc = {"name": "indexops", "prefect-version": "3.9.1", "deployments": deployment_specs(ops)}
    head = (f"# GENERATED from {source} by `indexops deployments render` -- edit that file, not this one.\n"
            "# Register:  make deploy   (work pool + concurrency limit + `prefect deploy --all` + a worker)\n")
    return head + yaml.dump(doc, Dumper=_NoAliasDumper, sort_keys=False, width=120)


class _NoAliasDumper(yaml.SafeDumper):
    """Writes repeated values out in full: the file is read by people, not only by Prefect."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


# ------------------------------------------------------------------------------------------
# Alerts: what each automation matches and what its message says
# ------------------------------------------------------------------------------------------

_RUN_BODY = """indexops alert: {{ flow.name }} run '{{ flow_run.name }}' is {{ flow_run.state.name }}
Deployment: {{ deployment.name if deployment and deployment.name else '(run outside a deployment)' }}
Feed: {{ flow_run.parameters.get('feed_name') or flow_run.parameters.get('feed_path') or '-' }}
Workspace: {{ flow_run.parameters.get('workspace', '-') }}
What failed: {{ (flow_run.state.message or 'no message')[:1500] }}
Flow run: {{ flow_run|ui_url UI_FALLBACK}}
"""

_SPIKE_BODY = """indexops alert: quarantine spike in feed '{{ event.payload.feed }}'
{{ event.payload.quarantined }} of {{ event.payload.received }} records quarantined ({{ '%.1f' % (100 * event.payload.rate) }}%, threshold {{ '%.1f' % (100 * event.payload.threshold) }}%)
Top reasons: {{ event.payload.top_reasons }}
Files: {{ event.payload.files }}
Snapshot after the run: {{ event.payload.snapshot_id }}
Flow run: {{ flow_run|ui_url UI_FALLBACK}}
Inspect: indexops quarantine list --workspace {{ event.payload.workspace }}
"""


def _stale_body(what: str, window_s: float, ui: str | None) -> str:
    hours = window_s / 3600
    link = f"{ui.rstrip('/')}/deployments" if ui else "the Prefect UI, Deployments page"
    return (f"indexops alert: no completed {what} in the last {hours:.2f} h - the index may be stale.\n"
            f"Check that the work pool's worker is running and the deployment's schedule is active: {link}\n")


def _flow_run_trigger(flow_name: str, states: list[str], deployment: str | None = None) -> dict[str, Any]:
    related: list[dict[str, str]] = [{"prefect.resource.role": "flow", "prefect.resource.name": flow_name}]
    if deployment:
        related.append({"prefect.resource.role": "deployment", "prefect.resource.name": deployment})
    return {"type": "event", "posture": "Reactive", "expect": [f"prefect.flow-run.{s}" for s in states],
            "match": {"prefect.resource.id": "prefect.flow-run.*"}, "match_related": related,
            "threshold": 1, "within": 0}


def _with_ui(body: str, ui: str | None) -> str:
    """Links come from the server's PREFECT_UI_URL; `alerts.ui_url` is the fallback when it has none."""
    fallback = f"or ('{ui.rstrip('/')}/runs/flow-run/' ~ flow_run.id) " if ui else ""
    return body.replace("UI_FALLBACK", fallback)


def automation_specs(ops: OperationsSettings) -> list[dict[str, Any]]:
    """One dict per automation: name, description, trigger (Prefect trigger JSON), channel, subject, body."""
    a = ops.alerts
    specs: list[dict[str, Any]] = []
    if a.ingest_failed.enabled:
        specs.append({"name": "indexops: ingest failed or crashed", "channel": a.ingest_failed.channel,
                      "description": "An ingest run ended Failed or Crashed: the index is not being updated.",
                      "trigger": _flow_run_trigger("ingest", ["Failed", "Crashed"]),
                      "subject": "[indexops] ingest {{ flow_run.state.name }}: {{ deployment.name if deployment and deployment.name else flow_run.name }}",
                      "body": _with_ui(_RUN_BODY, a.ui_url)})
    if a.nightly_failed.enabled:
        specs.append({"name": "indexops: nightly regression failed", "channel": a.nightly_failed.channel,
                      "description": "The nightly regression eval failed: retrieval quality dropped against the baseline (or the run broke).",
                      "trigger": _flow_run_trigger("nightly_regression", ["Failed", "Crashed"]),
                      "subject": "[indexops] nightly regression {{ flow_run.state.name }}", "body": _with_ui(_RUN_BODY, a.ui_url)})
    if a.nightly_stale.enabled:
        t = _flow_run_trigger("nightly_regression", ["Completed"])
        t.update(posture="Proactive", within=a.nightly_stale_after_s)
        specs.append({"name": "indexops: no nightly regression", "channel": a.nightly_stale.channel,
                      "description": f"No nightly regression completed for {a.nightly_stale_after_s / 3600:.1f} h.",
                      "trigger": t, "subject": "[indexops] no completed nightly regression",
                      "body": _stale_body("nightly regression", a.nightly_stale_after_s, a.ui_url)})
    if a.ingest_stale.enabled:
        for f in ops.feeds:
            window = a.ingest_stale_intervals * f.interval_minutes * 60
            t = _flow_run_trigger("ingest", ["Completed"], deployment=f"ingest-{f.name}")
            t.update(posture="Proactive", within=max(window, 10.0))
            specs.append({"name": f"indexops: feed {f.name} stale", "channel": a.ingest_stale.channel,
                          "description": f"No completed ingest of feed {f.name} for {a.ingest_stale_intervals:g} schedule intervals.",
                          "trigger": t, "subject": f"[indexops] feed {f.name}: no completed ingest",
                          "body": _stale_body(f"ingest of feed '{f.name}' (deployment ingest-{f.name})", window, a.ui_url)})
    if a.quarantine_spike.enabled:
        specs.append({"name": "indexops: quarantine spike", "channel": a.quarantine_spike.channel,
                      "description": "An ingest run quarantined more records than ingest.quarantine_spike_fraction allows.",
                      "trigger": {"type": "event", "posture": "Reactive", "expect": [QUARANTINE_SPIKE_EVENT],
                                  "match": {"prefect.resource.id": "indexops.feed.*"}, "threshold": 1, "within": 0},
                      "subject": "[indexops] quarantine spike in feed {{ event.payload.feed }}", "body": _with_ui(_SPIKE_BODY, a.ui_url)})
    missing = sorted({s["channel"] for s in specs} - set(a.channels))
    if missing:  # a rule that tells nobody is a config error, not a silent drop
        raise ValueError(f"alert rules name channel(s) {missing} that alerts.channels does not define "
                         "(configure them, or pass --webhook-url for a quick start)")
    return specs


def with_quickstart_webhook(ops: OperationsSettings, url_ref: str) -> OperationsSettings:
    """Route every rule to one generic webhook (the `--webhook-url` quick start)."""
    dest = Destination(kind="webhook", url=url_ref)
    chans = {r.channel for r in (ops.alerts.ingest_failed, ops.alerts.nightly_failed, ops.alerts.nightly_stale,
                                 ops.alerts.ingest_stale, ops.alerts.quarantine_spike)}
    alerts = ops.alerts.model_copy(update={"channels": {c: [dest] for c in sorted(chans)}})
    return ops.model_copy(update={"alerts": alerts})


def block_name(channel: str, index: int, dest: Destination) -> str:
    """Stable block document name, so re-running setup overwrites instead of adding."""
    slug = re.sub(r"[^a-z0-9-]+", "-", channel.lower()).strip("-") or "channel"
    return f"indexops-{slug}-{index}-{dest.kind}"


def email_apprise_url(d: Destination, password: str | None) -> str:
    """Apprise mailto URL for an SMTP destination (the password is inserted, URL-quoted, here only)."""
    from urllib.parse import quote

    scheme = "mailtos" if d.smtp_mode in ("ssl", "starttls") else "mailto"
    auth = ""
    if d.smtp_username:
        auth = quote(d.smtp_username, safe="") + (":" + quote(password, safe="") if password else "") + "@"
    q = f"to={','.join(d.to)}&from={quote(d.from_addr or '', safe='@')}&smtp={d.smtp_server}"
    if d.smtp_mode != "insecure":
        q += f"&mode={d.smtp_mode}"
    return f"{scheme}://{auth}{d.smtp_server}:{d.smtp_port}?{q}"
