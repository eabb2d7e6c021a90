# egw gateway image: builds for arm64 (Raspberry Pi 4/5) and amd64 from the same file.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    EGW_DATA_DIR=/data \
    EGW_API_PORT=8080 \
    EGW_OCPP_PORT=9000

# make: the image installs the gateway exactly as `make install` does on any machine
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md Makefile ./
COPY supervisor ./supervisor
COPY actors ./actors
COPY storage ./storage
COPY simulators ./simulators
# the fleet receiver: `egw ingest`, and the CLI imports every command it offers
COPY fleet ./fleet
RUN make install

# state (database, device key, API token) survives container updates in this volume
VOLUME /data
EXPOSE 8080 9000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/app/.venv/bin/python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/api/health' % os.environ.get('EGW_API_PORT', '8080'), timeout=4)"]

STOPSIGNAL SIGTERM
CMD ["/app/.venv/bin/egw", "run"]
