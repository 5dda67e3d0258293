"""The docker-compose topology as local processes: a real distributed run, and a lost GPU worker.

CeleryExecutor with Airflow's metadata in a fresh PostgreSQL database and Redis as the broker;
the scheduler, DAG processor, triggerer and API server; two Celery workers, one on the
`default` queue and one on `gpu` (as in docker-compose, RECSYS_GPU_QUEUE=gpu and
RECSYS_GPU_POOL=gpu route pretrain and finetune there). Each worker reports its own hostname
to Airflow, as each container does in docker-compose. The results go to a fresh PostgreSQL
database (through the `recsys_db` connection from the environment), artifacts to a tmp folder.

The first run is triggered through the REST API and checked by where each task ran, what
readers see, and the Asset event that a downstream DAG is scheduled on. The second run loses
its GPU worker to a SIGKILL in the middle of fine-tuning; the scheduler notices the missing
heartbeat, the restarted worker takes the retry, and fine-tuning resumes from its checkpoint.
Process logs live in a tmp folder; their tails are printed when something fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest
import sqlalchemy as sa
from conftest import POSTGRES_URL

from recsys_tasks.storage.layout import run_key

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DAG_ID = "recsys_nightly"
CONSUMER_DAG_ID = "recsys_downstream_example"
USERS, ITEMS, TOP_K = 300, 120, 5
HEARTBEAT_TIMEOUT_S = 20  # how long a killed worker's task stays "running" before the scheduler gives up on it
BUDGET_S = 390  # both tests, start-up included; the brief allows 7 minutes in all
# gates wide open: this test is about where tasks run, not about model quality on 300 users
OPEN_GATE = {"gate_min_lift": -1.0, "gate_max_regression": 1.0, "gate_max_churn": 1.0}
FIRST_RUN = {"epochs": 2, "pretrain_epochs": 1, "num_shards": 2, "top_k": TOP_K, **OPEN_GATE}
# small batches make each fine-tuning epoch last a few seconds, long enough to kill it mid-way
# without the refit: its epochs would log and train again after the judged ones this test counts
# (the refit resumes from its own checkpoint the same way: learn.checkpoints_for(run, "refit"))
KILLED_RUN = {"epochs": 8, "batch_size": 4, "num_shards": 2, "top_k": TOP_K, "refit": False, **OPEN_GATE}
WORKERS = {"default": ("cpu@recsys-test", "2"), "gpu": ("gpu@recsys-test", "1")}  # queue: (hostname, concurrency)
GPU_TASKS = {"pretrain", "finetune"}
CLOCK = {"started": time.monotonic()}  # reset when the deployment starts: the budget is this module's

# What the two workers load from PYTHONPATH: each reports its own name as the task instances'
# hostname, as a container does; and each imports the stages once, before it forks its pool,
# so that a task on two busy cores starts in a second instead of importing torch and GX again.
WORKER_MODULES = {
    "recsys_worker_identity.py": '''import os


def hostname() -> str:
    return os.environ["RECSYS_TEST_WORKER_HOSTNAME"]
''',
    "recsys_worker_celery.py": '''from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

CELERY_CONFIG = {**DEFAULT_CELERY_CONFIG, "imports": ["recsys_tasks.pipeline", "great_expectations"]}
''',
}
WORKER_ENV = {
    "AIRFLOW__CORE__HOSTNAME_CALLABLE": "recsys_worker_identity.hostname",
    "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "recsys_worker_celery.CELERY_CONFIG",
}


def remaining(limit: float) -> float:
    return max(1.0, min(limit, BUDGET_S - elapsed()))


def elapsed() -> float:
    return time.monotonic() - CLOCK["started"]


def wait_for(what: str, check, limit: float, every: float = 1.0, topology: Topology | None = None):
    """Poll `check` until it returns something truthy; fail naming `what` after `limit` seconds,
    or at once when a process of `topology` has died."""
    deadline = time.monotonic() + remaining(limit)
    while True:
        if topology is not None:
            topology.check_alive()
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(every)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Topology:
    """The processes of one deployment, each in its own process group, with its log file."""

    env: dict[str, str]
    logs: Path
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, *args: str, env: dict[str, str] | None = None, program: str = "airflow") -> None:
        with open(self.logs / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(
                [str(BIN / program), *args], env={**self.env, **(env or {})}, cwd=REPO,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )

    def start_worker(self, queue: str) -> None:
        hostname, concurrency = WORKERS[queue]
        self.start(
            f"worker-{queue}", "celery", "worker", "--queues", queue, "--concurrency", concurrency,
            "--celery-hostname", hostname, "--skip-serve-logs",  # logs are read from the shared folder
            env={**WORKER_ENV, "RECSYS_TEST_WORKER_HOSTNAME": hostname},
        )

    def check_alive(self) -> None:
        dead = {name: proc.returncode for name, proc in self.procs.items() if proc.poll() is not None}
        if dead:
            raise AssertionError(f"processes exited: {dead}")

    def kill(self, name: str, sig: signal.Signals = signal.SIGKILL) -> list[int]:
        """Signal the process group of `name` and any group its descendants made for themselves.
        Descendants are listed first: once their parent is gone they could no longer be found."""
        proc = self.procs[name]
        groups = {proc.pid}
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(proc.pid).children(recursive=True):
                with contextlib.suppress(ProcessLookupError, psutil.NoSuchProcess):
                    groups.add(os.getpgid(child.pid))
        for group in groups:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, sig)
        return sorted(groups)

    def stop_all(self) -> None:
        for name in self.procs:
            self.kill(name, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(max(0.1, deadline - time.monotonic()))
        for name, proc in self.procs.items():
            self.kill(name, signal.SIGKILL)
            proc.wait(10)

    def tails(self, lines: int = 40) -> str:
        out = []
        for path in sorted(self.logs.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            out.append(f"----- {path.name} (last {len(text)} lines) -----\n" + "\n".join(text))
        return "\n".join(out)


class Api:
    """The Airflow REST API (v2) as an operator's script uses it: a JWT from /auth/token."""

    def __init__(self, base_url: str, username: str, password: str, topology: Topology):
        self.http = httpx.Client(base_url=base_url, timeout=30)
        self.username, self.password = username, password
        self.topology = topology  # waits fail at once when one of its processes dies

    def login(self) -> None:
        response = self.http.post("/auth/token", json={"username": self.username, "password": self.password})
        response.raise_for_status()
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def call(self, method: str, path: str, **kwargs) -> dict:
        response = self.http.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code == 401:  # the token expired: log in again, once
            self.login()
            response = self.http.request(method, f"/api/v2{path}", **kwargs)
        if response.status_code >= 400:
            raise AssertionError(f"{method} {path}: HTTP {response.status_code} {response.text[:500]}")
        return response.json()

    def trigger(self, dag_id: str, run_id: str, conf: dict) -> None:
        self.call("POST", f"/dags/{dag_id}/dagRuns", json={"dag_run_id": run_id, "logical_date": None, "conf": conf})

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        return self.call("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 100})["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, limit: float) -> list[dict]:
        started = time.monotonic()
        state = wait_for(
            f"{dag_id} run {run_id} to finish",
            lambda: (s := self.run_state(dag_id, run_id)) in {"success", "failed"} and s, limit, every=2,
            topology=self.topology,
        )
        tis = self.task_instances(dag_id, run_id)
        assert state == "success", f"{run_id} ended {state}: " + ", ".join(f"{label(t)}={t['state']}" for t in tis)
        print(f"\n{run_id}: {state} after {time.monotonic() - started:.0f}s", flush=True)
        return tis

    def log_text(self, dag_id: str, run_id: str, task_id: str, try_number: int) -> str:
        body = self.call(
            "GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
            params={"full_content": "true"}, headers={"Accept": "application/json"},
        )
        content = body.get("content")
        if isinstance(content, list):  # structured log lines
            return "\n".join(line.get("event", "") if isinstance(line, dict) else str(line) for line in content)
        return str(content)


