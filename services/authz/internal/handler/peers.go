package handler

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"connectrpc.com/connect"

	authzv1 "github.com/basaltplatform/basalt/gen/go/basalt/authz/v1"
	"github.com/basaltplatform/basalt/gen/go/basalt/authz/v1/authzv1connect"
	"github.com/basaltplatform/basalt/kernel/rpcclient"
)

// Peers reaches every instance of the authz service that discovery knows.
type Peers struct {
	rpc     *rpcclient.Client
	timeout time.Duration
}

// NewPeers returns peers found through rpc's resolver; each call waits at most timeout.
func NewPeers(rpc *rpcclient.Client, timeout time.Duration) *Peers {
	return &Peers{rpc: rpc, timeout: timeout}
}

// SyncAll calls Sync(revision) on every instance at once and waits for all of them.
func (p *Peers) SyncAll(ctx context.Context, revision int64) error {
	eps, err := p.rpc.Resolver().Endpoints(ctx, "authz")
	if err != nil {
		return err
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, ep := range eps {
		wg.Go(func() {
			client := rpcclient.ForEndpoint(p.rpc, ep, authzv1connect.NewAuthzServiceClient)
			cctx, cancel := context.WithTimeout(ctx, p.timeout)
			defer cancel()
			if _, err := client.Sync(cctx, connect.NewRequest(&authzv1.SyncRequest{Revision: revision})); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", ep.ID, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
