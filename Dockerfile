# Multi-stage build: the same scripts/build-release the repo documents, then a slim non-root image.
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN scripts/build-release

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10402 --home-dir /var/lib/x402 --create-home x402
COPY --from=build /src/target/release/x402-facilitator /usr/local/bin/x402-facilitator
USER x402
WORKDIR /var/lib/x402
# Listen on all interfaces inside the container; everything else comes from X402__… variables
# or a file mounted and named by X402_CONFIG.
ENV X402__SERVER__HOST=0.0.0.0 \
    X402__SERVER__LOG_FORMAT=json
EXPOSE 8402
ENTRYPOINT ["x402-facilitator"]
CMD ["serve"]
