package ref

// Values of tinyDims with seed 42, pinned by TestGolden.
const (
	goldenP0      float32 = -0.014881864 // wte[0]
	goldenP1      float32 = -0.014474423
	goldenP2      float32 = 0.022293018
	goldenFcproj0 float32 = -0.005130916 // fcprojw[0]: std 0.02/sqrt(2L)
	goldenLoss            = 3.1403158810867291
)

var (
	goldenTokens  = []int32{5, 17, 1, 19, 1, 15, 18, 20}
	goldenTargets = []int32{1, 5, 5, 11, 1, 1, 1, 8}
)
