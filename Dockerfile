# The webhooks binary (server, worker, standalone, dlq) in a small runtime image.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release -p system --bin webhooks

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/webhooks /usr/local/bin/webhooks
RUN useradd --system --home /var/lib/webhooks webhooks && mkdir -p /var/lib/webhooks && chown webhooks /var/lib/webhooks
USER webhooks
ENV DATA_DIR=/var/lib/webhooks
ENTRYPOINT ["webhooks"]
