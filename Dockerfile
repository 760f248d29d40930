# SutazAI on Ray's official image. CPU by default:
#   docker build -t sutazai .
# GPU nodes (vLLM through ray.serve.llm): use a CUDA Ray image and the vllm extra:
#   docker build --build-arg BASE=rayproject/ray:2.60.0-py311-cu128 --build-arg EXTRAS=test,vllm -t sutazai:gpu .
ARG BASE=rayproject/ray:2.60.0-py311-cpu
FROM ${BASE}

ARG EXTRAS=test
USER root
# build tools for llama-cpp-python (sdist only on PyPI), node/npm for npm MCP servers
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake nodejs npm git \
    && rm -rf /var/lib/apt/lists/*
# The Ray image gives `ray` passwordless sudo (and the sudo group): code in any replica or MCP
# server would be root. Take it away.
RUN sed -i '/^ray /d' /etc/sudoers \
    && rm -f /etc/sudoers.d/ray \
    && (gpasswd -d ray sudo || true)
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sutazai ./sutazai
COPY deployments ./deployments
COPY cluster ./cluster
COPY models ./models
COPY serve_config.yaml ./
RUN pip install --no-cache-dir -e ".[${EXTRAS}]" \
    && if [ -f cluster/mcp/package.json ]; then npm ci --prefix cluster/mcp --no-audit --no-fund; fi \
    && chown -R ray /app
USER ray
RUN ! sudo -n true 2>/dev/null
ENV RAY_USAGE_STATS_ENABLED=0 SUTAZAI_DATA_DIR=/app/.data
EXPOSE 8000
# With DATABASE_URL / REDIS_URL set this uses them; unset it starts embedded servers and a
# local Ray head (token auth, dashboard on the container's loopback). `docker stop` sends
# SIGTERM: sutazai run stops the app, Ray and the embedded servers before it exits
# (`docker run --init`, so that a reaper collects Ray's exited processes).
CMD ["sutazai", "run"]
