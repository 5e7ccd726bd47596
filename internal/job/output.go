package job

// blockSize is the size of an output's full blocks.
const blockSize = 1 << 20

// output is a log entry's output: append-only, held in blocks so that a
// large output never has to be copied into a bigger buffer as it grows
// (at a gigabyte, that copying and the zeroing of each new buffer cost
// more than everything else the executor does with the output).
type output struct {
	blocks [][]byte // every block but the last holds blockSize bytes
	n      int
}

// Len is the output's length in bytes.
func (o *output) Len() int { return o.n }

// Write appends p.
func (o *output) Write(p []byte) {
	o.n += len(p)
	for len(p) > 0 {
		last := len(o.blocks) - 1
		if last < 0 || len(o.blocks[last]) == blockSize {
			// A small first block, grown by append up to blockSize: most
			// entries hold a few lines.
			size := blockSize
			if last < 0 {
				size = min(blockSize, max(len(p), 512))
			}
			o.blocks = append(o.blocks, make([]byte, 0, size))
			last++
		}
		b := o.blocks[last]
		k := min(len(p), blockSize-len(b))
		o.blocks[last] = append(b, p[:k]...)
		p = p[k:]
	}
}

// AppendRange appends bytes [from, to) of the output to dst.
func (o *output) AppendRange(dst []byte, from, to int) []byte {
	to = min(to, o.n)
	for from < to {
		b := o.blocks[from/blockSize][from%blockSize:]
		k := min(len(b), to-from)
		dst = append(dst, b[:k]...)
		from += k
	}
	return dst
}

// At returns the byte at offset i < Len.
func (o *output) At(i int) byte { return o.blocks[i/blockSize][i%blockSize] }

// String is the whole output.
func (o *output) String() string { return string(o.AppendRange(make([]byte, 0, o.n), 0, o.n)) }
