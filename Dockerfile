# One image for every Airflow component and both workers. The GPU worker runs the same
# image with the NVIDIA runtime; torch picks CUDA up when the device is visible.
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 AIRFLOW_HOME=/opt/airflow
WORKDIR /opt/recsys
COPY requirements.txt pyproject.toml ./
COPY recsys_tasks ./recsys_tasks
COPY sql ./sql
COPY dags ./dags
COPY plugins ./plugins
# a CUDA build of the same torch version can be installed on GPU images instead
RUN pip install -r requirements.txt apache-airflow-providers-celery && pip install --no-deps -e .
