# One image for every Airflow component and both Celery workers, built from the pinned
# requirements.txt (Airflow 3.3, the Celery provider, the pipeline's libraries).
#
# TORCH_INDEX_URL chooses the build of the torch version that requirements.txt pins: the CPU
# wheel by default (the api-server, scheduler and CPU worker never touch a GPU, and the CUDA
# build is several GB), the CUDA build of the same version for the GPU worker, whose
# docker-compose service passes a CUDA index (docs/production.md).
FROM python:3.11-slim-bookworm

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# `RECSYS_GIT_COMMIT=$(git rev-parse HEAD) docker compose build`: baked in, so `recsys --version`
# and every model's lineage.json say which commit trained it
ARG RECSYS_GIT_COMMIT=unknown

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    RECSYS_GIT_COMMIT=$RECSYS_GIT_COMMIT \
    AIRFLOW_HOME=/opt/airflow \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/recsys/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/recsys/plugins

# Airflow's images run as uid 50000 in group 0; so does this one
RUN useradd --create-home --uid 50000 --gid 0 --home-dir /home/airflow airflow

WORKDIR /opt/recsys
COPY requirements.txt constraints.txt pyproject.toml ./
# torch first, from the chosen index and at exactly the pinned version (2.13.0+cpu or
# 2.13.0+cuXXX); `pip install -r` then finds `torch==2.13.0` satisfied and keeps that build.
# Every version comes from constraints.txt (the lock CI passed with); no test tool is installed.
RUN pip install --index-url "$TORCH_INDEX_URL" "$(grep -E '^torch==' requirements.txt)" \
 && pip install -c constraints.txt -r requirements.txt

COPY recsys_tasks ./recsys_tasks
COPY sql ./sql
COPY dags ./dags
COPY plugins ./plugins
RUN pip install --no-deps -e . \
 && mkdir -p /opt/airflow/logs /opt/airflow/auth /opt/airflow/recsys \
 && chown -R airflow:0 /opt/airflow \
 && chmod -R g+rwX /opt/airflow

USER airflow
WORKDIR /opt/airflow
