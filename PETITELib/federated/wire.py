"""What crosses the wire: a FLARE filter that passes adapter tensors and small metadata only.

:class:`AdapterOnlyFilter` is a FLARE task-result filter. On a site it checks every result the
site is about to send; on the server, every result as it arrives (after the network). A result
passes only if its data are either exactly the federation's adapter tensors (the plan's names,
float32 arrays of the plan's shapes) or validation metrics (numbers), and its metadata hold no
array, tensor or byte string anywhere. Anything else - an image, a crop, a base weight, an extra
tensor - is blocked (FLARE's ``ContentBlockedException``: the task fails, nothing is sent on).

Each result is also recorded, one JSON line per result in ``record`` (in the job's run folder of
the site or server): task, round, site, the result's size as FLARE serialises it for the network
(FOBS), the tensors' names, shapes, dtypes and bytes, and the metadata keys. ``petite federated
simulate`` reads the server's record to report the bytes each site sent per round.
"""
from __future__ import annotations

import json
import numbers
from pathlib import Path
from typing import List

import numpy as np
from nvflare.apis.dxo import DataKind, from_shareable
from nvflare.apis.filter import ContentBlockedException, Filter
from nvflare.apis.fl_constant import FLContextKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.app_constant import AppConstants

from .plan import PLAN_FILE, FederationPlan, read_plan

RECORD_FILE = "petite_wire.jsonl"
_SCALARS = (str, bool, numbers.Number, type(None))


def _bulk_values(value, path: str) -> List[str]:
    """Paths of array-like or byte values inside nested metadata (what must not ride along)."""
    if isinstance(value, dict):
        return [p for key, item in value.items() for p in _bulk_values(item, f"{path}.{key}")]
    if isinstance(value, (list, tuple)):
        return [p for i, item in enumerate(value) for p in _bulk_values(item, f"{path}[{i}]")]
    return [] if isinstance(value, _SCALARS) else [f"{path} ({type(value).__name__})"]


def inspect_result(dxo, plan: FederationPlan) -> dict:
    """What a result carries and what is wrong with it (``problems``: empty when it may pass)."""
    problems: List[str] = []
    data = dxo.data if isinstance(dxo.data, dict) else {}
    tensors = {}
    if dxo.data_kind == DataKind.WEIGHTS:
        for name, value in data.items():
            expected = plan.adapter_tensors.get(name)
            if not isinstance(value, np.ndarray):
                problems.append(f"{name} is a {type(value).__name__}, not an array")
                continue
            tensors[name] = {"shape": list(value.shape), "dtype": str(value.dtype), "bytes": int(value.nbytes)}
            if expected is None:
                problems.append(f"{name} is not an adapter tensor")
            elif list(value.shape) != expected or value.dtype != np.float32:
                problems.append(f"{name} is {value.dtype}{list(value.shape)}, expected float32{expected}")
        missing = sorted(set(plan.adapter_tensors) - set(data))
        if missing:
            problems.append(f"adapter tensors missing: {missing[:3]}")
    elif dxo.data_kind == DataKind.METRICS:
        problems += [f"metric {k} is a {type(v).__name__}" for k, v in data.items() if not isinstance(v, numbers.Number)]
    else:
        problems.append(f"data of kind {dxo.data_kind} (only adapter weights or metrics may pass)")
    problems += [f"metadata {p}" for p in _bulk_values(dxo.meta or {}, "meta")]
    return {"kind": dxo.data_kind, "tensors": tensors, "tensor_bytes": sum(t["bytes"] for t in tensors.values()),
            "metric_keys": sorted(data) if dxo.data_kind == DataKind.METRICS else [],
            "meta_keys": sorted(dxo.meta or {}), "problems": problems}


class AdapterOnlyFilter(Filter):
    """Task-result filter that blocks anything but adapter tensors and metrics, and records each result."""

    def __init__(self, record: str = RECORD_FILE):
        super().__init__()
        self.record = record
        self._plan = None

    def _workspace_paths(self, fl_ctx: FLContext):
        workspace = fl_ctx.get_engine().get_workspace()
        job_id = fl_ctx.get_job_id()
        return Path(workspace.get_app_config_dir(job_id)), Path(workspace.get_run_dir(job_id))

    def process(self, shareable: Shareable, fl_ctx: FLContext) -> Shareable:
        from nvflare.apis.fl_constant import ReturnCode
        from nvflare.fuel.utils import fobs

        if shareable.get_return_code(ReturnCode.OK) != ReturnCode.OK:
            return shareable  # an error report carries no data
        config_dir, run_dir = self._workspace_paths(fl_ctx)
        if self._plan is None:
            self._plan = read_plan(config_dir / PLAN_FILE)
        me = fl_ctx.get_identity_name()
        peer = fl_ctx.get_peer_context()
        site = me if me in {s.name for s in self._plan.sites} else (peer.get_identity_name() if peer else "?")
        report = inspect_result(from_shareable(shareable), self._plan)
        entry = {"at": me, "site": site, "task": fl_ctx.get_prop(FLContextKey.TASK_NAME),
                 "round": shareable.get_header(AppConstants.CURRENT_ROUND), "bytes": len(fobs.dumps(shareable)),
                 **report}
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / self.record, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
        if report["problems"]:
            message = f"PETITE blocked a result of site {site}: {'; '.join(report['problems'][:3])}"
            self.log_error(fl_ctx, message)
            raise ContentBlockedException(message)
        return shareable
