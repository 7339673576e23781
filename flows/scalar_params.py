"""A flow whose parameters are JSON scalars is recorded without FastAPI's encoder.

Prefect serialises a flow run's parameters with `fastapi.encoders.jsonable_encoder`, and the first
call imports FastAPI and Starlette: ~0.2 s of a 3-s `indexops ingest` with nothing to do. Strings,
numbers, booleans and None are already what that encoder returns, so they are passed as they are;
any other value goes through Prefect's own path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import Flow


class ScalarParamsFlow(Flow):  # type: ignore[type-arg]
    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        if all(v is None or isinstance(v, (str, int, float, bool)) for v in parameters.values()):
            return dict(parameters)
        return super().serialize_parameters(parameters)


def scalar_params_flow(**options: Any) -> Callable[[Callable[..., Any]], ScalarParamsFlow]:
    """`@flow(**options)` for a flow called with JSON scalars (falls back to Prefect's encoder otherwise)."""
    return lambda fn: ScalarParamsFlow(fn=fn, **options)
