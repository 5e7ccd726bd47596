package job

// blockSize is the size of an output's full blocks.
const blockSize = 1 << 20

// output is a log entry's output: append-only, held in blocks so that a
// large output never has to be copied into a bigger buffer as it grows
// (at a gigabyte, that copying and the zeroing of each new buffer cost
// more than everything else the executor does with the output), and so
// that the blocks the coordinator has stored can be let go (Release).
type output struct {
	blocks [][]byte // every block but the last holds blockSize bytes
	base   int      // offset of blocks[0]: the bytes before were released
	n      int
}

// Len is the output's length in bytes, released bytes included.
func (o *output) Len() int { return o.n }

// Base is the offset of the first byte still held.
func (o *output) Base() int { return o.base }

// Write appends p.
func (o *output) Write(p []byte) {
	o.n += len(p)
	for len(p) > 0 {
		last := len(o.blocks) - 1
		if last < 0 || len(o.blocks[last]) == blockSize {
			// A small first block, grown by append up to blockSize: most
			// entries hold a few lines.
			size := blockSize
			if last < 0 && o.base == 0 {
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

// Release lets go of the full blocks that lie entirely before offset
// upTo.
func (o *output) Release(upTo int) {
	for len(o.blocks) > 1 && o.base+blockSize <= upTo {
		o.blocks[0] = nil
		o.blocks = o.blocks[1:]
		o.base += blockSize
	}
}

// AppendRange appends bytes [from, to) of the output to dst; from must be
// at least Base.
func (o *output) AppendRange(dst []byte, from, to int) []byte {
	to = min(to, o.n)
	for from < to {
		i := from - o.base
		b := o.blocks[i/blockSize][i%blockSize:]
		k := min(len(b), to-from)
		dst = append(dst, b[:k]...)
		from += k
	}
	return dst
}

// At returns the byte at offset i, Base <= i < Len.
func (o *output) At(i int) byte {
	i -= o.base
	return o.blocks[i/blockSize][i%blockSize]
}

// Held is the output from Base on.
func (o *output) Held() string {
	return string(o.AppendRange(make([]byte, 0, o.n-o.base), o.base, o.n))
}
