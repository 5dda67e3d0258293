"""Multi-process training: a stage re-run under torch's distributed launcher (torchrun).

The Airflow task (one process) calls `launch`, which starts `python -m torch.distributed.run
--standalone --nproc_per_node=N -m recsys_tasks.distributed SPEC`. Every worker rebuilds the
run's context from SPEC, joins the process group (NCCL on GPUs, gloo on CPU) and runs the same
stage function; `training.train` sees the group and trains with DDP. Rank 0 writes the
artifacts and the stage's result, which `launch` returns to the task. Workers' output goes to
the task log.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from recsys_tasks.config import PipelineConfig
from recsys_tasks.errors import RecsysError

log = logging.getLogger(__name__)

WORKER_ENV = "RECSYS_DISTRIBUTED_WORKER"  # set in workers, so a stage does not launch again


def is_worker() -> bool:
    return os.environ.get(WORKER_ENV) == "1"


def launch(run_id: str, config: PipelineConfig, stage: str, processes: int, **kwargs: Any) -> dict:
    """Run `recsys_tasks.stages.learn.<stage>(run, **kwargs)` in `processes` processes; rank 0's result."""
    with tempfile.TemporaryDirectory(prefix="recsys-ddp-") as folder:
        spec, out = Path(folder) / "spec.json", Path(folder) / "result.json"
        spec.write_text(json.dumps({
            "run_id": run_id, "config": config.to_dict(), "stage": stage, "kwargs": kwargs, "out": str(out),
        }))
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            "-m", "recsys_tasks.distributed", str(spec),
        ]
        log.info("%s: launching %d training processes: %s", stage, processes, " ".join(command))
        env = {**os.environ, WORKER_ENV: "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        finished = subprocess.run(command, env=env, check=False)
        if finished.returncode != 0 or not out.exists():
            raise RecsysError(f"{stage} failed in its training processes (exit {finished.returncode}); see the log above")
        return json.loads(out.read_text())


def main(spec_path: str) -> None:
    from recsys_tasks.stages import learn
    from recsys_tasks.stages.context import RunContext

    logging.basicConfig(level=logging.INFO, format=f"[rank {os.environ.get('RANK', '?')}] %(asctime)s %(levelname)s %(name)s: %(message)s")
    spec = json.loads(Path(spec_path).read_text())
    config = PipelineConfig.from_dict(spec["config"])
    gpus = torch.cuda.is_available() and config.train.device in ("auto", "cuda")
    dist.init_process_group("nccl" if gpus else "gloo")
    if gpus:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    try:
        result = getattr(learn, spec["stage"])(RunContext(spec["run_id"], config), **spec["kwargs"])
        if dist.get_rank() == 0:
            Path(spec["out"]).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
