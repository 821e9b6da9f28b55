# fedsynth coordinator: Flower SuperLink (TLS + SuperNode authentication) + one federated run.
# Build from the repository root:  docker build -f docker/coordinator.Dockerfile -t fedsynth-coordinator .
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/tmp HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 RAY_USAGE_STATS_ENABLED=0 \
    FLWR_TELEMETRY_ENABLED=0 FLWR_DISABLE_UPDATE_CHECK=1

# CPU build of torch first, so the install below does not pull a CUDA build.
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

# Non-root; compose may override the uid (`user:`) to match the owner of mounted 0600 keys.
RUN useradd --create-home --uid 10001 --user-group fedsynth
USER 10001:10001
WORKDIR /work

# /config: federation.toml + schema.json (read-only)   /certs: ca.pem, server.pem, server.key (read-only)
# /keys: institutions' *.pub files (read-only)          /out: the run (synthesizer/, model_card.json)
VOLUME ["/out"]
EXPOSE 9092
ENTRYPOINT ["fedsynth", "coordinator"]
CMD ["--config", "/config/federation.toml", "--schema", "/config/schema.json", "--certs", "/certs", \
     "--address", "0.0.0.0:9092", "--out", "/out"]
