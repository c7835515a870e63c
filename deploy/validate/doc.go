// Package validate holds the tests that check deploy/ without Docker or a cluster: the
// Dockerfiles, the Compose file and the Kubernetes manifests, each against the services the
// repository really has and the settings their binaries really bind. The package has no code
// of its own; `go test ./deploy/validate` is what CI runs.
package validate
