"""The pipeline: one nightly run as stages, each a sibling that never imports another
(`ingest`, `learn`, `decide`, `serve`, `observe`, and `watch`, which `recsys_watch` runs), over
the run's context (`context`), what stages read back (`inputs`), notices (`notify`) and metrics
(`telemetry`). Plain arguments in, small dicts out.

Each stage reads and writes artifacts keyed by run, so a retried task redoes its own work
and nothing else; tasks hand each other keys, ids, counts and metrics, never frames.
"""

from recsys_tasks.pipeline.context import RunContext
from recsys_tasks.pipeline.decide import evaluate, gate
from recsys_tasks.pipeline.ingest import extract, prepare, validate
from recsys_tasks.pipeline.learn import finetune, pretrain
from recsys_tasks.pipeline.observe import track_outcomes
from recsys_tasks.pipeline.serve import companion_lists, generate, mark_failed, plan_shards, production_model, publish
from recsys_tasks.pipeline.watch import watch

__all__ = [
    "RunContext",
    "extract",
    "validate",
    "prepare",
    "pretrain",
    "finetune",
    "track_outcomes",
    "evaluate",
    "gate",
    "plan_shards",
    "generate",
    "companion_lists",
    "publish",
    "mark_failed",
    "production_model",
    "watch",
]
