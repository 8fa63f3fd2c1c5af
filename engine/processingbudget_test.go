package engine

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"

	"github.com/ferryhealth/ferry/mappings"
)

// blockingMappings stands in for the mapping set: each message's processing enters it and waits
// until the test lets it go, so the test sees how many are processed at once.
type blockingMappings struct {
	inside, most atomic.Int32
	release      chan struct{}
}

func (b *blockingMappings) get() MappingSource {
	n := b.inside.Add(1)
	for m := b.most.Load(); n > m && !b.most.CompareAndSwap(m, n); m = b.most.Load() {
	}
	<-b.release
	b.inside.Add(-1)
	return noMappings{}
}

type noMappings struct{}

func (noMappings) For(string, string) *mappings.Mapping { return nil }

// TestProcessingBudget: large messages (a 2 MiB ORU) are processed at most as many at once as
// the budget holds (5 MiB: two), the others waiting with only their frame read; small ones never
// wait; every message is answered once its turn comes.
func TestProcessingBudget(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		maps := &blockingMappings{release: make(chan struct{})}
		in := NewInbound("mllp", &memCommitter{}, nil, nil)
		in.Processor = &Processor{Mappings: maps.get}
		in.Processing = &ProcessingBudget{Bytes: 5 << 20}
		big := seg(`MSH|^~\&|DICT|READ|FERRY|FERRY|20261127083000||ORU^R01|BIG|P|2.5.1`,
			`OBX|1|TX|X||`+strings.Repeat("A", 2<<20)+`||||||F`)
		var wg sync.WaitGroup
		letGo := sync.OnceFunc(func() { close(maps.release) })
		defer func() { letGo(); wg.Wait() }()
		for i := range 5 {
			wg.Go(func() {
				msg := []byte(strings.Replace(string(big), "|BIG|", "|BIG"+strconv.Itoa(i)+"|", 1))
				in.Receive(context.Background(), Received{Data: msg, PeerAddr: "192.0.2.1:5000"})
			})
		}
		synctest.Wait()
		if n := maps.inside.Load(); n != 2 {
			t.Fatalf("%d large messages processed at once, want 2 (5 MiB of 2 MiB messages)", n)
		}
		// A small message does not wait behind them.
		wg.Go(func() {
			in.Receive(context.Background(), Received{Data: seg(mshORM23, pid), PeerAddr: "192.0.2.2:5000"})
		})
		synctest.Wait()
		if n := maps.inside.Load(); n != 3 {
			t.Fatalf("%d messages processed, want the small one beside the two large", n)
		}
		letGo()
		wg.Wait()
		if m := maps.most.Load(); m != 3 {
			t.Errorf("at most %d processed at once, want 3 (two large within the budget, one small)", m)
		}
	})
}
