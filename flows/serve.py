"""One-machine setup without a work pool or worker: serve every deployment of the operations
config from this process (`python -m flows.serve`; Ctrl-C stops it). Same names, schedules and
parameters as `make deploy`, so moving to a work pool later changes nothing in the UI."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from prefect import serve
from prefect.schedules import Cron, Interval

from indexops.operations import OperationsSettings, deployment_specs, load_operations


def runner_deployments(ops: OperationsSettings, paused: bool = False) -> list[Any]:
    """`flow.to_deployment(...)` for every spec the operations config renders (`paused`: schedules
    off, so the deployments show in the UI and run only when triggered)."""
    out = []
    for spec in deployment_specs(ops):
        path, func = spec["entrypoint"].split(":")
        flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
        scheds = [Cron(s["cron"], timezone=s["timezone"]) if "cron" in s else Interval(s["interval"], timezone=s["timezone"])
                  for s in spec["schedules"]]
        out.append(flow.to_deployment(name=spec["name"], description=spec["description"], tags=spec["tags"],
                                      parameters=spec["parameters"], schedules=scheds, concurrency_limit=spec.get("concurrency_limit"),
                                      paused=paused))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default="configs/operations.yaml")
    ap.add_argument("--paused", action="store_true", help="register with schedules paused (the demo): runs start only by hand")
    args = ap.parse_args()
    serve(*runner_deployments(load_operations(args.config), paused=args.paused))


if __name__ == "__main__":
    main()
