"""`recsys`: the operator's command line (demo data, runs, validation, reports)."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from datetime import UTC
from typing import TYPE_CHECKING, Any

from recsys_tasks import db, interrupt
from recsys_tasks.config import PARAMS, WARM_START, PipelineConfig, environment, typed_params
from recsys_tasks.errors import RecsysError
from recsys_tasks.ops import runlog
from recsys_tasks.redact import redact
from recsys_tasks.storage import layout

if TYPE_CHECKING:
    from recsys_tasks.storage.deployment import Deployment

log = logging.getLogger("recsys_tasks.ops.cli")


def _parse_params(pairs: list[str]) -> dict[str, Any]:
    """`--param key=value` pairs as typed values (`top_k=20` -> 20); bad ones raise ConfigError."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise RecsysError(f"--param takes key=value, got {pair!r}")
        params[key.strip()] = value.strip()
    return typed_params(params)


def _config(params: dict[str, Any] | None = None, results_db: bool = True) -> PipelineConfig:
    """The config a DAG run would resolve: environment, the `recsys_db` connection (when the
    command uses the results database), params."""
    from recsys_tasks.config import config_from_env, environment, with_params

    if not results_db or environment.is_set("RECSYS_DB_URL"):  # no need to start Airflow to look up a connection
        return with_params(config_from_env(), params or {})
    from recsys_tasks import airflow_adapter

    airflow_adapter.use_embedded_defaults()
    return airflow_adapter.config_for(params or {})


def cmd_demo_data(args: argparse.Namespace) -> int:
    from recsys_tasks.data.sources import write_interactions
    from recsys_tasks.data.synthetic import SyntheticSpec, generate_catalogue, generate_interactions

    spec = SyntheticSpec(users=args.users, items=args.items, seed=args.seed)
    frame = generate_interactions(spec)
    write_interactions(frame, args.out)
    print(
        f"wrote {len(frame)} interactions ({frame['user_id'].nunique()} users, "
        f"{frame['item_id'].nunique()} items) to {redact(args.out)}"
    )
    if args.catalogue:  # the items' titles and attributes, for items_uri (RECSYS_ITEMS_URI)
        items = generate_catalogue(spec)
        write_interactions(items, args.catalogue)
        print(f"wrote the catalogue of {len(items)} items (title, category, colour, available) to {redact(args.catalogue)}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from recsys_tasks import airflow_adapter
    from recsys_tasks.ops.report import render_report, run_summary, summary_line

    params = _parse_params(args.param)
    config = _config(params)  # fails on bad params before Airflow starts a run
    logical_date = _logical_date(args.logical_date)
    interrupt.stop_on_signals()
    if args.verbose:
        outcome = airflow_adapter.run_dag(args.dag_id, params, logical_date)
    else:
        with runlog.progress_only(runlog.log_path(environment.recsys_home())) as airflow_log:
            outcome = airflow_adapter.run_dag(args.dag_id, params, logical_date)
        print(f"Airflow's log of this run: {airflow_log} (`recsys -v run` shows it here instead)")
    if (signum := interrupt.stop_requested()) is not None:
        from recsys_tasks.storage.deployment import Deployment

        with Deployment(config) as dep:
            readers = dep.current_run()
        print(f"run {outcome['run_id']} interrupted ({signal.Signals(signum).name}): marked failed, not retried; "
              f"readers keep {f'run {readers}' if readers else 'no lists (none published yet)'}", file=sys.stderr)
        return 128 + signum
    print()
    print(render_report(config, outcome["run_id"]))
    summary = run_summary(config, outcome["run_id"])
    print(summary_line({**summary, "dag_run_state": outcome["state"]}))
    failed = sorted(t for t, s in outcome["tasks"].items() if s in {"failed", "upstream_failed"})
    if outcome["state"] == "success" and summary["status"] in {"published", "rejected"}:
        if summary["status"] == "rejected":
            print(f"run {outcome['run_id']}: candidate rejected by the gate, readers keep the previous run: "
                  f"{summary['message']}", file=sys.stderr)
            return 3
        if (baseline := layout.baseline_of(summary["model_version"])) is not None:
            print(f"run {outcome['run_id']}: the candidate was rejected and no model is in production, so the "
                  f"{baseline} baseline's lists were published: {summary['message']}", file=sys.stderr)
        return 0
    reason = summary.get("message") or (f"failed tasks: {', '.join(failed)}" if failed else f"DAG run {outcome['state']}")
    print(f"error: run {outcome['run_id']} ended {summary['status']}: {reason}", file=sys.stderr)
    return 1


def _logical_date(text: str | None) -> Any:
    if not text:
        return None
    from datetime import datetime

    try:
        stamp = datetime.fromisoformat(text)
    except ValueError:
        raise RecsysError(f"--logical-date {text!r}: use an ISO date or time, e.g. 2026-12-06 or 2026-12-06T02:00") from None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)


