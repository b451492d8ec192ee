# Stand-in for python:3.12-slim where Docker Hub is out of reach: Debian's Python 3 in a virtual environment
# that comes first on PATH, so `python` and `pip` behave as in the official image. Used by `make rehearsal` only.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 python3-venv \
        ca-certificates passwd \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local/python
ENV PATH=/usr/local/python/bin:$PATH LANG=C.UTF-8
CMD ["python3"]