def label(ti: dict) -> str:
    return ti["task_id"] + (f"[{ti['map_index']}]" if ti["map_index"] >= 0 else "")


def placement(tis: list[dict]) -> str:
    return "\n".join(
        f"  {label(t):<12} try {t['try_number']}  queue {t['queue']:<8} ran on {t['hostname']:<16} {t['duration'] or 0:5.1f}s"
        for t in sorted(tis, key=lambda t: (t["start_date"] or "", label(t)))
    )


def assert_placement(tis: list[dict]) -> None:
    for ti in tis:
        queue = "gpu" if ti["task_id"] in GPU_TASKS else "default"
        assert ti["state"] in {"success", "skipped"}, (label(ti), ti["state"])
        assert ti["queue"] == queue, (label(ti), ti["queue"])
        assert ti["hostname"] == WORKERS[queue][0], f"{label(ti)} ran on {ti['hostname']}, not the {queue} worker"


@dataclass
class Deployment:
    topology: Topology
    api: Api
    artifacts: Path
    results_url: str
    source_users: int


@contextlib.contextmanager
def explained(topology: Topology):
    """On failure, print the tails of every process log before the error."""
    try:
        yield
    except BaseException:
        print(f"\nprocess logs in {topology.logs}:\n{topology.tails()}", flush=True)
        raise


