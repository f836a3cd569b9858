package cache

import (
	"context"
	"sync/atomic"
)

// waitingContext counts the Gets that wait on it. Get asks a context for Done only once it has joined a fetch (or
// started one) and waits for its outcome, so the count tells a test when a burst of callers has gathered on one
// fetch, without a hook in the cache itself.
type waitingContext struct {
	context.Context
	waiting atomic.Int64
}

func newWaitingContext() *waitingContext { return &waitingContext{Context: context.Background()} }

func (c *waitingContext) Done() <-chan struct{} {
	c.waiting.Add(1)
	return c.Context.Done()
}
