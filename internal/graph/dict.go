package graph

import (
	"github.com/klauspost/compress/s2"

	"github.com/twinflow/twinflow/internal/store"
)

// Twin documents are compressed with an S2 dictionary made of the first documents the index
// sees: documents of one model repeat each other's member names, $metadata layout and
// timestamps, which compressing each document alone cannot exploit. With the dictionary a
// typical document takes about half of what S2 alone makes of it. The dictionary is made
// once, before the first document is compressed, and never changes: every compressed
// document of an index is read with the same one (nil: plain S2). A snapshot carries it.

// dictSize is the most bytes of sample documents a dictionary is made of.
const dictSize = 32 << 10

// makeDict returns a dictionary made of docs, the documents of each model first, or nil
// when they are too few bytes to make one.
func makeDict(docs []store.Twin) *s2.Dict {
	var sample []byte
	seen := make(map[string]bool)
	add := func(doc []byte) {
		if len(sample)+len(doc) <= dictSize {
			sample = append(sample, doc...)
		}
	}
	for _, t := range docs {
		if !seen[t.ModelID] {
			seen[t.ModelID] = true
			add(t.Doc)
		}
	}
	for _, t := range docs[min(1, len(docs)):] {
		if len(sample) >= dictSize/2 {
			break
		}
		add(t.Doc)
	}
	if len(sample) < 2*s2.MinDictSize {
		return nil
	}
	// A dictionary's later bytes are found by shorter offsets: the document most like the
	// next goes last, and a block's first match is looked for at the start of a document.
	return s2.MakeDict(sample, []byte(`{"$dtId":"`))
}

// compressDoc compresses doc with dict, into dst when it has room.
func compressDoc(dict *s2.Dict, dst, doc []byte) []byte {
	if dict == nil {
		return s2.Encode(dst[:cap(dst)], doc)
	}
	return dict.Encode(dst[:cap(dst)], doc)
}

// decompressDoc decompresses z, compressed with dict, into dst when it has room.
func decompressDoc(dict *s2.Dict, dst, z []byte) ([]byte, error) {
	if dict == nil {
		return s2.Decode(dst[:cap(dst)], z)
	}
	return dict.Decode(dst[:cap(dst)], z)
}