def _pick_redis_db() -> int:
    """An empty Redis database number, so nothing else on this Redis shares the queues."""
    import redis

    for number in range(15, 0, -1):
        client = redis.Redis(host="127.0.0.1", port=6379, db=number)
        if client.dbsize() == 0:
            client.set("recsys-test-claim", "1", ex=900)  # claimed: a parallel session picks another
            return number
    raise RuntimeError("no empty Redis database on 127.0.0.1:6379 (numbers 1..15 are all in use)")


def _admin_engine() -> sa.Engine:
    return sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory):
    import redis

    CLOCK["started"] = time.monotonic()
    tmp = tmp_path_factory.mktemp("celery-deployment")
    logs, artifacts, home = tmp / "logs", tmp / "artifacts", tmp / "airflow"
    for folder in (logs, artifacts, home):
        folder.mkdir()
    for name, text in WORKER_MODULES.items():
        (tmp / name).write_text(text)
    suffix = uuid.uuid4().hex[:8]
    metadata_db, results_db = f"airflow_celery_{suffix}", f"recsys_celery_{suffix}"
    server = POSTGRES_URL.rsplit("/", 1)[0]  # postgresql+psycopg://postgres@127.0.0.1:5432
    metadata_url = f"{server}/{metadata_db}"
    redis_db = _pick_redis_db()
    port = _free_port()
    username, password = "operator", secrets.token_urlsafe(16)
    passwords = tmp / "passwords.json"
    passwords.write_text(json.dumps({username: password}))
    source = tmp / "interactions.parquet"
    from cryptography.fernet import Fernet

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "RECSYS_", "AWS_"))}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "PYTHONPATH": str(tmp),  # WORKER_MODULES
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{username}:admin",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_url,
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC": metadata_url,  # psycopg 3 is async too
        "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{redis_db}",
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{metadata_url}",
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{port}",
        "AIRFLOW__API__SECRET_KEY": secrets.token_hex(32),
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT_S),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "2",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",  # the DAG files do not change here
        # two workers and everything else share two cores: one thread per task keeps torch from spinning
        "OMP_NUM_THREADS": "1",
        # the deployment's settings, as docker-compose gives them to every Airflow service
        "AIRFLOW_CONN_RECSYS_DB": f"postgresql://postgres@127.0.0.1:5432/{results_db}",
        "RECSYS_SOURCE_URI": str(source),
        "RECSYS_ARTIFACT_ROOT": str(artifacts),
        "RECSYS_HOME": str(tmp / "home"),
        "RECSYS_GPU_QUEUE": "gpu",
        "RECSYS_GPU_POOL": "gpu",
        "RECSYS_TASK_RETRIES": "1",
        "RECSYS_RETRY_DELAY_S": "1",
        # scheduled on the source's Asset: unpausing the DAG starts nothing until the source changes
        "RECSYS_SOURCE_ASSET": source.as_uri(),
    })
    topology = Topology(env=env, logs=logs)
    admin = _admin_engine()
    try:
        with admin.connect() as conn:
            for name in (metadata_db, results_db):
                conn.exec_driver_sql(f"CREATE DATABASE {name}")
        with explained(topology):
            subprocess.run(
                [str(BIN / "recsys"), "demo-data", "--users", str(USERS), "--items", str(ITEMS), "--out", str(source)],
                env=env, check=True, capture_output=True,
            )
            with open(logs / "init.log", "wb") as log:  # what the compose init service does
                subprocess.run(
                    [str(BIN / "airflow"), "db", "migrate"], env=env, check=True, stdout=log, stderr=subprocess.STDOUT,
                )
            # the rest of the init service's work, beside the services' start-up
            topology.start("pools", "pools", "set", "gpu", "1", "one slot per GPU worker")
            topology.start("init-db", "init-db", program="recsys")
            topology.start("api-server", "api-server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1")
            topology.start("scheduler", "scheduler")
            topology.start("dag-processor", "dag-processor")
            topology.start("triggerer", "triggerer")
            for queue in WORKERS:
                topology.start_worker(queue)
            api = Api(f"http://127.0.0.1:{port}", username, password, topology)
            for step in ("pools", "init-db"):
                wait_for(step, lambda s=step: topology.procs[s].poll() is not None, 120)
                assert topology.procs.pop(step).returncode == 0, (logs / f"{step}.log").read_text()
            wait_for("the API server", lambda: _healthy(api), 120, topology=topology)
            api.login()
            for dag_id in (DAG_ID, CONSUMER_DAG_ID):
                wait_for(f"DAG {dag_id} to be parsed", lambda d=dag_id: _dag_exists(api, d), 120, topology=topology)
                api.call("PATCH", f"/dags/{dag_id}", json={"is_paused": False})
            assert api.call("GET", "/importErrors")["total_entries"] == 0
            import pandas as pd

            users = pd.read_parquet(source, columns=["user_id"])["user_id"].nunique()
        yield Deployment(topology, api, artifacts, f"{server}/{results_db}", users)
    finally:
        topology.stop_all()
        redis.Redis(host="127.0.0.1", port=6379, db=redis_db).flushdb()
        with admin.connect() as conn:
            for name in (metadata_db, results_db):
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()
        print(f"\ncelery deployment: {elapsed():.0f}s from start-up to clean-up", flush=True)


