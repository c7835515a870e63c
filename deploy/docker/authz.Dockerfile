# The authz service's image. Build it from the repository root, which is the Go workspace:
#   docker build -f deploy/docker/authz.Dockerfile --build-arg VERSION=$(git describe --always) .
# Every service's Dockerfile is this one with its name changed (deploy/validate checks it).

# The build stage's Go is the version go.work names (deploy/validate checks that too).
FROM golang:1.26.7-bookworm AS build
WORKDIR /src
COPY . .
ARG VERSION=dev
# A static binary without cgo runs on the distroless base, which has no C library; -trimpath
# keeps the build machine's paths out of it.
ENV CGO_ENABLED=0 GOFLAGS=-trimpath
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -ldflags "-s -w -X main.version=${VERSION}" -o /out/authz ./services/authz/cmd/authz && \
    go build -ldflags "-s -w" -o /out/healthprobe ./kernel/cmd/healthprobe

# The run stage has no shell and no package manager, and runs as the distroless nonroot user
# (65532); healthprobe is what Compose's health check runs, since there is no curl.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/authz /out/healthprobe /usr/local/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/authz"]