def cmd_validate(args: argparse.Namespace) -> int:
    from recsys_tasks.pipeline.ingest import check_interactions, discard_data_docs, read_source
    from recsys_tasks.storage.artifacts import ArtifactStore

    config = _config({**_parse_params(args.param), "source_uri": args.source}, results_db=False)
    frame = read_source(config)
    report = check_interactions(config, ArtifactStore(config.artifact_root), frame, frame.attrs.get("column_mapping"))
    discard_data_docs(report.data_docs_dir)
    print(report.summary())
    if args.report:
        with open(args.report, "w") as handle:
            json.dump(report.to_dict(), handle, indent=2, default=str)
        print(f"report: {args.report}")
    return 0 if report.passed else 2


def _deployment() -> Deployment:
    """The deployment's handle, as a DAG run would resolve it (close it after use)."""
    from recsys_tasks.storage.deployment import Deployment

    return Deployment(_config())


def cmd_show(args: argparse.Namespace) -> int:
    from recsys_tasks.ops.report import render_report

    with _deployment() as dep:
        if args.run_id and (not dep.has_runs() or db.get_run(dep.engine, dep.tables, args.run_id) is None):
            raise RecsysError(f"no run {args.run_id!r} in {redact(dep.config.db_url)}; `recsys runs` lists them")
        run_id = args.run_id or dep.current_run()
    if run_id is None:
        print("nothing published yet", file=sys.stderr)
        return 1
    print(render_report(dep.config, run_id))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from recsys_tasks.ops.report import runs_table

    with _deployment() as dep:
        runs = db.recent_runs(dep.engine, dep.tables, args.limit) if dep.has_runs() else []
        current = dep.current_run()
    if not runs:
        print(f"no runs yet in {redact(dep.config.db_url)}")
        return 0
    print(runs_table(runs, current, dep.config.selection_metric))
    return 0


def cmd_outcomes(args: argparse.Namespace) -> int:
    from recsys_tasks.scoring.report import outcomes_table

    with _deployment() as dep:
        rows = db.read_outcomes(dep.engine, dep.tables, args.run_id, args.limit) if dep.has(dep.tables.outcomes) else []
    if not rows:
        print(f"no outcomes yet in {redact(dep.config.db_url)}" + (f" for run {args.run_id}" if args.run_id else "")
              + ": each nightly run scores the published lists against the events that came after them")
        return 0
    if args.json:
        print(json.dumps(rows, default=str, indent=1))
    else:
        print(outcomes_table(rows))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from recsys_tasks.ops.bench import bench_command

    return bench_command(args)


