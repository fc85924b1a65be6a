# syntax=docker/dockerfile:1
# Portico's image: built with the locked dependencies, run as a non-root user on a
# distroless base (glibc and CA certificates, no shell). The configuration is mounted at
# /etc/portico (gateway.yaml and routes/); file changes there reload it.
#
#   docker build -t portico .
#   docker run -p 8080:8080 -v "$PWD:/etc/portico:ro" portico
#
# The mounted gateway.yaml decides the listeners: `server.listen: 0.0.0.0:8080` to be
# reachable, and `admin.listen` (0.0.0.0:9901 for the health check and probes; set
# `admin.token`, and do not publish the port) or no admin listener at all.
#
# tests/container.rs runs this file's build steps outside a container and checks the rest.

FROM rust:1.88-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src src
COPY gateway gateway
COPY bffs bffs
# The demo embeds the repository's own configuration; the binary, the admin API's
# OpenAPI document.
COPY gateway.yaml gateway.yaml
COPY routes routes
COPY openapi openapi
RUN cargo build --release --locked --bin portico

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/portico /usr/local/bin/portico
USER 65532:65532
EXPOSE 8080 9901
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/portico", "probe", "http://127.0.0.1:9901/health"]
ENTRYPOINT ["/usr/local/bin/portico"]
CMD ["serve", "--config", "/etc/portico"]
