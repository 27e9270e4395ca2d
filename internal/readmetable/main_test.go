package main

import "testing"

func TestSpliceReplacesOnlyBetweenMarkers(t *testing.T) {
	doc := "intro\n<!-- t:begin -->\nold\n<!-- t:end -->\nafter\n"
	got, err := splice([]byte(doc), "t", []byte("| a |\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "intro\n<!-- t:begin -->\n| a |\n<!-- t:end -->\nafter\n"; string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := splice([]byte("no markers"), "t", nil); err == nil {
		t.Error("missing markers accepted")
	}
}
