package worker

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"time"
)

// scanLines calls each with every non-blank line of r (a copy, without its
// newline) and the monotonic time it was read, until r ends or each returns
// false. A line longer than maxLine is skipped whole and reported to logf,
// so a peer's bug costs one line and bounded memory.
func scanLines(r io.Reader, logf func(format string, args ...any), each func(b []byte, at time.Time) bool) {
	br := bufio.NewReaderSize(r, maxLine)
	tooLong := false
	for {
		b, err := br.ReadSlice('\n')
		at := time.Now()
		if errors.Is(err, bufio.ErrBufferFull) {
			if !tooLong {
				logf("ignoring a line longer than %d bytes", maxLine)
			}
			tooLong = true
			continue
		}
		if tooLong {
			// b is the end of the line too long to use.
			tooLong = false
		} else if b = bytes.TrimSpace(b); len(b) > 0 {
			if !each(append([]byte(nil), b...), at) {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				logf("reading: %v", err)
			}
			return
		}
	}
}
