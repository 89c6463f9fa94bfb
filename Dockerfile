# tomchat's image: the web client built with Node, the wheel built from it, a slim runtime.
#   docker build -t tomchat .
#   docker compose up            (PostgreSQL, Redis, two tomchat processes, nginx on :8080)

FROM node:22-slim AS web
WORKDIR /src/web
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY web/ ./
RUN npm run build

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml setup.py MANIFEST.in README.md requirements/lock.txt ./
COPY src/ src/
COPY --from=web /src/src/tomchat/static/ src/tomchat/static/
# The client is built already (no web/ here): the build hook packages it as it is.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels . \
 && pip wheel --no-cache-dir --wheel-dir /wheels -r lock.txt

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 tomchat
COPY --from=wheel /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels tomchat \
 && rm -rf /wheels
COPY --chmod=755 docker/entrypoint.sh /usr/local/bin/tomchat-entrypoint
USER tomchat
WORKDIR /home/tomchat
ENV TOMCHAT_HOST=0.0.0.0 \
    TOMCHAT_PORT=8000 \
    TOMCHAT_DATABASE_URL=sqlite+aiosqlite:////home/tomchat/data/tomchat.db \
    TOMCHAT_MEDIA_DIR=/home/tomchat/data/media \
    TOMCHAT_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME /home/tomchat/data
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"TOMCHAT_PORT\"]}/api/ready', timeout=2)"
# SIGTERM drains (replies end "interrupted") and exits in well under docker's 10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["tomchat-entrypoint"]
CMD ["serve"]
