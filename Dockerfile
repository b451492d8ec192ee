# syntax=docker/dockerfile:1.7
# One application image for every process (console, api, sink, collectors, health evaluator, auto-shutdown
# agent), plus a small nginx-rtmp image. Build: docker build -t stream-platform .  (nginx: --target nginx-rtmp)

ARG PYTHON_VERSION=3.12

# --- build: wheels for the project and its dependencies ------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
RUN pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md ./
COPY backend ./backend
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# --- runtime: slim, non-root ------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim AS app
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    SECRETS_ENV_FILE=/run/secrets/secrets.env \
    HEALTHCHECK_URL=http://127.0.0.1:8080/health
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY --chown=app:app app ./app
COPY --chown=app:app pages ./pages
COPY --chown=app:app .streamlit ./.streamlit
USER app
EXPOSE 8080 8501 9108
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen(os.environ['HEALTHCHECK_URL'], timeout=4)"]
ENTRYPOINT ["stream-platform"]
CMD ["api", "serve", "--host", "0.0.0.0", "--port", "8080"]

# --- nginx-rtmp from Debian packages -----------------------------------------------------------------
FROM debian:bookworm-slim AS nginx-rtmp
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx libnginx-mod-rtmp curl \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stderr /var/log/nginx/error.log
COPY infrastructure/scripts/nginx-rtmp.conf /etc/nginx/nginx.conf.template
EXPOSE 1935
HEALTHCHECK --interval=30s --timeout=5s CMD ["curl", "-fsS", "http://127.0.0.1:8088/stat"]
CMD ["nginx", "-g", "daemon off;", "-c", "/etc/nginx/nginx.conf"]
