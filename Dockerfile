# TaskForge broker image.
#
#   docker build -t taskforge .
#   docker run -d -p 7700:7700 -v taskforge-data:/data taskforge
#
# The root token is generated on first start into /data/root_token (mode 0600); read it
# with `docker exec <container> cat /data/root_token`, or set TASKFORGE_ROOT_TOKEN.
# A bind-mounted /data must be writable by uid 10001.

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
# Everything the workspace needs; .dockerignore keeps target/, .git/ and data out.
COPY . .
RUN cargo build --release --locked --bin taskforge

FROM debian:bookworm-slim
RUN groupadd --system --gid 10001 taskforge \
    && useradd --system --uid 10001 --gid taskforge --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin taskforge \
    && mkdir -p /data \
    && chown taskforge:taskforge /data \
    && chmod 0700 /data
COPY --from=builder /build/target/release/taskforge /usr/local/bin/taskforge
# Production defaults (JSON logs, fsync always); the protocol port on every interface.
# The admin port stays on localhost unless TASKFORGE_ADMIN_LISTEN=0.0.0.0:7701 is set.
ENV TASKFORGE_ENV=production \
    TASKFORGE_DATA_DIR=/data \
    TASKFORGE_LISTEN=0.0.0.0:7700
USER taskforge:taskforge
VOLUME ["/data"]
EXPOSE 7700 7701
# PING is accepted before the handshake, so the check needs no credentials. It exercises
# the protocol port clients use, which the admin port's /healthz would not; orchestrators
# that route traffic should also probe GET /readyz on the admin port (503 while starting,
# while storage fails, and once shutdown begins).
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["taskforge", "ping", "--addr", "127.0.0.1:7700"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["taskforge"]
CMD ["server"]
