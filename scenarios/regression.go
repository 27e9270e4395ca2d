package scenarios

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"strings"
)

// regressionFS holds one file per defect lockcheck has found in a ported
// locker, each pinned to a seed that reproduced it on every try.
//
//go:embed regression/*.json
var regressionFS embed.FS

// Regression returns every regression scenario, in file-name order.
func Regression() []Spec {
	specs, err := loadRegression(regressionFS)
	if err != nil {
		panic(err) // embedded at build time; TestRegressionFilesLoad keeps them valid.
	}
	return specs
}

func loadRegression(fsys fs.FS) ([]Spec, error) {
	names, err := fs.Glob(fsys, "regression/*.json")
	if err != nil {
		return nil, err
	}
	var out []Spec
	for _, n := range names {
		s, err := decodeFile(fsys, n)
		if err != nil {
			return nil, err
		}
		if want := "regression/" + strings.TrimSuffix(path.Base(n), ".json"); s.Name != want {
			return nil, fmt.Errorf("%s: name %q, want %q (the file is named after the defect)", n, s.Name, want)
		}
		out = append(out, s)
	}
	return out, nil
}

func decodeFile(fsys fs.FS, name string) (Spec, error) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return Spec{}, err
	}
	var s Spec
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return Spec{}, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}