def cmd_models(args: argparse.Namespace) -> int:
    from recsys_tasks.storage import registry
    from recsys_tasks.storage.artifacts import ArtifactStore

    config = _config(results_db=False)
    store = ArtifactStore(config.artifact_root)
    if args.action == "list":
        versions = registry.list_versions(store)
        if not versions:
            print(f"no models under {store.uri(layout.MODELS)}")
        metric = config.selection_metric
        for v in versions:
            value = v.get("metrics", {}).get("model", {}).get(metric)
            mark = "*" if v["production"] else " "
            score = f"{value:.4f}" if value is not None else "  -   "
            print(
                f"{mark} {v['model_version']}  {metric} {score}  created {v.get('created_at', '?')}  run {v.get('run_id', '?')}"
            )
        return 0
    if args.action == "show":
        version = args.version or registry.production_version(store)
        if version is None:
            raise RecsysError("no production model yet; name a version")
        print(json.dumps(registry.describe(store, version), indent=2, default=str))
        return 0
    from recsys_tasks.ops import console

    if args.action == "promote" and not args.version:
        raise RecsysError("promote needs a version: recsys models promote VERSION")
    with _deployment() as dep:  # the same calls as the console's Models page
        if args.action == "promote":
            pointer = console.promote(dep, args.version, "hand (recsys models promote)", over_gate=args.over_gate)
        else:
            pointer = console.rollback(dep)
        print(f"production is now {pointer['model_version']} ({pointer['reason']})")
        print(console.readers_note(dep))
    return 0


def cmd_reference(args: argparse.Namespace) -> int:
    from pathlib import Path

    from recsys_tasks.ops.reference import reference_markdown

    text = reference_markdown()
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    return 0


def cmd_init_db(args: argparse.Namespace) -> int:
    """The deployment's schema step (docker-compose's init service runs it): tables, views and
    the reader role, so that no task body has to change the schema."""
    with _deployment() as dep:
        dep.writable()
    tables = dep.tables
    print(f"results schema is current in {redact(dep.config.db_url)} ({tables.results}, {tables.view}, {tables.runs_public})")
    return 0


