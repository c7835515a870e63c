# The gateway's image, with the browser console it serves under /console/ and the REST reference
# page under /docs/. Build it from the
# repository root, which is the Go workspace:
#   docker build -f deploy/docker/gateway.Dockerfile --build-arg VERSION=$(git describe --always) .

# The console is a static bundle built with the versions console/package-lock.json pins.
FROM node:20.20.2-bookworm-slim AS console
WORKDIR /src
COPY gen/ts gen/ts
COPY console console
RUN npm ci --prefix console --no-audit --no-fund --loglevel=error && \
    npm run --silent --prefix console build

# The REST reference page is Scalar's bundle, pinned by apidocs/package-lock.json, beside our
# page; it renders the document the gateway serves at /openapi.json.
FROM node:20.20.2-bookworm-slim AS apidocs
WORKDIR /src
COPY apidocs apidocs
RUN npm ci --prefix apidocs --no-audit --no-fund --loglevel=error && \
    npm run --silent --prefix apidocs build

# The build stage's Go is the version go.work names (deploy/validate checks it).
FROM golang:1.26.7-bookworm AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
# A static binary without cgo runs on the distroless base, which has no C library; -trimpath
# keeps the build machine's paths out of it.
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/gateway ./gateway/cmd/gateway && \
    go build -ldflags "-s -w" -o /out/healthprobe ./kernel/cmd/healthprobe

# The run stage has no shell and no package manager, and runs as the distroless nonroot user
# (65532). BASALT_GATEWAY_CONSOLE_DIR=/srv/console turns the console on, and
# BASALT_GATEWAY_DOCS_DIR=/srv/docs the reference page.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /out/healthprobe /usr/local/bin/
COPY --from=console /src/console/dist /srv/console
COPY --from=apidocs /src/apidocs/dist /srv/docs
USER 65532:65532
EXPOSE 8080 9080
ENTRYPOINT ["/usr/local/bin/gateway"]
