package scenarios

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"
)

// ReadFile reads a scenario file from disk: one JSON object, a Spec,
// decoded strictly. A spec without a name is named after its file.
func ReadFile(path string) (Spec, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Spec{}, fmt.Errorf("scenario file: %w", err)
	}
	s, err := Decode(path, b)
	if err != nil {
		return Spec{}, err
	}
	if s.Name == "" {
		s.Name = strings.TrimSuffix(filepath.Base(path), filepath.Ext(path))
	}
	return s, nil
}

// ReadDir reads every *.json file of dir, in name order, as ReadFile
// does; a spec without a name is named "<dir>/<file>".
func ReadDir(dir string) ([]Spec, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("scenario directory: %w", err)
		}
		return nil, fmt.Errorf("scenario directory %s holds no *.json file", dir)
	}
	slices.Sort(names)
	var out []Spec
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, fmt.Errorf("scenario file: %w", err)
		}
		s, err := Decode(n, b)
		if err != nil {
			return nil, err
		}
		if s.Name == "" {
			s.Name = filepath.Base(filepath.Clean(dir)) + "/" + strings.TrimSuffix(filepath.Base(n), ".json")
		}
		out = append(out, s)
	}
	return out, nil
}

// Decode reads one scenario from data, strictly: a field the Spec does
// not have, a value of the wrong type, a duration that does not parse or
// anything after the object is an error naming the file (name), the
// line and column, and the field.
func Decode(name string, data []byte) (Spec, error) {
	var s Spec
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	err := dec.Decode(&s)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return Spec{}, fmt.Errorf("%s:%s: more after the scenario's closing brace; a file holds one scenario", name, position(data, dec.InputOffset()))
		}
		if err := refuseZeros(name, data); err != nil {
			return Spec{}, err
		}
		return s, nil
	}
	return Spec{}, fmt.Errorf("%s:%s", name, describe(data, err))
}

// describe turns a decoding error into "line:column: what", finding the
// field where encoding/json does not say where it is.
func describe(data []byte, err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return "1:1: empty file; a scenario is one JSON object, e.g. {\"locker\": \"fenced\", \"faults\": [\"pause\"]}"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return position(data, int64(len(data))+1) + ": the file ends inside the scenario (a missing } or ])"
	case errors.As(err, &syntax):
		return position(data, syntax.Offset) + ": " + syntax.Error()
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return position(data, typ.Offset) + fmt.Sprintf(": a scenario is a JSON object, not a JSON %s", typ.Value)
		}
		return position(data, typ.Offset) + fmt.Sprintf(": field %s: want %s, got a JSON %s", field, jsonKind(typ.Type.String()), typ.Value)
	}
	if f, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		field := strings.Trim(f, `"`)
		known := knownFields()
		hint := "; known fields: " + strings.Join(known, ", ")
		return keyPosition(data, field) + fmt.Sprintf(": unknown field %q%s", field, hint)
	}
	// A value's own decoder refused it (a duration): find which field
	// by decoding the fields one at a time.
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) == nil {
		keys := make([]string, 0, len(fields))
		for k := range fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			one, _ := json.Marshal(map[string]json.RawMessage{k: fields[k]})
			var s Spec
			if ferr := json.Unmarshal(one, &s); ferr != nil {
				return keyPosition(data, k) + fmt.Sprintf(": field %s: %v", k, ferr)
			}
		}
	}
	return "1:1: " + err.Error()
}

// knownFields lists the fields a scenario file may have: the Spec's JSON
// names.
func knownFields() []string {
	var out []string
	t := reflect.TypeFor[Spec]()
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// positiveFields are the fields whose zero would mean "the default" once
// decoded: written out, a zero is a mistake to report, as verify run's
// flags report it, not a setting to replace silently.
var positiveFields = []string{"clients", "keys", "duration", "ttl", "time_scale", "hold_max", "acquire_timeout", "fault_interval", "recovery_timeout", "check_timeout", "attempts"}

// refuseZeros reports a positive field given as zero ("0", 0, "0s").
func refuseZeros(name string, data []byte) error {
	var raw map[string]json.RawMessage
	if json.Unmarshal(data, &raw) != nil {
		return nil // Decode has said what is wrong with it
	}
	for _, f := range positiveFields {
		v, ok := raw[f]
		if !ok {
			continue
		}
		var num float64
		var str string
		zero := false
		switch {
		case json.Unmarshal(v, &num) == nil:
			zero = num == 0
		case json.Unmarshal(v, &str) == nil:
			d, err := time.ParseDuration(strings.TrimSpace(str))
			zero = err == nil && d == 0
		}
		if zero {
			return fmt.Errorf("%s:%s: %s is %s: want a positive value, or leave %s out for its default", name, keyPosition(data, f), f, v, f)
		}
	}
	return nil
}

func jsonKind(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.Contains(goType, "int"):
		return "a whole number"
	case strings.Contains(goType, "float"):
		return "a number"
	case goType == "bool":
		return "true or false"
	case goType == "string" || strings.HasSuffix(goType, "Duration"):
		return "a string"
	}
	return "a " + goType
}

// keyPosition is where the object key named key first appears in data,
// as line:column, or 1:1 when it cannot be found.
func keyPosition(data []byte, key string) string {
	type container struct{ object, wantKey bool }
	var stack []container
	valueDone := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	for {
		before := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return "1:1"
		}
		if d, ok := tok.(json.Delim); ok {
			switch d {
			case '{':
				stack = append(stack, container{object: true, wantKey: true})
			case '[':
				stack = append(stack, container{})
			default:
				stack = stack[:len(stack)-1]
				valueDone()
			}
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			stack[n-1].wantKey = false
			if tok == key {
				// The key began after any blank, comma or colon.
				start := before
				for start < int64(len(data)) && data[start] != '"' {
					start++
				}
				return position(data, start+1)
			}
			continue
		}
		valueDone()
	}
}

// position turns a byte offset (1-based, as encoding/json counts it) into
// line:column.
func position(data []byte, offset int64) string {
	if offset > int64(len(data))+1 {
		offset = int64(len(data)) + 1
	}
	if offset < 1 {
		offset = 1
	}
	line, col := 1, 1
	for _, c := range data[:offset-1] {
		if c == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return fmt.Sprintf("%d:%d", line, col)
}
