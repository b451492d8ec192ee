# syntax=docker/dockerfile:1.7
# One application image for every process (console, api, sink, collectors, health evaluator, auto-shutdown
# agent), plus a small nginx-rtmp image. Build: docker build -t stream-platform .  (nginx: --target nginx-rtmp)
#
# The base images are build arguments so the same file builds where Docker Hub is out of reach (`make rehearsal`
# passes local stand-ins); the defaults are the production images. PIP_INDEX_URL may name a local index (the
# rehearsal serves a wheelhouse on loopback), so the build then needs no other network.

ARG PYTHON_IMAGE=python:3.12-slim
ARG DEBIAN_IMAGE=debian:bookworm-slim

# The app image is the last stage, so `docker build .` builds it; nginx-rtmp comes first, so the classic builder
# (which builds every stage before its target) builds nothing else for `--target nginx-rtmp`.

# --- nginx-rtmp from Debian packages, run as an unprivileged user -------------------------------------------
FROM ${DEBIAN_IMAGE} AS nginx-rtmp
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx libnginx-mod-rtmp curl \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stderr /var/log/nginx/error.log \
    && groupadd --system --gid 10001 nginx \
    && useradd --system --uid 10001 --gid nginx --home-dir /var/lib/nginx --shell /usr/sbin/nologin nginx \
    && chown -R nginx:nginx /var/lib/nginx
COPY backend/streams/nginx-rtmp.conf /etc/nginx/nginx.conf.template
# The same uid as the app image's user: the config that `stream-platform streams nginx-config` renders holds the
# callback token, so it is readable by its owner only. It keeps pid and temp files under /var/lib/nginx, which
# this user owns; RTMP (1935) and stat/control (8088) are unprivileged ports.
USER 10001:10001
EXPOSE 1935
HEALTHCHECK --interval=30s --timeout=5s CMD ["curl", "-fsS", "http://127.0.0.1:8088/stat"]
CMD ["nginx", "-g", "daemon off;", "-c", "/etc/nginx/nginx.conf"]

# --- requirements: the dependency list alone, so that editing pyproject.toml elsewhere keeps the cache ---------
FROM ${PYTHON_IMAGE} AS requirements
COPY pyproject.toml /tmp/
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /requirements.txt

# --- build: a virtual environment with the dependencies, and the project's own wheel -----------------------
FROM ${PYTHON_IMAGE} AS build
ARG PIP_INDEX_URL=https://pypi.org/simple
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --upgrade pip
# Dependencies first: this layer stays cached while the dependency list is unchanged.
COPY --from=requirements /requirements.txt ./
RUN /opt/venv/bin/pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY backend ./backend
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /project .

# --- runtime: slim, non-root ------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    SECRETS_ENV_FILE=/run/secrets/secrets.env \
    HEALTHCHECK_URL=http://127.0.0.1:8080/health
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && install -d -o root -g root -m 0755 /app \
    && install -d -o app -g app -m 0700 /app/.data \
    && install -d -o app -g app -m 0755 /rendered
COPY --from=build /opt/venv /opt/venv
COPY --from=build /project /tmp/project
RUN pip install --no-cache-dir --no-deps /tmp/project/*.whl \
    && rm -rf /tmp/project
WORKDIR /app
COPY --chown=app:app app ./app
COPY --chown=app:app pages ./pages
COPY --chown=app:app .streamlit ./.streamlit
# Local state (the local secrets store, models, the agent's countdown) lives in /app/.data, owned by the app
# user: mount a volume there (compose: app-data). /rendered receives the rendered nginx config.
# The local secrets store's key never lives in /app/.data: pass SECRETS_LOCAL_KEY, or mount a mode 0600 file owned
# by uid 10001 elsewhere (e.g. /run/secrets/secrets-local-key) and set SECRETS_LOCAL_KEY_FILE to it.
USER app
EXPOSE 8080 8501 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["stream-platform"]
CMD ["api", "serve", "--host", "0.0.0.0", "--port", "8080"]
