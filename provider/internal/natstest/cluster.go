package natstest

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/infisical-secrets-provider/infisical-secrets-provider/provider/internal/eventually"
)

// StartCluster runs an n-node NATS cluster on loopback with random ports, waits until every node has a route to
// every other, and shuts the nodes down when the test ends. A test may shut a node down earlier to simulate its loss.
func StartCluster(tb testing.TB, n int) []*server.Server {
	tb.Helper()
	if n < 1 {
		tb.Fatalf("natstest.StartCluster: need at least one node, got %d", n)
	}
	name := fmt.Sprintf("natstest-%d", time.Now().UnixNano())
	nodes := make([]*server.Server, 0, n)
	var seed []*url.URL
	for i := range n {
		srv, err := Run(&server.Options{
			ServerName: fmt.Sprintf("%s-%d", name, i),
			Cluster: server.ClusterOpts{
				Name: name,
				Host: "127.0.0.1",
				Port: server.RANDOM_PORT,
				// One route per peer keeps "all routes are up" a simple count.
				PoolSize: -1,
			},
			Routes: seed,
		})
		if err != nil {
			tb.Fatalf("start NATS cluster node %d: %v", i, err)
		}
		tb.Cleanup(srv.Shutdown)
		nodes = append(nodes, srv)
		if seed == nil {
			addr := srv.ClusterAddr()
			if addr == nil {
				tb.Fatalf("NATS cluster node 0 has no route listener")
			}
			// The other nodes learn each other from the seed node's gossip, forming a full mesh.
			seed = []*url.URL{{Scheme: "nats-route", Host: addr.String()}}
		}
	}
	eventually.NoError(tb, "the NATS cluster's routes", func() error {
		if !fullMesh(nodes) {
			return fmt.Errorf("routes per node: %s", routeCounts(nodes))
		}
		return nil
	})
	return nodes
}

func fullMesh(nodes []*server.Server) bool {
	for _, s := range nodes {
		if s.NumRoutes() < len(nodes)-1 {
			return false
		}
	}
	return true
}

func routeCounts(nodes []*server.Server) string {
	counts := make([]string, len(nodes))
	for i, s := range nodes {
		counts[i] = fmt.Sprintf("node %d: %d routes", i, s.NumRoutes())
	}
	return strings.Join(counts, ", ")
}

// ClientURLs returns the nodes' client URLs, comma separated, in the form NATS_URL takes.
func ClientURLs(nodes []*server.Server) string {
	urls := make([]string, len(nodes))
	for i, s := range nodes {
		urls[i] = s.ClientURL()
	}
	return strings.Join(urls, ",")
}
