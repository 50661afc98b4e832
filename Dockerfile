# The bot, as a non-root user. Mount a volume at /data for config.toml and the SQLite database:
#   docker build -t horde-bot .
#   docker run --rm -v horde-bot-data:/data -e DISCORD_TOKEN -e HORDE_BOT_SECRET_KEYS horde-bot sync   # once
#   docker run -d -v horde-bot-data:/data -e DISCORD_TOKEN -e HORDE_BOT_SECRET_KEYS horde-bot
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The user first: it never changes. Numeric ids, so a runtime can check it is not root (runAsNonRoot).
RUN groupadd --system --gid 10001 horde \
 && useradd --system --uid 10001 --gid 10001 --home-dir /data --shell /usr/sbin/nologin horde \
 && mkdir -p /data \
 && chown 10001:10001 /data

WORKDIR /app
# The dependencies alone, from pyproject.toml: this layer is rebuilt only when they change, not
# when the code does.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
      > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Then the code, installed without touching the dependencies above.
COPY README.md ./
COPY bot ./bot
COPY cogs ./cogs
RUN pip install --no-deps .
COPY config.example.toml /app/config.example.toml

USER 10001:10001
# Relative paths in config.toml are relative to the working directory. From /, the example's
# database (sqlite:///data/bot.sqlite3) is /data/bot.sqlite3: in the volume.
WORKDIR /
VOLUME ["/data"]

# /data/config.toml if present; otherwise the documented defaults, copied there to edit.
ENTRYPOINT ["sh", "-c", "[ -f /data/config.toml ] || cp /app/config.example.toml /data/config.toml; exec python -m bot --config /data/config.toml \"$@\"", "--"]
CMD ["run"]
