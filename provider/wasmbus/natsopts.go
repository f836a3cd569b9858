package wasmbus

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// NATSOptions returns the options for the lattice RPC connection: the provider key as client name, the host's JWT
// and seed when both are set, reconnecting forever with jitter (the host may restart NATS under us), and one log
// line per disconnect and per reconnect on log (nil: slog.Default()). The seed is only handed to nats.go, never
// logged.
func NATSOptions(hd *HostData, log *slog.Logger) []nats.Option {
	if log == nil {
		log = slog.Default()
	}
	opts := []nats.Option{
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("disconnected from NATS, reconnecting", slog.Any("error", err))
				return
			}
			log.Debug("disconnected from NATS")
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("reconnected to NATS", slog.String("url", nc.ConnectedUrlRedacted()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subject := ""
			if sub != nil {
				subject = sub.Subject
			}
			log.Warn("NATS asynchronous error", slog.String("subject", subject), slog.Any("error", err))
		}),
	}
	if hd == nil {
		return opts
	}
	opts = append(opts, nats.Name(hd.ProviderKey))
	if hd.LatticeRPCUserJWT != "" && hd.LatticeRPCUserSeed != "" {
		opts = append(opts, nats.UserJWTAndSeed(hd.LatticeRPCUserJWT, hd.LatticeRPCUserSeed.Reveal()))
	}
	return opts
}
