"""Multi-process training: call a function in N processes under torch's distributed launcher.

`launch(target, processes, device, **kwargs)` starts `python -m torch.distributed.run
--standalone --nproc_per_node=N -m recsys_tasks.learning.distributed SPEC`. Every worker imports
`target` by its module and name, joins the process group (NCCL on GPUs, gloo on CPU) and calls
`target(**kwargs)`; `training.train` sees the group and trains with DDP. Rank 0's return value
comes back to the caller. This module knows no stage: the caller hands over a module-level
function and plain JSON arguments from which it rebuilds what it needs. Workers' output goes to
the caller's log.
"""

from __future__ import annotations

import importlib
import json
import logging
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from recsys_tasks.config import environment
from recsys_tasks.errors import RecsysError

log = logging.getLogger(__name__)

def is_worker() -> bool:
    """Whether this process is a launched training process (which must not launch again)."""
    return environment.is_distributed_worker()


def target_name(target: Callable[..., Any]) -> str:
    """"module:name" of a function a fresh process can import (no lambdas, no closures)."""
    name = f"{target.__module__}:{target.__qualname__}"
    module, _, qualname = name.partition(":")
    if getattr(importlib.import_module(module), qualname, None) is not target:
        raise ValueError(f"{name} cannot be imported by name in a worker: pass a module-level function")
    return name


def launch(target: Callable[..., Any], processes: int, device: str = "auto", **kwargs: Any) -> Any:
    """`target(**kwargs)` in `processes` processes; rank 0's return value (JSON-able, as are kwargs).

    `device`: "auto" or "cuda" use NCCL when CUDA is present, anything else gloo.
    """
    name = target_name(target)
    with tempfile.TemporaryDirectory(prefix="recsys-ddp-") as folder:
        spec, out = Path(folder) / "spec.json", Path(folder) / "result.json"
        spec.write_text(json.dumps({"target": name, "device": device, "kwargs": kwargs, "out": str(out)}))
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "recsys_tasks.learning.distributed", str(spec),
        ]
        log.info("%s: launching %d training processes: %s", name, processes, " ".join(command))
        finished = subprocess.run(command, env=environment.worker_environment(), check=False)
        if finished.returncode != 0 or not out.exists():
            raise RecsysError(f"{name} failed in its training processes (exit {finished.returncode}); see the log above")
        return json.loads(out.read_text())


def main(spec_path: str) -> None:
    logging.basicConfig(
        level=logging.INFO, format=f"[rank {environment.process_rank()}] %(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    spec = json.loads(Path(spec_path).read_text())
    module, _, qualname = spec["target"].partition(":")
    target = getattr(importlib.import_module(module), qualname)
    gpus = torch.cuda.is_available() and spec["device"] in ("auto", "cuda")
    dist.init_process_group("nccl" if gpus else "gloo")
    if gpus:
        torch.cuda.set_device(environment.local_rank() or 0)
    try:
        result = target(**spec["kwargs"])
        if dist.get_rank() == 0:
            Path(spec["out"]).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