def _healthy(api: Api) -> bool:
    try:
        return api.http.get("/api/v2/monitor/health").status_code == 200
    except httpx.HTTPError:
        return False


def _dag_exists(api: Api, dag_id: str) -> bool:
    return api.http.get(f"/api/v2/dags/{dag_id}").status_code == 200


def _view_by_run(results_url: str) -> dict[str, tuple[int, int]]:
    engine = sa.create_engine(results_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT run_id, count(*), count(DISTINCT user_id) FROM recommendations_current GROUP BY run_id"
            )).all()
    finally:
        engine.dispose()
    return {run_id: (count, users) for run_id, count, users in rows}


def test_nightly_runs_on_cpu_and_gpu_workers_and_emits_its_asset(deployment):
    api, topology = deployment.api, deployment.topology
    run_id = f"celery_first_{uuid.uuid4().hex[:6]}"
    with explained(topology):
        api.trigger(DAG_ID, run_id, FIRST_RUN)
        tis = api.wait_for_run(DAG_ID, run_id, 240)
        print(f"{run_id}: where each task ran\n{placement(tis)}", flush=True)
        assert {t["task_id"] for t in tis} >= {"extract", "pretrain", "finetune", "generate", "publish"}
        assert_placement(tis)

        # readers see this run, whole: top-K for every user of the source
        assert _view_by_run(deployment.results_url) == {run_id: (deployment.source_users * TOP_K, deployment.source_users)}

        events = api.call("GET", "/assets/events", params={"source_dag_id": DAG_ID, "source_run_id": run_id})["asset_events"]
        published = [e for e in events if e["name"] == "recommendations_current"]
        assert [(e["uri"], e["source_task_id"]) for e in published] == [("recsys://recommendations/current", "publish")]
        announced = published[0]["extra"]  # what consumers learn without reading the view
        assert {k: announced.get(k) for k in ("run_id", "rows", "users")} == {
            "run_id": run_id, "rows": deployment.source_users * TOP_K, "users": deployment.source_users}
        assert announced["model_version"]
        print(f"asset event {published[0]['id']}: {published[0]['uri']} from {DAG_ID}.publish of {run_id}", flush=True)

        # the example consumer DAG is scheduled on that Asset and reads the view through the library
        consumer = wait_for(
            f"{CONSUMER_DAG_ID} to run after the asset event",
            lambda: [r for r in api.call("GET", f"/dags/{CONSUMER_DAG_ID}/dagRuns")["dag_runs"] if r["state"] == "success"],
            120, every=2, topology=topology,
        )[0]
        read = api.call(
            "GET", f"/dags/{CONSUMER_DAG_ID}/dagRuns/{consumer['dag_run_id']}/taskInstances/read_recommendations"
            "/xcomEntries/return_value", params={"deserialize": "true"},
        )["value"]
        if isinstance(read, str):
            read = json.loads(read)
        print(f"{CONSUMER_DAG_ID} ({consumer['run_type']}): {read}", flush=True)
        assert read == {"run_id": run_id, "rows": deployment.source_users * TOP_K, "users": deployment.source_users}


