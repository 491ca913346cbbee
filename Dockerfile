# sentinel in a container: `docker build -t sentinel .` (needs a registry for the base),
# or `scripts/image` here, which builds on a debootstrap base and a local wheelhouse:
#   docker build --build-arg BASE=sentinel-base:bookworm-... \
#     --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse -t sentinel .
# Run it as root with the host's kernel log, processes and Docker socket, e.g.
#   docker run -d --pid host --device /dev/kmsg --cap-add SYSLOG \
#     -v /sys/fs/cgroup:/sys/fs/cgroup:ro -v /var/run/docker.sock:/var/run/docker.sock \
#     -v sentinel:/var/lib/sentinel sentinel
# or beside one app as a sidecar: ... --pid container:APP sentinel run --mode sidecar
# BASE: any image with Python >= 3.11 as `python3` and its venv module, the same in both stages
# (the venv links to the base's interpreter).
ARG BASE=python:3.12-slim

# --- build: sentinel and its dependencies (every mode's: Kubernetes' client too) in a venv --
FROM ${BASE} AS build
# pip reads these from the environment: PIP_NO_INDEX=1 with PIP_FIND_LINKS=<a wheelhouse in
# the build context, copied to /src/wheelhouse> installs without any package index.
ARG PIP_NO_INDEX=
ARG PIP_FIND_LINKS=
ENV PIP_NO_INDEX=${PIP_NO_INDEX} \
    PIP_FIND_LINKS=${PIP_FIND_LINKS} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
# .dockerignore lets in only pyproject.toml, README.md, sentinel/ and wheelhouse/.
COPY . /src
# pip, setuptools, the dependencies' own test suites and the Kubernetes client's asyncio
# copy (68 MB; sentinel uses the synchronous client) are not needed to run sentinel.
RUN python3 -m venv /opt/sentinel \
    && /opt/sentinel/bin/python -m pip install "/src[kubernetes]" \
    && /opt/sentinel/bin/python -m pip uninstall --yes pip setuptools wheel \
    && find /opt/sentinel -depth -type d \( -name tests -o -name test \) \
       -path '*/site-packages/*' -exec rm -rf {} + \
    && find /opt/sentinel -depth -type d -path '*/site-packages/kubernetes/aio' \
       -exec rm -rf {} + \
    && /opt/sentinel/bin/sentinel --version \
    && /opt/sentinel/bin/python -c "import sentinel.clients.kubernetes as k; k._kubernetes()"

# --- run -------------------------------------------------------------------------------------
FROM ${BASE}
ARG VERSION=unknown
ARG REVISION=unknown
# The repository URL (no default: the project publishes none yet).
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="sentinel" \
      org.opencontainers.image.description="Keeps memory-leaking containers from dying silently: kernel OOM kill records, forecasts and policies." \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
ENV PATH=/opt/sentinel/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/sentinel /opt/sentinel
# The state (settings.state defaults to /var/lib/sentinel/state.db) outlives the container.
VOLUME /var/lib/sentinel
# Runs as root on purpose: it reads /dev/kmsg and other processes' /proc entries, talks to the
# Docker socket and signals or restarts what a policy names.
# `sentinel health` asks the daemon's /healthz: exit 0 when healthy, 1 when not.
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["sentinel", "health"]
ENTRYPOINT ["sentinel"]
CMD ["run"]
