# The bot, as a non-root user. Mount a volume at /data for config.toml and the SQLite database:
#   docker build -t horde-bot .
#   docker run -v horde-bot-data:/data -e DISCORD_TOKEN -e HORDE_BOT_SECRET_KEYS horde-bot
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install . \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin horde \
 && mkdir -p /data \
 && chown horde:horde /data
COPY --chown=horde:horde config.example.toml /app/config.example.toml

USER horde
WORKDIR /data
VOLUME ["/data"]

# /data/config.toml if present; otherwise the documented defaults, with the database under /data.
ENTRYPOINT ["sh", "-c", "[ -f /data/config.toml ] || cp /app/config.example.toml /data/config.toml; exec python -m bot --config /data/config.toml \"$@\"", "--"]
CMD ["run"]