def test_killed_gpu_worker_mid_finetune_resumes_from_checkpoint_on_retry(deployment):
    api, topology = deployment.api, deployment.topology
    run_id = f"celery_killed_{uuid.uuid4().hex[:6]}"
    checkpoint = deployment.artifacts / "runs" / run_key(run_id) / "checkpoints" / "finetune.pt"
    with explained(topology):
        api.trigger(DAG_ID, run_id, KILLED_RUN)

        def finetune_running_with_checkpoint():
            states = {t["task_id"]: t["state"] for t in api.task_instances(DAG_ID, run_id)}
            if states.get("finetune") in {"success", "failed"}:
                raise AssertionError(f"finetune ended ({states['finetune']}) before it could be killed")
            return states.get("finetune") == "running" and checkpoint.exists()

        wait_for(f"finetune to save its first checkpoint ({checkpoint})", finetune_running_with_checkpoint, 200, every=0.25,
                 topology=topology)
        killed = topology.kill("worker-gpu")  # the whole worker: Celery, its pool, the task it runs
        topology.procs["worker-gpu"].wait(10)
        print(f"\n{run_id}: SIGKILLed the gpu worker (process groups {killed}) after finetune saved {checkpoint.name}")
        topology.start_worker("gpu")  # the same worker coming back, as `restart: always` brings a container back
        tis = api.wait_for_run(DAG_ID, run_id, 240)
        print(f"{run_id}: where each task ran (finetune: its second try)\n{placement(tis)}", flush=True)
        assert_placement(tis)

        finetune = next(t for t in tis if t["task_id"] == "finetune")
        assert finetune["try_number"] == 2
        tries = api.call("GET", f"/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/finetune/tries")["task_instances"]
        print("finetune tries: " + ", ".join(f"{t['try_number']} {t['state']} on {t['hostname']}" for t in tries))
        assert [(t["try_number"], t["hostname"]) for t in tries] == [(1, WORKERS["gpu"][0]), (2, WORKERS["gpu"][0])]
        timeouts = api.call("GET", "/eventLogs", params={
            "dag_id": DAG_ID, "run_id": run_id, "task_id": "finetune", "event": "heartbeat timeout"})["event_logs"]
        assert [e["try_number"] for e in timeouts] == [1], "the scheduler did not fail the killed try for its heartbeat"
        print(f"scheduler: {timeouts[0]['event']} of try 1: {timeouts[0]['extra']}")

        first, second = (api.log_text(DAG_ID, run_id, "finetune", n) for n in (1, 2))
        epochs_before = [line.strip() for line in first.splitlines() if " epoch " in line and "loss=" in line]
        resumed = [line.strip() for line in second.splitlines() if "resuming after epoch" in line]
        print("try 1 (killed): " + (" | ".join(epochs_before) or "no epoch finished"))
        print("try 2 (resumed): " + " | ".join(resumed), flush=True)
        assert epochs_before and resumed, "the second try did not resume from the first one's checkpoint"
        done = int(resumed[0].split("resuming after epoch")[1].split()[0])
        # the checkpoint follows an epoch's log line: the kill may fall between the two
        assert len(epochs_before) - 1 <= done <= len(epochs_before) and done >= 1
        assert not any(f"epoch {n}/" in second for n in range(1, done + 1))  # no epoch trained twice

        model_version = _model_version_of(deployment.results_url, run_id)
        lineage = json.loads((deployment.artifacts / "models" / model_version / "lineage.json").read_text())
        epochs = [entry["epoch"] for entry in lineage["history"]]
        print(f"lineage of {model_version}: epochs {epochs} (1..{done} trained by try 1, the rest by try 2)", flush=True)
        assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) > done
        assert _view_by_run(deployment.results_url) == {run_id: (deployment.source_users * TOP_K, deployment.source_users)}


def _model_version_of(results_url: str, run_id: str) -> str:
    engine = sa.create_engine(results_url)
    try:
        with engine.connect() as conn:
            return conn.execute(sa.text("SELECT model_version FROM recsys_runs WHERE run_id = :r"), {"r": run_id}).scalar_one()
    finally:
        engine.dispose()
