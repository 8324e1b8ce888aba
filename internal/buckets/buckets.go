// Package buckets groups the token positions of a batch by token id, for the
// deterministic embedding backward (ptx/encoder.cu, encoder_backward_wte).
//
// The gradient of the token embedding is a scatter-add: every position adds
// its output gradient to the row of its token. Float atomics would make the
// result depend on the order in which threads land, so instead the positions
// are grouped by token here, on the host, and the kernel sums each group in
// a fixed order. Tokens are fixed for a run, so this runs once per batch.
//
// The package imports nothing that touches CUDA, so it is tested everywhere.
package buckets

import (
	"fmt"
	"sort"
)

// Buckets lists the positions of a batch grouped by token.
type Buckets struct {
	// Order holds every position 0..N-1, grouped by bucket; within a bucket
	// the positions increase.
	Order []int32
	// Start has Len()+1 entries: bucket i covers Order[Start[i]:Start[i+1]].
	Start []int32
	// Token is the token id of each bucket; each id appears at most once.
	Token []int32
}

// Len is the number of buckets (distinct tokens).
func (b Buckets) Len() int { return len(b.Token) }

// Build groups the positions of tokens (each in [0, vocab)) by token id.
// Buckets come longest first (ties by increasing token id), so that the
// GPU starts the longest sums first and the short ones fill in behind them.
func Build(tokens []int32, vocab int) (Buckets, error) {
	if vocab <= 0 {
		return Buckets{}, fmt.Errorf("buckets: vocabulary size %d is not positive", vocab)
	}
	if len(tokens) >= 1<<31 {
		return Buckets{}, fmt.Errorf("buckets: %d positions do not fit int32", len(tokens))
	}
	// Counting sort by token: stable, so positions stay increasing in a bucket.
	count := make([]int32, vocab)
	for i, t := range tokens {
		if t < 0 || int(t) >= vocab {
			return Buckets{}, fmt.Errorf("buckets: token %d at position %d is outside [0, %d)", t, i, vocab)
		}
		count[t]++
	}
	var ids []int32
	for v, c := range count {
		if c > 0 {
			ids = append(ids, int32(v))
		}
	}
	sort.SliceStable(ids, func(i, j int) bool { return count[ids[i]] > count[ids[j]] })

	b := Buckets{
		Order: make([]int32, len(tokens)),
		Start: make([]int32, len(ids)+1),
		Token: ids,
	}
	// next[v] is where the next position of token v goes in Order.
	next := make([]int32, vocab)
	var at int32
	for i, v := range ids {
		b.Start[i] = at
		next[v] = at
		at += count[v]
	}
	b.Start[len(ids)] = at
	for i, t := range tokens {
		b.Order[next[t]] = int32(i)
		next[t]++
	}
	return b, nil
}

// Padded is Build with the buckets padded to min(len(tokens), vocab): the
// extra buckets are empty and belong to tokens the batch does not use, one
// each. The embedding backward then launches one grid row per bucket of a
// grid that depends on the shape alone, never on the batch: an empty
// bucket's block adds nothing to a row no other block touches.
func Padded(tokens []int32, vocab int) (Buckets, error) {
	b, err := Build(tokens, vocab)
	if err != nil {
		return b, err
	}
	want := min(len(tokens), vocab)
	if b.Len() == want {
		return b, nil
	}
	used := make([]bool, vocab)
	for _, t := range b.Token {
		used[t] = true
	}
	end := b.Start[b.Len()]
	for v := 0; v < vocab && b.Len() < want; v++ {
		if !used[v] {
			b.Token = append(b.Token, int32(v))
			b.Start = append(b.Start, end)
		}
	}
	return b, nil
}