def cmd_forget_user(args: argparse.Namespace) -> int:
    from recsys_tasks.ops.erasure import forget_users

    outcome = forget_users(_config(), args.user_ids)
    print(json.dumps(outcome, indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description=__doc__)
    parser.add_argument("--version", action=_PrintVersion,
                        help="the version and git commit of this code (as every model's lineage records it)")
    parser.add_argument("-v", "--verbose", action="store_true", help="library logs (Great Expectations too) and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo-data", help="write synthetic interactions with sequential structure")
    demo.add_argument("--users", type=int, default=5000)
    demo.add_argument("--items", type=int, default=2000)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", required=True, help="file.csv, file.parquet, or SQL URL with ?table=NAME")
    demo.add_argument("--catalogue", help="also write the items' catalogue here (same forms), for items_uri")
    demo.set_defaults(func=cmd_demo_data)

    run = sub.add_parser("run", help="run the nightly DAG in-process through Airflow")
    run.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help=f"run-level setting; one of: {', '.join(sorted(PARAMS))}")
    run.add_argument("--dag-id", default="recsys_nightly")
    run.add_argument("--logical-date", metavar="DATE",
                     help="run (or re-run: a replay) the night of this date; its data as of then (default: now)")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="extract and validate a source; exit 0 when it passes")
    val.add_argument("--source", required=True)
    val.add_argument("--report", help="also write the JSON report here")
    val.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                     help="validation thresholds and source settings, as for `recsys run` (e.g. min_rows=1000)")
    val.set_defaults(func=cmd_validate)

    bench = sub.add_parser("bench", help="the published full-ranking protocol on a sequence dataset")
    bench.add_argument("--data", required=True, help="e.g. ../shared/datasets/Beauty.txt")
    bench.add_argument("--attributes", help="item attributes JSON (for the attribute objective)")
    bench.add_argument("--out", required=True, help="where the figures go (JSON)")
    bench.add_argument("--pretrain", default=None,
                       help="pretraining objectives, e.g. contrastive+attribute, or none (default: the nightly's)")
    bench.add_argument("--pretrain-epochs", type=int, default=None, help="default: the nightly's")
    bench.add_argument("--epochs", type=int, default=None, help="fine-tuning upper bound (default 200)")
    bench.add_argument("--patience", type=int, default=None, help="epochs without a better validation score (default 10)")
    bench.add_argument("--train-minutes", type=float, default=None,
                       help="training budget per stage in minutes, as the nightly's train_minutes (default: none)")
    bench.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                       help="score the judged model refitted with each validation item as one more target, as the "
                            "nightly's refit ships (default: the nightly's refit setting)")
    bench.add_argument("--seed", type=int, default=42)
    bench.add_argument("--seeds", help="comma-separated seeds, one run each; the output adds mean, spread and range")
    bench.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="change one ModelConfig or TrainConfig field for an arm, e.g. --set lr=5e-4")
    bench.add_argument("--trace-test", type=float, metavar="NDCG", nargs="?", const=0.0572,
                       help="also score test after every epoch (chooses nothing) and report the training minutes "
                            "to reach this NDCG@10 (default 0.0572, the plain SASRec reference on Beauty)")
    bench.add_argument("--warm-start", default=None, choices=WARM_START, help="what fine-tuning takes from pretraining")
    bench.add_argument("--auxiliary", default=None, help="self-supervised objectives kept on while fine-tuning, e.g. contrastive")
    bench.add_argument("--auxiliary-weight", type=float, default=None)
    bench.set_defaults(func=cmd_bench)

    models = sub.add_parser("models", help="the model registry: list, show, promote, rollback")
    models.add_argument("action", choices=["list", "show", "promote", "rollback"])
    models.add_argument("version", nargs="?")
    models.add_argument("--over-gate", action="store_true",
                        help="promote a version the gate rejected (the second, explicit confirmation)")
    models.set_defaults(func=cmd_models)

    reference = sub.add_parser("reference", help="every RECSYS_* variable and run param, as docs/reference.md")
    reference.add_argument("--out", help="write it here (default: print it)")
    reference.set_defaults(func=cmd_reference)

    show = sub.add_parser("show", help="report on a run (default: the one readers see)")
    show.add_argument("--run-id")
    show.set_defaults(func=cmd_show)

    init = sub.add_parser("init-db", help="create or upgrade the results schema (once per deployment or upgrade)")
    init.set_defaults(func=cmd_init_db)

    forget = sub.add_parser("forget-user", help="erase users from published rows and every retained artifact")
    forget.add_argument("user_ids", nargs="+", metavar="USER_ID")
    forget.set_defaults(func=cmd_forget_user)

    scored = sub.add_parser("outcomes", help="how published lists did: hit rate, NDCG, coverage per run, variant and strategy")
    scored.add_argument("--run-id", help="the scoring run (default: recent runs)")
    scored.add_argument("--limit", type=int, default=50, help="rows shown, newest first")
    scored.add_argument("--json", action="store_true", help="rows as JSON")
    scored.set_defaults(func=cmd_outcomes)

    runs = sub.add_parser("runs", help="recent runs: status, model, key metrics, reason")
    runs.add_argument("--limit", type=int, default=20)
    runs.set_defaults(func=cmd_runs)
    return parser


class _PrintVersion(argparse.Action):
    """`recsys --version`: the version and commit, looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help=kwargs.get("help"))

    def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
        from recsys_tasks.config import environment

        print(f"recsys {environment.code_version()}")
        parser.exit()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # `run` shows the tasks' progress; the other commands print their own result, nothing else
    level = logging.INFO if args.verbose or args.command in {"run", "bench"} else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.verbose:
        logging.getLogger("recsys_tasks").setLevel(logging.DEBUG)
    else:
        for noisy in ("great_expectations", "airflow", "alembic"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        return args.func(args)
    except RecsysError as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the operator gets one line; -v shows the traceback
        if args.verbose:
            log.exception("unexpected failure")
        first = (str(exc).strip().splitlines() or [""])[0]
        print(f"error: {type(exc).__name__}: {redact(first)} (run with -v for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
