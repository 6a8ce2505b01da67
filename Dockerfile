# Three stages. `deps` compiles every dependency from Cargo.toml and Cargo.lock alone (stub
# sources), so its layer is reused until the lockfile changes; `build` adds our sources and compiles
# only our crate; the runtime image is debian-slim with the binary, as an unprivileged user. Both
# build steps are scripts/build-release, which tests/it/container.rs runs the same way.
FROM rust:1-slim-bookworm AS deps
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY scripts/build-release scripts/build-release
RUN scripts/build-release --deps-only

FROM deps AS build
COPY . .
RUN scripts/build-release

FROM debian:bookworm-slim
# curl only for the HEALTHCHECK below.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10402 --home-dir /var/lib/x402 --create-home x402
COPY --from=build /src/target/release/x402-facilitator /usr/local/bin/x402-facilitator
USER x402
WORKDIR /var/lib/x402
# Listen on all interfaces inside the container; everything else comes from X402__… variables
# or a file mounted and named by X402_CONFIG.
ENV X402__SERVER__HOST=0.0.0.0 \
    X402__SERVER__PORT=8402 \
    X402__SERVER__LOG_FORMAT=json
EXPOSE 8402
# /health answers 200 while the ledger answers (503 otherwise).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD curl -fsS "http://127.0.0.1:${X402__SERVER__PORT}/health" || exit 1
ENTRYPOINT ["x402-facilitator"]
CMD ["serve"]
