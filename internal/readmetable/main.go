// Command readmetable replaces a generated table in a Markdown file: the text
// between <!-- NAME:begin --> and <!-- NAME:end --> becomes the table file's
// content, so make targets keep README figures current.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
)

func main() {
	marker := flag.String("marker", "", "marker name, as in <!-- NAME:begin -->")
	table := flag.String("table", "", "file holding the new content")
	flag.Parse()
	if *marker == "" || *table == "" || flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: readmetable -marker NAME -table FILE README.md")
		os.Exit(2)
	}
	if err := replace(flag.Arg(0), *marker, *table); err != nil {
		fmt.Fprintln(os.Stderr, "readmetable:", err)
		os.Exit(1)
	}
}

func replace(path, marker, tablePath string) error {
	doc, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	table, err := os.ReadFile(tablePath)
	if err != nil {
		return err
	}
	out, err := splice(doc, marker, table)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

func splice(doc []byte, marker string, table []byte) ([]byte, error) {
	begin := []byte("<!-- " + marker + ":begin -->\n")
	end := []byte("<!-- " + marker + ":end -->")
	i := bytes.Index(doc, begin)
	j := bytes.Index(doc, end)
	if i < 0 || j < i {
		return nil, fmt.Errorf("no %q ... %q pair", begin, end)
	}
	var out bytes.Buffer
	out.Write(doc[:i+len(begin)])
	out.Write(bytes.TrimRight(table, "\n"))
	out.WriteString("\n")
	out.Write(doc[j:])
	return out.Bytes(), nil
}
