package leasetest

import (
	"fmt"
	"testing"
)

// Bench measures the round trips of a table: Acquire and Release of one name, Renew of one
// grant, and Renews of one grant per goroutine in parallel (a node keeping many leases).
func Bench(b *testing.B, open Opener) {
	b.Run("AcquireRelease", func(b *testing.B) {
		tb := open(b, "t")
		for b.Loop() {
			g, err := tb.Acquire(b.Context(), "n", "node-a", Long)
			if err != nil {
				b.Fatal(err)
			}
			if err := tb.Release(b.Context(), g); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Renew", func(b *testing.B) {
		tb := open(b, "t")
		g, err := tb.Acquire(b.Context(), "n", "node-a", Long)
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if g, err = tb.Renew(b.Context(), g, Long); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("RenewParallel", func(b *testing.B) {
		tb := open(b, "t")
		names := make(chan string, 1024)
		for i := range cap(names) {
			names <- fmt.Sprint("n", i)
		}
		b.RunParallel(func(pb *testing.PB) {
			g, err := tb.Acquire(b.Context(), <-names, "node-a", Long)
			if err != nil {
				b.Error(err)
				return
			}
			for pb.Next() {
				if g, err = tb.Renew(b.Context(), g, Long); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}
