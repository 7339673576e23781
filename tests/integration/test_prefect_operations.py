"""Operating indexops in Prefect, against a real `prefect server start` on a loopback port:
`prefect deploy` of every deployment, a failing deployment run paging a loopback webhook through
an automation, the proactive (staleness) automation, and idempotent `alerts setup`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import CHROMIUM, REPO, free_port, write_jsonl
from tests.webhook_receiver import Receiver

BIN = Path(sys.executable).parent
HASHING = REPO / "configs" / "hashing.yaml"
CAPTURE = REPO / "tests" / "artifacts" / "captured-alert.json"


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _env(api: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PREFECT_API_URL=api, **extra)
    return env


def _run(args: list[str], api: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    p = subprocess.run(args, cwd=REPO, env=_env(api, **env), capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{args}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _ops_yaml(tmp_path: Path, **over) -> Path:
    base = yaml.safe_load((REPO / "configs" / "operations.yaml").read_text())
    base.update(over)
    p = tmp_path / "operations.yaml"
    p.write_text(yaml.safe_dump(base))
    return p


def _deploy_feed(api: str, tmp_path: Path, feed_name: str, feed: Path, ws: Path, settings: Path) -> tuple[str, Path]:
    """Render, prepare and `prefect deploy` one feed's ingest deployment on its own work pool."""
    pool = f"pool-{free_port()}"
    ops = _ops_yaml(tmp_path, work_pool=pool, workspace=str(ws), config_path=str(settings),
                    feeds=[{"name": feed_name, "path": str(feed), "interval_minutes": 60}])
    dep_file = tmp_path / "prefect.yaml"
    _run([str(BIN / "indexops"), "deployments", "render", "--config", str(ops), "--out", str(dep_file)], api)
    _run([str(BIN / "indexops"), "deployments", "prepare", "--config", str(ops)], api)
    _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--prefect-file", str(dep_file), "--name", f"ingest-{feed_name}"], api, timeout=600)
    return pool, ops


def _automations(api: str) -> list:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        return [a for a in c.read_automations() if "indexops" in (a.tags or [])]


def _cleanup(api: str) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        for a in c.read_automations():
            if "indexops" in (a.tags or []):
                c.delete_automation(a.id)


@pytest.fixture(scope="module")
def deployed(prefect_server):
    """What `make deploy` does before starting a worker: check, prepare, `prefect deploy --all`."""
    _run([str(BIN / "indexops"), "deployments", "render", "--check"], prefect_server)
    _run([str(BIN / "indexops"), "deployments", "prepare"], prefect_server)
    _run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", "deployments/prefect.yaml"], prefect_server, timeout=600)
    return prefect_server


def test_prefect_deploy_registers_every_deployment_with_its_schedule(deployed, prefect_api):
    from prefect.client.orchestration import get_client

    from indexops.operations import deployment_specs, load_operations

    ops = load_operations(REPO / "configs" / "operations.yaml")
    specs = deployment_specs(ops)
    assert {s["name"] for s in specs} >= {"ingest-helpcenter", "evaluate-live", "nightly_regression-live", "drift_report-daily", "maintenance-weekly"}
    with get_client(sync_client=True) as c:
        for s in specs:
            flow_name = s["entrypoint"].rsplit(":", 1)[1]
            d = c.read_deployment_by_name(f"{flow_name}/{s['name']}")
            assert d.work_pool_name == ops.work_pool
            assert set(s["tags"]) <= set(d.tags)
            assert d.parameters == s["parameters"]
            (sched,) = d.schedules
            want = s["schedules"][0]
            got = sched.schedule
            if "cron" in want:
                assert (got.cron, got.timezone) == (want["cron"], ops.timezone)
            else:
                assert (got.interval.total_seconds(), got.timezone) == (want["interval"], ops.timezone)
        assert c.read_global_concurrency_limit_by_name("indexops-ingest").limit == 1
    nightly = next(s for s in specs if s["name"] == "nightly_regression-live")
    assert nightly["schedules"][0]["cron"] == "0 2 * * *"


