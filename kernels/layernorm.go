package kernels

// LayerNorm holds the kernels of ptx/layernorm.cu. (Placeholder until the layer lands.)
type LayerNorm struct{}

func (x *LayerNorm) load(l *loader) {}
