# syntax=docker/dockerfile:1
# Build: docker build -t unpod-exporter .
# Try:   docker run --rm -p 9877:9877 unpod-exporter --demo   (then open http://localhost:9877/)

FROM python:3.11-slim-bookworm AS build
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# Dependencies first, from the lock file: exact versions, every file checked against its hash.
COPY requirements.lock ./
RUN python -m venv /opt/unpod-exporter \
 && /opt/unpod-exporter/bin/pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN pip wheel --no-deps --wheel-dir /wheels . \
 && /opt/unpod-exporter/bin/pip install --no-deps /wheels/*.whl \
 && /opt/unpod-exporter/bin/pip check

FROM python:3.11-slim-bookworm
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="unpod-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Unpod voice-agent campaign analytics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/unpod-exporter/unpod-exporter"
ENV PATH=/opt/unpod-exporter/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /opt/unpod-exporter /opt/unpod-exporter
# A fixed, unprivileged UID; nothing is written at run time, so a read-only root works.
USER 10001:10001
EXPOSE 9877
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-m", "exporter.healthcheck"]
ENTRYPOINT ["unpod-exporter"]
CMD ["--config.file", "/etc/unpod-exporter/config.yaml"]
