"""Every shell command of README.md and of the docs it sends readers to (pipeline, configuration,
benchmarks), run as written: only sizes, ports and paths are changed.

The commands run in the README's order in one fresh deployment (its own RECSYS_HOME and
AIRFLOW_HOME), so `make demo` seeds what the later commands read. The reader's SQL block is
run against what they produced. A command the README gains is run too: one this file does
not know how to shrink still runs as written, and a substitution that no longer matches
anything fails the test, so this file cannot silently drift from the README.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from helpers import stop_process_group

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
# the pages beside it whose commands run too, after the README's (docs/production.md is for a
# Docker host and is checked by tests/e2e/test_compose.py instead)
RUN_DOCS = [REPO / "docs" / "pipeline.md", REPO / "docs" / "configuration.md", REPO / "docs" / "benchmarks.md"]

# (pattern, replacement): the sizes, ports and paths of the README, shrunk for a test
SUBSTITUTIONS = [
    (r"^make demo$", "make demo DEMO_USERS=1000 DEMO_ITEMS=300"),
    (r"--param top_k=20", "--param top_k=7"),
    (r"--users 5000 --items 2000", "--users 1000 --items 300"),
    (r"--rows 1000000", "--rows 3000"),
    (r"--sizes \S+", "--sizes 300x200,600x300"),
    (r"--users 100000 --items 50000", "--users 300 --items 200"),
    (r"\.\./shared/datasets/(Beauty|Sports_and_Outdoors)\.txt", "{tiny}/Tiny.txt"),
    (r"\.\./shared/datasets/(Beauty|Sports_and_Outdoors)_item2attributes\.json", "{tiny}/Tiny_item2attributes.json"),
    (r"--epochs 200", "--epochs 3"),
    (r"--seeds 1,2,3", "--seeds 1 --epochs 3"),
    (r"--epochs 10 ", "--epochs 2 "),
    (r"--seeds 42,43,44", "--seeds 42"),
    (r"--seeds 42,43", "--seeds 42"),
    (r"--epochs 40 ", "--epochs 2 "),
    (r"--first-budget \d+ --pretrain-epochs \d+", "--first-budget 1 --pretrain-epochs 1"),
    (r"results/", "{tmp}/results/"),
    (r"var/", "{home}/"),
]
# commands not run by this test, and why
NOT_RUN_HERE = {
    "make test": "this suite is what `make test` runs; CI calls it through .ci/run",
}
UI_COMMAND = re.compile(r"^(?:UI_PORT=\d+ )?make ui$")


def readme_commands(text: str) -> list[str]:
    """Each command of each ```bash block, continuation lines joined, trailing comments cut."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def shrink(command: str, used: set[int], **paths: str) -> str:
    for i, (pattern, replacement) in enumerate(SUBSTITUTIONS):
        changed = re.sub(pattern, replacement.format(**paths), command)
        if changed != command:
            used.add(i)
            command = changed
    return command


def write_tiny_benchmark(folder: Path) -> None:
    """A small sequence file in the S3-Rec format, with attributes: same shape as Beauty.txt."""
    from recsys_tasks.data.synthetic import SyntheticSpec, generate_interactions

    frame = generate_interactions(SyntheticSpec(users=150, items=60, topics=4, seed=5))
    frame["user"] = frame["user_id"].str[1:].astype(int) + 1
    frame["item"] = frame["item_id"].str[1:].astype(int) + 1
    lines = [" ".join(map(str, [u, *g["item"]])) for u, g in frame.sort_values(["user", "ts"]).groupby("user")]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "Tiny.txt").write_text("\n".join(lines) + "\n")
    attributes = {str(i): [i % 7, 7 + i % 3] for i in range(1, 61)}
    (folder / "Tiny_item2attributes.json").write_text(json.dumps(attributes))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def open_ui(command: str, env: dict, logs: Path) -> dict:
    """Start `make ui`, wait for the API server, check the DAGs are there and that a bad
    param is refused at trigger time, then stop everything it started."""
    port = free_port()
    command = re.sub(r"^(UI_PORT=\d+ )?", f"UI_PORT={port} ", command)
    with open(logs, "w") as log:
        proc = subprocess.Popen(
            command, shell=True, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, f"{command} exited early:\n{logs.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"{base}/api/v2/monitor/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.time() < deadline, f"{command} not healthy in 240 s:\n{logs.read_text()[-3000:]}"
            time.sleep(2)
        with urllib.request.urlopen(f"{base}/auth/token", timeout=10) as r:  # all-admins mode: no login
            token = json.loads(r.read())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        deadline = time.time() + 180
        while True:  # the DAG processor parses the folder shortly after start
            request = urllib.request.Request(f"{base}/api/v2/dags?dag_id_pattern=recsys", headers=headers)
            with urllib.request.urlopen(request, timeout=10) as r:
                dags = {d["dag_id"] for d in json.loads(r.read())["dags"]}
            if "recsys_nightly" in dags or time.time() > deadline:
                break
            time.sleep(3)
        trigger = urllib.request.Request(
            f"{base}/api/v2/dags/recsys_nightly/dagRuns", method="POST", headers=headers,
            data=json.dumps({"logical_date": None, "conf": {"split": "random"}}).encode(),
        )
        try:
            urllib.request.urlopen(trigger, timeout=30)
            refused = None
        except urllib.error.HTTPError as exc:
            refused = (exc.code, exc.read().decode())
        return {"dags": dags, "refused": refused, "lan": reachable_from_the_network(port),
                "left_after_sigterm": stop_as_a_user_would(proc, env["AIRFLOW_HOME"])}
    finally:
        stop_process_group(proc)


def reachable_from_the_network(port: int) -> list[str]:
    """This machine's non-loopback addresses on which `port` accepts a connection."""
    addresses = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    open_on = []
    for address in [a for a in addresses if not a.startswith("127.") and ":" not in a]:
        with socket.socket() as s:
            s.settimeout(2)
            if s.connect_ex((address, port)) == 0:
                open_on.append(address)
    return open_on


def processes_of(airflow_home: str) -> list[str]:
    """Command lines of live processes started with this AIRFLOW_HOME."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and f"AIRFLOW_HOME={airflow_home}".encode() in (proc / "environ").read_bytes().split(b"\0"):
                found.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip())
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return [c for c in found if c]


def make_process(shell_pid: int) -> int:
    """The `make` that `sh -c "UI_PORT=... make ui"` started (or the shell itself, had it exec'd make)."""
    if (Path("/proc") / str(shell_pid) / "comm").read_text().strip() == "make":
        return shell_pid
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == shell_pid and (stat.parent / "comm").read_text().strip() == "make":
                return int(stat.parent.name)
        except (OSError, IndexError, ValueError):
            continue
    raise AssertionError(f"no make process under {shell_pid}")


def stop_as_a_user_would(proc: subprocess.Popen, airflow_home: str) -> list[str]:
    """SIGTERM to the `make ui` process alone (not its process group), then what is still running 40 s later."""
    os.kill(make_process(proc.pid), signal.SIGTERM)
    proc.wait(timeout=60)
    deadline = time.time() + 40
    while (left := processes_of(airflow_home)) and time.time() < deadline:
        time.sleep(1)
    return left


def test_every_readme_command_runs_as_written(tmp_path):
    home, tiny = tmp_path / "var", tmp_path / "tiny"
    write_tiny_benchmark(tiny)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RECSYS_", "AIRFLOW"))}
    env.update(RECSYS_HOME=str(home), AIRFLOW_HOME=str(tmp_path / "airflow"), RECSYS_TASK_RETRIES="0",
               PATH=f"{REPO / '.venv' / 'bin'}:{env['PATH']}")
    commands = [c for page in [README, *RUN_DOCS] for c in readme_commands(page.read_text())]
    assert "make demo" in commands[:2] and "make test" in commands[:2], "the README must open with make demo and make test"
    used: set[int] = set()
    ran = []
    for original in commands:
        if original in NOT_RUN_HERE:
            continue
        command = shrink(original, used, tiny=str(tiny), tmp=str(tmp_path), home=str(home))
        if UI_COMMAND.match(command):
            ui = open_ui(command, env, tmp_path / "ui.log")
            assert {"recsys_nightly", "recsys_pretrain", "recsys_regenerate"} <= ui["dags"], ui
            assert ui["refused"] and ui["refused"][0] in (400, 422) and "split" in ui["refused"][1], ui
            assert ui["lan"] == [], f"make ui answers on {ui['lan']}: it must listen on 127.0.0.1 only"
            assert ui["left_after_sigterm"] == [], f"SIGTERM to make ui left: {ui['left_after_sigterm']}"
            ran.append(original)
            continue
        tick = time.perf_counter()
        result = subprocess.run(command, shell=True, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        print(f"[{time.perf_counter() - tick:6.1f}s] exit {result.returncode}: {command}", flush=True)
        output = result.stdout + result.stderr
        if " run" in command and "recsys" in command and result.returncode == 3:
            # documented: exit 3 = the gate rejected the candidate and readers keep the previous run
            assert "candidate rejected by the gate" in result.stderr, output[-3000:]
        else:
            assert result.returncode == 0, f"README command failed: {original}\nran: {command}\n{output[-4000:]}"
        assert "Traceback" not in output, f"{command}\n{output[-4000:]}"
        if "validate --source" in command and "events.csv" in command:  # after make demo: another source, not judged by it
            assert "new source: no history to compare" in output, output
        if original == "make demo":  # the project's progress and the summary; Airflow's own log is in a file
            assert len(output.splitlines()) < 80, f"make demo printed {len(output.splitlines())} lines:\n{output}"
            assert "DeprecationWarning" not in output and "Airflow's log of this run:" in output, output
        ran.append(original)
    unused = [SUBSTITUTIONS[i][0] for i in range(len(SUBSTITUTIONS)) if i not in used]
    assert not unused, f"substitutions matching no README command (update this test with the README): {unused}"

    # what the README says a downstream app runs, run against what `make demo` produced
    lists_sql, similar_sql = [q.strip().rstrip(";") for q in re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)]
    engine = sa.create_engine(f"sqlite:///{home / 'recsys.db'}")
    with engine.connect() as conn:
        user = conn.exec_driver_sql("SELECT min(user_id) FROM recommendations_current").scalar()
        rows = conn.execute(sa.text(lists_sql), {"user_id": user}).all()
        stranger = conn.execute(sa.text(lists_sql), {"user_id": "a-user-never-seen"}).all()
        item = conn.exec_driver_sql("SELECT min(item_id) FROM recommendations_current").scalar()
        similar = conn.execute(sa.text(similar_sql), {"item_id": item}).all()
    engine.dispose()
    assert rows and [r.rank for r in rows] == list(range(1, len(rows) + 1))
    assert {r.strategy for r in rows} <= {"model", "popularity", "ease", "item_knn"}  # a baseline on a first night
    assert len(stranger) == len(rows) and {r.strategy for r in stranger} == {"fallback"}
    assert [r.rank for r in similar] == list(range(1, 11))
    assert len(ran) + len(NOT_RUN_HERE) == len(commands)
