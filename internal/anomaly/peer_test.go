package anomaly

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestPeerScore(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	peers := make([]float64, 20)
	for i := range peers {
		peers[i] = 50 + rng.NormFloat64()
	}
	outlying := append([]float64{500, -400}, peers[:10]...) // two outlying peers do not move median or MAD
	for _, c := range []struct {
		name    string
		peer    Peer
		value   float64
		peers   []float64
		anomaly bool
		kind    Kind
	}{
		{"departure", Peer{}, 58, peers, true, KindPeer},
		{"negative departure", Peer{}, 42, peers, true, KindPeer},
		{"within the peers", Peer{}, 51, peers, false, KindPeer},
		{"robust to outlying peers", Peer{}, 51, outlying, false, KindPeer},
		{"departure among outlying peers", Peer{}, 60, outlying, true, KindPeer},
		{"too few peers", Peer{}, 1000, peers[:4], false, KindNone},
		{"fewer peers allowed", Peer{MinPeers: 3}, 1000, peers[:4], true, KindPeer},
		{"NaN peers ignored", Peer{}, 1000, []float64{1, 1, math.NaN(), 1, 1}, false, KindNone},
		{"equal peers, equal value", Peer{}, 7, []float64{7, 7, 7, 7, 7}, false, KindNone},
		{"equal peers, other value", Peer{}, 7.5, []float64{7, 7, 7, 7, 7}, true, KindPeer},
		{"NaN value", Peer{}, math.NaN(), peers, false, KindNone},
	} {
		r := c.peer.Score(c.value, c.peers)
		if r.Anomaly != c.anomaly || (c.kind == KindNone) != (r.Kind == KindNone) {
			t.Errorf("%s: %+v, want anomaly %v", c.name, r, c.anomaly)
		}
	}
	before := append([]float64(nil), peers...)
	Peer{}.Score(55, peers)
	for i := range peers {
		if peers[i] != before[i] {
			t.Fatal("Score modified the peers")
		}
	}
}
