# syntax=docker/dockerfile:1
# pgvigil: the exporter (`pgvigil serve`) and the maintenance sidecar (`pgvigil sidecar`).
# Slim and non-root: a build stage makes the wheel, the runtime stage holds only the installed
# package (psycopg[binary] brings its own libpq, so no compiler or -dev packages ship).
FROM python:3.11.10-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
# pgvigil/demo/dashboards/*.json link here; the wheel stores the files they point at.
COPY grafana/dashboards ./grafana/dashboards
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels /wheels/pgvigil-*.whl

FROM python:3.11.10-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels pgvigil \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin pgvigil \
 && install -d -o 10001 -g 10001 /var/lib/pgvigil
# Reports and rendered configs live here; a named volume mounted on it inherits the owner.
USER 10001:10001
EXPOSE 9839 9840
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PGVIGIL_PORT', '9839') + '/healthz', timeout=4)"]
ENTRYPOINT ["pgvigil"]
CMD ["serve", "--web.listen-address", ":9839"]
