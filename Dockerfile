# syntax=docker/dockerfile:1
#
# One image for every function of the KeyPackage service, and the same
# binaries zipped for AWS Lambda.
#
#   docker build -t keypackage-service .
#       The runtime image: /usr/local/bin/{ingest,query,consume,cleanup,gateway},
#       the relay (/usr/local/bin/relay, with KP_RELAY_LISTEN=0.0.0.0:7777) and
#       the strfry plugin (/usr/local/bin/strfry-plugin, to copy into a strfry image).
#       The command picks the function (default: gateway), e.g.
#       `docker run ... keypackage-service /usr/local/bin/ingest`; Cloud Run
#       sets it per service (terraform/gcp).
#
#   docker build --target lambda --output type=local,dest=dist/lambda .
#       dist/lambda/<function>.zip for runtime provided.al2023: `bootstrap`
#       (terraform/aws/bootstrap) and the binary `kp-function`. Add
#       --platform linux/arm64 for arm64 functions.
#
# The binaries are built on Debian bullseye (glibc 2.31), so that they run on
# both runtimes: distroless Debian 12 (glibc 2.36) and Amazon Linux 2023
# (glibc 2.34). TLS uses rustls with the Mozilla roots compiled in, and SQLite
# is compiled in, so the runtime needs glibc and libgcc only.

ARG RUST_VERSION=1.91

FROM rust:${RUST_VERSION}-bullseye AS build
WORKDIR /src
# aws-lc-sys (through rustls) builds with cmake.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake zip \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
      -p ingest -p query -p consume -p cleanup -p gateway -p relay -p strfry-plugin \
 && mkdir -p /out \
 && for f in ingest query consume cleanup gateway relay strfry-plugin; do cp "target/release/$f" /out/; done

# The Lambda zips: `bootstrap` reads the secrets, then runs `kp-function`.
FROM build AS lambda-zips
RUN set -eu; mkdir -p /zips; \
    for f in ingest query consume cleanup gateway; do \
      mkdir -p "/pkg/$f"; \
      cp "/out/$f" "/pkg/$f/kp-function"; \
      cp terraform/aws/bootstrap "/pkg/$f/bootstrap"; \
      chmod 755 "/pkg/$f/kp-function" "/pkg/$f/bootstrap"; \
      (cd "/pkg/$f" && zip -X -q "/zips/$f.zip" bootstrap kp-function); \
    done

FROM scratch AS lambda
COPY --from=lambda-zips /zips/ /

# A writable directory for the SQLite file of a self-hosted gateway.
FROM build AS data-dir
RUN mkdir -p /data

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/ /usr/local/bin/
COPY --from=data-dir --chown=65532:65532 /data /data
WORKDIR /data
ENV RUST_LOG=info \
    PORT=8080
EXPOSE 8080
USER 65532:65532
CMD ["/usr/local/bin/gateway"]
