# syntax=docker/dockerfile:1.7
# One image for every LexiMind process: web (gunicorn), workers, beat, migrations and the CLI.
#
#   docker build -t leximind:cpu .                                    CPU-only torch (web, CPU worker, beat)
#   docker build -t leximind:gpu --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 .
#                                                                     CUDA torch, for the GPU worker (NVIDIA runtime)
#
# docker-compose.yml builds both. No model weights and no corpora are baked in: model versions live on the
# `models` volume, the corpora for training are mounted read-only.
ARG PYTHON_VERSION=3.11

FROM python:${PYTHON_VERSION}-slim AS runtime
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LEXIMIND_LOG_FORMAT=json \
    LEXIMIND_DATA_DIR=/var/lib/leximind \
    LEXIMIND_MODELS_DIR=/var/lib/leximind/models
# an unprivileged user owns the data folder; nothing runs as root
RUN useradd --system --create-home --uid 10001 --home-dir /var/lib/leximind leximind \
 && mkdir -p /var/lib/leximind/models && chown -R leximind /var/lib/leximind
WORKDIR /app
# torch first and pinned, from the index that matches the target (CPU or a CUDA build)
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
COPY pyproject.toml README.md ./
COPY leximind ./leximind
COPY db ./db
COPY migrations ./migrations
COPY model ./model
COPY workers ./workers
COPY webapp ./webapp
RUN pip install ".[ml]" && rm -rf /root/.cache
USER leximind
EXPOSE 5000
# liveness only; readiness (database, broker, a worker) is GET /readyz
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz', timeout=4)"]
CMD ["gunicorn", "--bind", "0.0.0.0:5000", "--workers", "4", "--threads", "4", "--worker-class", "gthread", \
     "--timeout", "120", "--graceful-timeout", "30", "--access-logfile", "-", \
     "--logger-class", "leximind.logging_setup.GunicornLogger", "webapp:create_app()"]
