package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// Writer appends a history to a file, one event per write call, so every
// event handed to Append is in the file (the OS's page cache) before Append
// returns: a crash of the harness process loses nothing already recorded.
// It is safe for concurrent use and assigns Index itself.
type Writer struct {
	mu   sync.Mutex
	w    io.Writer
	next int64
	buf  []byte
	err  error
}

// NewWriter writes h as the first line of w.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	h.Schema, h.Version = Schema, Version
	line, err := json.Marshal(h)
	if err != nil {
		return nil, fmt.Errorf("history: encode header: %w", err)
	}
	if _, err := w.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("history: write header: %w", err)
	}
	return &Writer{w: w}, nil
}

// Append stamps e with the next index, writes it, and returns it as written.
// After the first write error every later Append returns that error.
func (w *Writer) Append(e Event) (Event, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return e, w.err
	}
	e.Index = w.next
	line, err := json.Marshal(e)
	if err != nil {
		return e, fmt.Errorf("history: encode event %d: %w", e.Index, err)
	}
	w.buf = append(append(w.buf[:0], line...), '\n')
	if _, err := w.w.Write(w.buf); err != nil {
		w.err = fmt.Errorf("history: write event %d: %w", e.Index, err)
		return e, w.err
	}
	w.next++
	return e, nil
}

// History is a parsed history file.
type History struct {
	Header Header
	Events []Event
	// Truncated is set when the last line was cut off (the run died
	// mid-write); that line is dropped and the rest is still checkable.
	Truncated bool
}

// ReadFile reads the history at path.
func ReadFile(path string) (*History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return h, nil
}

// maxLine bounds one history line; a longer one is not a history.
const maxLine = 1 << 20

// Read parses a history. It fails, naming the line, on anything that is not a
// history of a known version, except a last line without its newline that
// does not parse: that is a write cut short by a crash, reported as Truncated.
func Read(r io.Reader) (*History, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var h History
	lineNo := 0
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, fmt.Errorf("line %d: longer than %d bytes; not a lockcheck history", lineNo+1, maxLine)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("line %d: %w", lineNo+1, err)
		}
		complete := bytes.HasSuffix(line, []byte{'\n'})
		if len(bytes.TrimSpace(line)) > 0 {
			lineNo++
			if perr := h.parseLine(lineNo, line); perr != nil {
				if !complete && lineNo > 1 {
					h.Truncated = true
					return &h, nil
				}
				return nil, perr
			}
		}
		if err != nil { // io.EOF
			break
		}
	}
	if lineNo == 0 {
		return nil, errors.New("empty file; a history starts with a header line")
	}
	return &h, nil
}

func (h *History) parseLine(lineNo int, line []byte) error {
	if lineNo == 1 {
		if err := json.Unmarshal(line, &h.Header); err != nil {
			return fmt.Errorf("line 1: not a history header (%v); is this a lockcheck history.jsonl?", err)
		}
		if h.Header.Schema != Schema {
			return fmt.Errorf("line 1: schema is %q, want %q; is this a lockcheck history.jsonl?", h.Header.Schema, Schema)
		}
		if h.Header.Version != Version {
			return fmt.Errorf("line 1: history version %d, this build reads version %d", h.Header.Version, Version)
		}
		// The checkers size their tables by these; a header that claims
		// more than any run can have would have them allocate it.
		if r := h.Header.Run; r.Clients < 0 || r.Clients > MaxClients || r.Keys < 0 || r.Keys > MaxKeys {
			return fmt.Errorf("line 1: %d clients and %d keys; a run has 1 to %d clients and 1 to %d keys", r.Clients, r.Keys, MaxClients, MaxKeys)
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	var e Event
	if err := dec.Decode(&e); err != nil {
		return fmt.Errorf("line %d: %w", lineNo, err)
	}
	if err := e.validate(int64(len(h.Events))); err != nil {
		return fmt.Errorf("line %d: %w", lineNo, err)
	}
	h.Events = append(h.Events, e)
	return nil
}

func (e Event) validate(wantIndex int64) error {
	if e.Index != wantIndex {
		return fmt.Errorf("index %d, want %d (events missing or out of order)", e.Index, wantIndex)
	}
	switch e.Type {
	case Invoke, OK, Fail, Info:
	default:
		return fmt.Errorf("type %q is not one of invoke, ok, fail, info", e.Type)
	}
	if e.F == "" {
		return errors.New(`missing "f"`)
	}
	if e.Time < 0 {
		return fmt.Errorf("negative time %d", e.Time)
	}
	return nil
}
