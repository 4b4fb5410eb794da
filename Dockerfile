# One image for every tollway service: the entrypoint is the `tollway` CLI, and the command
# picks the service (authz, webhook, metering, portal, api serve, stripe-standin); `authz` by
# default.
# The compose demo also runs the dev kit's mail sink and upstream from it (the `demo` extra).
# tests/e2e/test_compose.py builds the wheel from exactly the files copied here, installs it
# in a fresh venv and starts every command compose and the Istio manifests run.
#   docker build -t tollway .
#   docker run tollway authz --workers 2
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY tollway ./tollway
COPY authz ./authz
COPY webhook ./webhook
COPY metering ./metering
COPY portal ./portal
COPY api ./api
COPY tollway_client ./tollway_client
COPY cli ./cli
COPY devkit ./devkit
RUN pip wheel --no-cache-dir --wheel-dir /wheels '.[demo]'

FROM python:3.11-slim
RUN useradd --system --uid 10001 --create-home --home-dir /home/tollway tollway
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels 'tollway[demo]' && rm -rf /wheels
USER tollway
WORKDIR /home/tollway
# Inside a container the services listen on every address; the ports are the defaults.
ENV TOLLWAY_AUTHZ_HOST=0.0.0.0 \
    TOLLWAY_WEBHOOK_HOST=0.0.0.0 \
    TOLLWAY_METERING_HOST=0.0.0.0 \
    TOLLWAY_ACCESSLOG_HOST=0.0.0.0 \
    TOLLWAY_STANDIN_HOST=0.0.0.0 \
    TOLLWAY_PORTAL_HOST=0.0.0.0 \
    TOLLWAY_API_HOST=0.0.0.0 \
    TOLLWAY_SPOOL_DIR=/home/tollway/spool \
    PYTHONUNBUFFERED=1
EXPOSE 9191 9192 8081 8082 8083 8084 8085 9193 9194 12111
# `tollway health` asks whichever service PID 1 runs: gRPC health for authz, /healthz else.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["tollway", "health"]
ENTRYPOINT ["tollway"]
CMD ["authz"]
