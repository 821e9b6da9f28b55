# fedsynth institution client: a Flower SuperNode next to the institution's own table.
# Build from the repository root:  docker build -f docker/client.Dockerfile -t fedsynth-client .
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 \
    FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1

RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY docker/constraints.txt /tmp/constraints.txt
COPY pyproject.toml README.md /tmp/fedsynth/
COPY fedsynth /tmp/fedsynth/fedsynth
COPY client /tmp/fedsynth/client
COPY server /tmp/fedsynth/server
COPY common /tmp/fedsynth/common
COPY simulations /tmp/fedsynth/simulations
COPY evaluation /tmp/fedsynth/evaluation
RUN pip install -c /tmp/constraints.txt /tmp/fedsynth && rm -rf /tmp/fedsynth /tmp/constraints.txt

RUN useradd --create-home --uid 10001 --user-group fedsynth
USER 10001:10001
WORKDIR /work

# /data: the institution's table + schema.json (read-only; never leaves this container)
# /ca.pem and /auth-key: credentials (read-only)   /state: privacy ledger (must persist!)
VOLUME ["/state"]
ENTRYPOINT ["fedsynth", "client"]
CMD ["--data", "/data/table.csv", "--schema", "/data/schema.json", "--budget-epsilon", "1", \
     "--budget-delta", "1e-5", "--coordinator", "coordinator:9092", "--ca-cert", "/ca.pem", \
     "--auth-key", "/auth-key", "--state-dir", "/state"]
