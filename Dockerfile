# syntax=docker/dockerfile:1
# One Dockerfile for the five services; the build argument SERVICE names the one to build
# (the folder under services/): gateway, reasoner, tool-runner, memory or offline-model.
# Build from the repository root (the image needs shared/ too):
#   docker build --build-arg SERVICE=gateway -t agentry-gateway .
#
# Stages: `build` installs shared/ and the one service into a venv; `runtime` is what
# every image has (user 10001, PATH, BIND_HOST); `service-<SERVICE>` adds what differs
# (port, EXPOSE, data folders, packages, entrypoint); the last stage picks
# `service-${SERVICE}` and copies the venv in, so an unknown SERVICE fails the build.
# Bookworm is pinned so the image matches the Debian 12 the project is tested on (and
# the tool-runner sandbox's /usr/bin/python3 is 3.11, the worker's version).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG SERVICE

FROM ${PYTHON_IMAGE} AS build
ARG SERVICE
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
RUN case "${SERVICE}" in \
      gateway|reasoner|tool-runner|memory|offline-model) ;; \
      *) echo "--build-arg SERVICE= must name a service folder, not '${SERVICE}'" >&2; exit 1 ;; \
    esac \
    && python -m venv /opt/venv
COPY constraints.txt /src/constraints.txt
COPY shared /src/shared
COPY services/${SERVICE} /src/services/${SERVICE}
# constraints.txt pins the versions the test suite ran with.
RUN /opt/venv/bin/pip install --no-cache-dir -c /src/constraints.txt /src/shared /src/services/${SERVICE}
# The sample corpus search_docs reads when TOOL_RUNNER_DOCS_DIR is not set lives beside
# the tool-runner package in the source tree, not in the installed package: ship it as a
# folder (empty for the other services, and only the tool-runner stage copies it).
RUN mkdir -p /out/docs \
    && if [ -d /src/services/${SERVICE}/agentry_tool_runner/sample_docs ]; then cp -a /src/services/${SERVICE}/agentry_tool_runner/sample_docs/. /out/docs/; fi

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 agentry \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/agentry --create-home \
       --shell /usr/sbin/nologin agentry
# agentry_build_info's git_sha: docker build --build-arg GIT_SHA=$(git rev-parse HEAD)
ARG GIT_SHA=""
ENV PATH=/opt/venv/bin:$PATH \
    AGENTRY_GIT_SHA=${GIT_SHA} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    BIND_HOST=0.0.0.0
WORKDIR /var/lib/agentry

# ---- what differs per service: PORT_VARIABLE names the setting the healthcheck asks --------

# WebSockets on /ws, and /healthz /readyz /metrics.
FROM runtime AS service-gateway
ENV GATEWAY_PORT=8080 PORT_VARIABLE=GATEWAY_PORT
EXPOSE 8080
ENTRYPOINT ["agentry-gateway"]

# The agent loop.
FROM runtime AS service-reasoner
ENV REASONER_PORT=8081 PORT_VARIABLE=REASONER_PORT
EXPOSE 8081
ENTRYPOINT ["agentry-reasoner"]

# Runs tool calls, each in a child process. Serve chosen pools with `--pools default,network`
# (no arguments: every pool of the registry). Sandboxed tools run under bubblewrap with
# Debian's /usr/bin/python3 (`python3 -S -I`, the standard library only, none of the
# worker's packages). bubblewrap here is not setuid: it needs unprivileged user
# namespaces, which a container's default seccomp (and AppArmor) profile forbids. See
# docs/deploy.md ("The tool-runner sandbox") for the container settings; without them set
# TOOL_RUNNER_ALLOW_WEAK_ISOLATION=true to accept weaker isolation, or sandboxed tools are
# refused. python3 (not python3-minimal alone, which lacks json): the interpreter the
# sandboxed child runs on. tzdata is already in the base image (current_time's zoneinfo).
FROM runtime AS service-tool-runner
RUN apt-get update \
    && apt-get install -y --no-install-recommends bubblewrap python3 \
    && rm -rf /var/lib/apt/lists/* \
    && /usr/bin/python3 -S -I -c "import json, ast, zoneinfo" \
    && install -d -o 10001 -g 10001 -m 0711 /var/lib/agentry/workspaces
COPY --from=build /out/docs /usr/share/agentry/docs
ENV TOOL_RUNNER_PORT=8082 PORT_VARIABLE=TOOL_RUNNER_PORT \
    TOOL_RUNNER_WORKSPACE_DIR=/var/lib/agentry/workspaces \
    TOOL_RUNNER_DOCS_DIR=/usr/share/agentry/docs
EXPOSE 8082
ENTRYPOINT ["agentry-tool-runner"]

# The conversation log sequencer and the only owner of state. Without MONGODB_URL it keeps
# an embedded SQLite file in MEMORY_DATA_DIR: mount a volume there, and run ONE replica
# (two processes on one file would be two sequencers).
FROM runtime AS service-memory
RUN install -d -o 10001 -g 10001 -m 0700 /var/lib/agentry/memory
ENV MEMORY_PORT=8083 PORT_VARIABLE=MEMORY_PORT \
    MEMORY_DATA_DIR=/var/lib/agentry/memory
EXPOSE 8083
ENTRYPOINT ["agentry-memory"]

# The rule-based OpenAI-compatible stand-in (not an LLM).
FROM runtime AS service-offline-model
ENV OFFLINE_MODEL_PORT=8090 PORT_VARIABLE=OFFLINE_MODEL_PORT
EXPOSE 8090
ENTRYPOINT ["agentry-offline-model"]

# ---- the image: the chosen service's stage, the venv, and no root ----------------------------

FROM service-${SERVICE}
COPY --from=build /opt/venv /opt/venv
USER 10001:10001
# No curl in slim images: Python asks /healthz (liveness; /readyz also needs the broker) on
# the port the service's setting says, as the container's environment may override it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ[os.environ['PORT_VARIABLE']] + '/healthz', timeout=2)"]
