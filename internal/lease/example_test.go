package lease_test

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twinflow/twinflow/internal/lease"
)

// A component runs its work under Hold, so that it runs on one node at a time and stops as
// soon as this node loses the lease.
func ExampleKeeper_Hold() {
	k, err := lease.New(lease.Config{Holder: "twins.example.com/node-1"}, &lease.Local{}, slog.New(slog.DiscardHandler))
	if err != nil {
		panic(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- k.Run(ctx) }()

	err = k.Hold(ctx, "relay/webhook-1", func(ctx context.Context, g lease.Grant) error {
		// The relay would run here until ctx ends, stamping its writes with g.Token.
		fmt.Printf("%s holds %s with token %d\n", g.Holder, g.Name, g.Token)
		return nil
	})
	fmt.Println("Hold returned", err)
	stop()
	fmt.Println("Run returned", <-ran)
	// Output:
	// twins.example.com/node-1 holds relay/webhook-1 with token 1
	// Hold returned <nil>
	// Run returned <nil>
}
