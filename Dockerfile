# seedance-bot: slim Python, the package installed, data in a volume, a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    SEEDANCE_DATA_DIR=/data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app seedance \
    && mkdir -p /data && chown seedance /data

USER seedance
VOLUME ["/data"]
# The optional callback receiver (SEEDANCE_WEBHOOK_BASE_URL) listens here.
EXPOSE 8080
ENTRYPOINT ["seedance-bot"]
CMD ["run"]