def _pages_for_run(api: str, flow_run_id: str, timeout: float = 60.0) -> int:
    """The alert actions one flow run caused, once all are in. The enabled reactive triggers fire once
    per expected event (threshold 1, within 0), so: wait until each of the run's events that a trigger
    expects has an automation action triggered by it, and every such action has finished (executed or
    failed); then count them. Nothing later can add a page for this run."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter
    from prefect.settings import PREFECT_API_URL, temporary_settings

    expect: set[str] = set()
    for a in _automations(api):
        t = a.trigger
        if a.enabled and t.posture == "Reactive":
            assert t.threshold == 1 and t.within.total_seconds() == 0, (a.name, t)
            expect |= set(t.expect)
    deadline = time.time() + timeout
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as c:
        while True:
            run_events = c.read_events(EventFilter(event=EventNameFilter(name=sorted(expect)),
                                                   resource=EventResourceFilter(id=[f"prefect.flow-run.{flow_run_id}"])), limit=50).events
            actions = c.read_events(EventFilter(event=EventNameFilter(prefix=["prefect.automation.action."])), limit=50).events
            wanted = {f"prefect.event.{e.id}" for e in run_events}
            acted = {e.id for e in actions if e.event.endswith(".triggered") and wanted & {r.id for r in e.related}}
            finished = {e.follows for e in actions if e.event.endswith((".executed", ".failed"))}
            by = {r.id for e in actions if e.id in acted for r in e.related}
            if wanted and wanted <= by and acted <= finished:
                return len(acted)
            assert time.time() < deadline, f"the run's alert actions did not settle in {timeout:.0f} s: {[e.event for e in actions]}"
            time.sleep(0.5)


def test_failing_ingest_deployment_pages_once_with_what_on_call_needs(prefect_api, tmp_path, receiver):
    """A deployment run that fails in validate_batch reaches the loopback webhook exactly once
    within 30 s; the message names flow, deployment, task, error, feed, snapshot and the run's URL."""
    feed, ws = tmp_path / "feed" / "payments", tmp_path / "ws"
    write_jsonl(feed / "000001-good.jsonl", [{"id": f"p{i}", "text": f"refund policy {i} for card payments"} for i in range(6)])
    # the first ingest (no deployment) succeeds and publishes a snapshot
    code = ("import json\nfrom flows.ingest import ingest\n"
            f"s = ingest(feed_path={str(feed)!r}, workspace={str(ws)!r}, config_path={str(HASHING)!r}, feed_name='payments')\n"
            "print(json.dumps(s['snapshot']['snapshot_id']))")
    sid = json.loads(_run([sys.executable, "-c", code], prefect_api).stdout.strip().splitlines()[-1])
    # then a batch arrives that is mostly broken: validation rejects it and the run fails
    write_jsonl(feed / "000002-broken.jsonl", [{"title": "no id"}, {"id": 5, "text": None}, {"id": "p9", "text": "fine"}])

    pool, ops = _deploy_feed(prefect_api, tmp_path, "payments", feed, ws, HASHING)
    try:
        _run([str(BIN / "indexops"), "alerts", "setup", "--config", str(ops), "--webhook-url", receiver.url], prefect_api)
        out = _run([str(BIN / "prefect"), "deployment", "run", "ingest/ingest-payments"], prefect_api).stdout
        run_id = out.split("UUID:")[1].split()[0].strip()
        t0 = time.time()
        worker = subprocess.run([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--run-once"], cwd=REPO,
                                env=_env(prefect_api), capture_output=True, text=True, timeout=300)
        assert "validate_batch" in (worker.stdout + worker.stderr), worker.stdout[-3000:] + worker.stderr[-3000:]
        got = receiver.wait(1, 30)
        elapsed = time.time() - t0
        assert got, f"no alert reached the webhook within 30 s of the run ending ({elapsed:.0f} s)"
        assert _pages_for_run(prefect_api, run_id) == 1  # not a second (duplicate action, Crashed after Failed)
        assert len(receiver.bodies) == 1, receiver.bodies
        body, subject = got[0]["body"], got[0]["subject"]
        assert "ingest Failed" in subject and "ingest-payments" in subject
        for needed in ("ingest", "Deployment: ingest-payments", "validate_batch", "000002-broken.jsonl", "Feed: payments",
                       sid[:16], "threshold", "/runs/flow-run/"):
            assert needed in body, f"{needed!r} missing from the alert:\n{body}"
        assert receiver.url not in json.dumps(got)
        CAPTURE.parent.mkdir(parents=True, exist_ok=True)
        CAPTURE.write_text(json.dumps(got[0], indent=2))
    finally:
        _cleanup(prefect_api)


def test_proactive_automation_fires_when_nothing_completes(prefect_api, tmp_path, receiver):
    """The 'no nightly regression for 26 h' automation, with its window shortened to 10 s."""
    alerts = yaml.safe_load((REPO / "configs" / "operations.yaml").read_text())["alerts"]
    alerts.update(nightly_stale_after_s=10, ingest_failed={"channel": "oncall", "enabled": False},
                  nightly_failed={"channel": "owners", "enabled": False}, quarantine_spike={"channel": "data_team", "enabled": False},
                  ingest_stale={"channel": "oncall", "enabled": False})
    ops = _ops_yaml(tmp_path, alerts=alerts, feeds=[])
    try:
        _run([str(BIN / "indexops"), "alerts", "setup", "--config", str(ops), "--webhook-url", receiver.url], prefect_api)
        got = receiver.wait(1, 90)
        assert got, "the proactive automation did not fire within 90 s of a 10 s window"
        assert "no completed nightly regression" in got[0]["subject"]
        assert "stale" in got[0]["body"]
    finally:
        _cleanup(prefect_api)


def test_alerts_setup_twice_creates_no_duplicates(prefect_api, tmp_path):
    from prefect.client.orchestration import get_client

    ops = _ops_yaml(tmp_path)
    env = {"INDEXOPS_ONCALL_SLACK_WEBHOOK": "https://hooks.slack.com/services/T000/B000/XXXXSECRET",
           "INDEXOPS_ONCALL_WEBHOOK": "https://pager.example.com/hook/SECRET-TOKEN",
           "INDEXOPS_OWNERS_TEAMS_WEBHOOK": ("https://prod-01.westus.logic.azure.com:443/workflows/abc123/triggers/manual/paths/invoke"
                                             "?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=SECRETSIG"),
           "INDEXOPS_SMTP_PASSWORD": "smtp-SECRET-pw"}
    try:
        first = _run([str(BIN / "indexops"), "alerts", "setup", "--config", str(ops)], prefect_api, **env)
        assert "created" in first.stdout  # (blocks of other configs set up earlier are removed)
        before = sorted(a.name for a in _automations(prefect_api))
        second = _run([str(BIN / "indexops"), "alerts", "setup", "--config", str(ops)], prefect_api, **env)
        assert "created" not in second.stdout and "updated" in second.stdout
        after = sorted(a.name for a in _automations(prefect_api))
        assert before == after and len(after) == len(set(after)) == 6  # failed, nightly failed, no nightly, 2 feeds stale, spike
        for out in (first, second):  # the CLI never echoes a secret
            assert not any(v in out.stdout + out.stderr for v in env.values())
        with get_client(sync_client=True) as c:
            docs = [b for b in c.read_block_documents(include_secrets=False) if b.name and b.name.startswith("indexops-")]
        names = [b.name for b in docs]
        assert len(names) == len(set(names)) == 4
        assert not any(v in json.dumps([b.model_dump(mode="json") for b in docs]) for v in env.values())
    finally:
        _cleanup(prefect_api)


def test_alerts_setup_names_a_missing_secret_without_a_traceback(prefect_api, tmp_path):
    ops = _ops_yaml(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("INDEXOPS_")}
    p = subprocess.run([str(BIN / "indexops"), "alerts", "setup", "--config", str(ops)], cwd=REPO, capture_output=True, text=True,
                       env=dict(env, PREFECT_API_URL=prefect_api), timeout=120)
    assert p.returncode == 2
    assert "INDEXOPS_ONCALL_SLACK_WEBHOOK is not set" in p.stderr and "Traceback" not in p.stderr


def test_quarantine_spike_event_reaches_the_data_team(prefect_api, tmp_path, receiver):
    """1 bad record in 10 lands the other 9 (under the 25% rejection threshold) but is a spike
    over the 2% alert threshold: the ingest flow emits the custom event, the automation forwards it."""
    cfg = yaml.safe_load(HASHING.read_text())
    cfg["validation"] = {"max_bad_fraction": 0.25}
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(cfg))
    feed, ws = tmp_path / "feed" / "kb", tmp_path / "ws"
    write_jsonl(feed / "000001-a.jsonl", [{"id": f"k{i}", "text": f"knowledge base article {i}"} for i in range(9)] + [{"id": "k9", "text": ""}])
    alerts = yaml.safe_load((REPO / "configs" / "operations.yaml").read_text())["alerts"]
    alerts.update(nightly_stale={"channel": "oncall", "enabled": False}, ingest_stale={"channel": "oncall", "enabled": False})
    ops = _ops_yaml(tmp_path, alerts=alerts, feeds=[])
    try:
        _run([str(BIN / "indexops"), "alerts", "setup", "--config", str(ops), "--webhook-url", receiver.url], prefect_api)
        _run([str(BIN / "indexops"), "ingest", "--feed", str(feed), "--workspace", str(ws), "--config", str(settings)], prefect_api)
        got = receiver.wait(1, 30)
        assert got, "no quarantine-spike alert within 30 s"
        assert "quarantine spike in feed kb" in got[0]["subject"]
        assert "1 of 10 records quarantined (10.0%, threshold 2.0%)" in got[0]["body"]
        assert "000001-a.jsonl" in got[0]["body"] and "/runs/flow-run/" in got[0]["body"]
    finally:
        _cleanup(prefect_api)


@pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is not installed (apt-get install chromium; .ci/run does)")
def test_prefect_ui_shows_the_deployments_and_the_latest_ingest_artifact(deployed, prefect_api, tmp_path):
    """Headless Chromium on the real UI: the Deployments page lists ours, and the latest ingest
    run's markdown artifact renders with its snapshot id."""
    from playwright.sync_api import sync_playwright
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    feed = tmp_path / "feed" / "uifeed"
    write_jsonl(feed / "000001-a.jsonl", [{"id": f"u{i}", "text": f"how to reset a password, variant {i}"} for i in range(4)])
    code = ("import json\nfrom flows.ingest import ingest\n"
            f"s = ingest(feed_path={str(feed)!r}, workspace={str(tmp_path / 'ws')!r}, config_path={str(HASHING)!r})\n"
            "print(json.dumps(s['snapshot']['snapshot_id']))")
    sid = json.loads(_run([sys.executable, "-c", code], prefect_api).stdout.strip().splitlines()[-1])
    with get_client(sync_client=True) as c:
        (art,) = c.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["ingest-uifeed"])), limit=1)
    ui = prefect_api.removesuffix("/api")
    shots = REPO / "tests" / "artifacts"
    shots.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--headless"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{ui}/deployments")
            for name in ("ingest-helpcenter", "evaluate-live", "nightly_regression-live", "drift_report-daily", "maintenance-weekly"):
                page.get_by_text(name, exact=True).first.wait_for(timeout=30_000)
            page.screenshot(path=str(shots / "prefect-ui-deployments.png"))
            page.goto(f"{ui}/artifacts/artifact/{art.id}")
            page.get_by_text(sid, exact=False).first.wait_for(timeout=30_000)
            assert "documents (re)indexed" in page.inner_text("body")
            page.screenshot(path=str(shots / "prefect-ui-ingest-artifact.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, errors


def _kill_flow_run_process(flow_run_id: str, timeout: float = 60) -> int:
    """SIGKILL the process the worker started for this flow run (found by its environment)."""
    import signal

    deadline = time.time() + timeout
    needle = f"PREFECT__FLOW_RUN_ID={flow_run_id}".encode()
    while time.time() < deadline:
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            try:
                if needle in (proc / "environ").read_bytes().split(b"\0"):
                    os.kill(int(proc.name), signal.SIGKILL)
                    return int(proc.name)
            except OSError:
                continue
        time.sleep(0.2)
    raise AssertionError(f"no process of flow run {flow_run_id} found")


def test_ingest_killed_with_sigkill_is_crashed_and_pages_once(prefect_api, tmp_path, receiver):
    """An ingest process killed by the OOM killer or a node loss cannot report anything itself:
    the worker marks the run Crashed and the same automation pages on-call."""
    from prefect.client.orchestration import get_client

    from indexops.index.context import open_index
    from indexops.settings import load_settings

    cfg = yaml.safe_load(HASHING.read_text())
    cfg["ingest"] = {"concurrency_limit": None}  # a killed holder's slot would stay leased for minutes
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(cfg))
    feed, ws = tmp_path / "feed" / "orders", tmp_path / "ws"
    write_jsonl(feed / "000001-a.jsonl", [{"id": f"o{i}", "text": f"order status {i}"} for i in range(3)])
    pool, ops = _deploy_feed(prefect_api, tmp_path, "orders", feed, ws, settings)
    ctx = open_index(ws, load_settings(settings))
    owner = ctx.ledger.acquire_lock(ctx.collection)  # the run will sit waiting for this lock (lock_wait_s 60)
    worker = None
    try:
        _run([str(BIN / "indexops"), "alerts", "setup", "--config", str(ops), "--webhook-url", receiver.url], prefect_api)
        out = _run([str(BIN / "prefect"), "deployment", "run", "ingest/ingest-orders"], prefect_api).stdout
        run_id = out.split("UUID:")[1].split()[0].strip()
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", pool, "--run-once"], cwd=REPO,
                                  env=_env(prefect_api), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with get_client(sync_client=True) as c:
            for _ in range(240):
                if c.read_flow_run(run_id).state.is_running():
                    break
                time.sleep(0.5)
        _kill_flow_run_process(run_id)
        worker.wait(120)
        got = receiver.wait(1, 30)
        assert got, "no alert within 30 s of the kill"
        assert _pages_for_run(prefect_api, run_id) == 1
        assert len(receiver.bodies) == 1, receiver.bodies
        assert "ingest Crashed" in got[0]["subject"] and "Deployment: ingest-orders" in got[0]["body"]
        assert "Feed: orders" in got[0]["body"] and f"/runs/flow-run/{run_id}" in got[0]["body"]
    finally:
        if worker and worker.poll() is None:
            worker.kill()
        ctx.ledger.release_lock(ctx.collection, owner)
        ctx.close()
        _cleanup(prefect_api)
