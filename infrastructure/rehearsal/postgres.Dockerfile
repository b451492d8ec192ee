# Stand-in for timescale/timescaledb where Docker Hub is out of reach: PostgreSQL 15 from Debian packages, run by
# an entrypoint that honours the official image's POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB and data
# directory. The platform uses its `postgres` profile on it. Used by `make rehearsal` only.
ARG BASE
FROM ${BASE}
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* \
    && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
    && install -d -o postgres -g postgres -m 2775 /var/run/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
USER postgres
EXPOSE 5432
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
