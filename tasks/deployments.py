"""What `prefect deploy` needs to exist first: the process work pool and the ingest concurrency limit."""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate, WorkPoolCreate
from prefect.exceptions import ObjectNotFound

from indexops.operations import OperationsSettings


def prepare_deploy(ops: OperationsSettings, ingest_limit: str | None) -> list[str]:
    """Create the work pool and a one-slot global concurrency limit if missing; say what was done."""
    done: list[str] = []
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(ops.work_pool)
            done.append(f"work pool {ops.work_pool} exists")
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=ops.work_pool, type="process", description="indexops flows"))
            done.append(f"work pool {ops.work_pool} (process) created")
        if ingest_limit:
            try:
                client.read_global_concurrency_limit_by_name(ingest_limit)
                done.append(f"global concurrency limit {ingest_limit} exists")
            except ObjectNotFound:
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=ingest_limit, limit=1))
                done.append(f"global concurrency limit {ingest_limit} (1 slot) created")
    return done
