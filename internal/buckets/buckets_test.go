package buckets

import (
	"math/rand/v2"
	"testing"
)

// check verifies every property the encoder_backward_wte kernel relies on.
func check(t *testing.T, tokens []int32, vocab int, b Buckets) {
	t.Helper()
	n := len(tokens)
	if len(b.Order) != n || len(b.Start) != b.Len()+1 {
		t.Fatalf("sizes: order %d (want %d), start %d (want %d)", len(b.Order), n, len(b.Start), b.Len()+1)
	}
	if b.Start[0] != 0 || int(b.Start[b.Len()]) != n {
		t.Fatalf("start spans [%d, %d), want [0, %d)", b.Start[0], b.Start[b.Len()], n)
	}
	seenPos := make([]bool, n)
	seenTok := map[int32]bool{}
	for i := 0; i < b.Len(); i++ {
		lo, hi := b.Start[i], b.Start[i+1]
		if hi <= lo {
			t.Fatalf("bucket %d is empty or reversed: [%d, %d)", i, lo, hi)
		}
		if i > 0 {
			prev := b.Start[i] - b.Start[i-1]
			if hi-lo > prev || (hi-lo == prev && b.Token[i] <= b.Token[i-1]) {
				t.Fatalf("bucket %d (token %d, %d long) is out of order after token %d (%d long)", i, b.Token[i], hi-lo, b.Token[i-1], prev)
			}
		}
		tok := b.Token[i]
		if tok < 0 || int(tok) >= vocab || seenTok[tok] {
			t.Fatalf("bucket %d: token %d is out of range or repeated", i, tok)
		}
		seenTok[tok] = true
		for j := lo; j < hi; j++ {
			p := b.Order[j]
			if p < 0 || int(p) >= n || seenPos[p] {
				t.Fatalf("bucket %d: position %d is out of range or repeated", i, p)
			}
			seenPos[p] = true
			if tokens[p] != tok {
				t.Fatalf("bucket %d (token %d) holds position %d of token %d", i, tok, p, tokens[p])
			}
			if j > lo && b.Order[j-1] >= p {
				t.Fatalf("bucket %d: positions %d, %d do not increase", i, b.Order[j-1], p)
			}
		}
	}
	// Every distinct token has a bucket.
	for _, tok := range tokens {
		if !seenTok[tok] {
			t.Fatalf("token %d has no bucket", tok)
		}
	}
}

func TestBuild(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	cases := []struct {
		name   string
		tokens []int32
		vocab  int
	}{
		{"empty", nil, 3},
		{"one", []int32{2}, 3},
		{"all same", []int32{4, 4, 4, 4, 4}, 5},
		{"distinct", []int32{3, 0, 2, 1}, 4},
		{"small", []int32{1, 0, 1, 2, 0, 1}, 3},
	}
	for _, n := range []int{1, 111, 2048} {
		for _, v := range []int{2, 5, 1003, 50257} {
			tok := make([]int32, n)
			for i := range tok {
				tok[i] = int32(r.IntN(v))
			}
			cases = append(cases, struct {
				name   string
				tokens []int32
				vocab  int
			}{"random", tok, v})
		}
	}
	perm := r.Perm(1000)
	distinct := make([]int32, len(perm))
	for i, p := range perm {
		distinct[i] = int32(p)
	}
	cases = append(cases, struct {
		name   string
		tokens []int32
		vocab  int
	}{"permutation", distinct, 1000})

	for _, c := range cases {
		b, err := Build(c.tokens, c.vocab)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		check(t, c.tokens, c.vocab, b)
	}
}

func TestBuildExample(t *testing.T) {
	b, err := Build([]int32{1, 0, 1, 2, 0, 1}, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := Buckets{
		Order: []int32{0, 2, 5, 1, 4, 3},
		Start: []int32{0, 3, 5, 6},
		Token: []int32{1, 0, 2},
	}
	eq := func(a, b []int32) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if a[i] != b[i] {
				return false
			}
		}
		return true
	}
	if !eq(b.Order, want.Order) || !eq(b.Start, want.Start) || !eq(b.Token, want.Token) {
		t.Fatalf("got %+v, want %+v", b, want)
	}
}

func TestBuildRejects(t *testing.T) {
	for _, c := range []struct {
		tokens []int32
		vocab  int
	}{
		{[]int32{0, 3}, 3},
		{[]int32{-1}, 3},
		{[]int32{0}, 0},
	} {
		if _, err := Build(c.tokens, c.vocab); err == nil {
			t.Errorf("Build(%v, %d) accepted", c.tokens, c.vocab)
		}
	}
}

// TestPadded: the padded grouping has min(N, V) buckets whatever the
// tokens, the real ones first and unchanged, and the padding empty and on
// distinct tokens the batch does not use.
func TestPadded(t *testing.T) {
	for _, tc := range []struct {
		tokens []int32
		vocab  int
	}{
		{[]int32{3, 3, 3, 3}, 8},       // one real bucket, 3 padded
		{[]int32{0, 1, 2, 3}, 4},       // already full
		{[]int32{1, 1, 0, 1, 0, 1}, 3}, // N > V: V buckets
		{[]int32{5}, 9},
	} {
		real, err := Build(tc.tokens, tc.vocab)
		if err != nil {
			t.Fatal(err)
		}
		b, err := Padded(tc.tokens, tc.vocab)
		if err != nil {
			t.Fatal(err)
		}
		want := min(len(tc.tokens), tc.vocab)
		if b.Len() != want || len(b.Start) != want+1 {
			t.Fatalf("%v: %d buckets and %d starts, want %d and %d", tc.tokens, b.Len(), len(b.Start), want, want+1)
		}
		seen := map[int32]bool{}
		for i, tok := range b.Token {
			if seen[tok] {
				t.Errorf("%v: token %d owns two buckets", tc.tokens, tok)
			}
			seen[tok] = true
			if i < real.Len() {
				if tok != real.Token[i] || b.Start[i] != real.Start[i] || b.Start[i+1] != real.Start[i+1] {
					t.Errorf("%v: real bucket %d changed", tc.tokens, i)
				}
			} else if b.Start[i] != b.Start[i+1] || b.Start[i] != int32(len(tc.tokens)) {
				t.Errorf("%v: padding bucket %d covers [%d, %d), want empty at %d", tc.tokens, i, b.Start[i], b.Start[i+1], len(tc.tokens))
			}
		}
	}
}
