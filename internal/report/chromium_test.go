package report

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/lockcheck/lockcheck/history"
	"github.com/lockcheck/lockcheck/models"
)

// The browser check is driven by environment variables, so that make
// report-check can point it at real runs:
//
//	LOCKCHECK_CHROMIUM            the browser to use ("1" or "chromium": the one on PATH).
//	                              When set, a missing browser fails the test instead of skipping it.
//	LOCKCHECK_REPORT_DIR          a results directory with index.html and run pages to open;
//	                              unset, pages are made from the checker fixtures.
//	LOCKCHECK_REPORT_SCREENSHOTS  where to save index.png and invalid-run.png.
const (
	envChromium    = "LOCKCHECK_CHROMIUM"
	envReportDir   = "LOCKCHECK_REPORT_DIR"
	envScreenshots = "LOCKCHECK_REPORT_SCREENSHOTS"
)

// browserTimeout bounds one browser start; a page that takes longer is a
// failure in its own right.
const browserTimeout = 90 * time.Second

func chromium(t *testing.T) string {
	t.Helper()
	want := os.Getenv(envChromium)
	if want != "" && want != "1" && want != "true" {
		if p, err := exec.LookPath(want); err == nil {
			return p
		}
		t.Fatalf("%s=%s, but no such browser; install it (make report-check does: apt-get install chromium) or unset %s", envChromium, want, envChromium)
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if want != "" {
		t.Fatalf("%s is set but chromium is not on PATH; install it (apt-get install chromium)", envChromium)
	}
	t.Skipf("chromium is not on PATH; set %s=1 to require it (make report-check installs it)", envChromium)
	return ""
}

// browse opens page in headless Chromium and returns the DOM after its
// scripts ran and every console message, which on these pages can only be
// an error: they log nothing themselves. With png set it also saves a
// screenshot there.
func browse(t *testing.T, browser, page, png string) (dom string, console []string) {
	t.Helper()
	abs, err := filepath.Abs(page)
	if err != nil {
		t.Fatal(err)
	}
	args := []string{"--headless", "--disable-gpu", "--no-sandbox", "--enable-logging=stderr", "--v=0",
		"--user-data-dir=" + t.TempDir(), "--no-first-run", "--disable-extensions",
		// Virtual time: the page's scripts get their budget however slow
		// the machine is.
		"--virtual-time-budget=5000"}
	if png != "" {
		args = append(args, "--hide-scrollbars", "--window-size=1400,2400", "--screenshot="+png)
	} else {
		args = append(args, "--dump-dom")
	}
	var out, errb bytes.Buffer
	// Chromium itself crashed (SIGSEGV) once, on a page that renders fine,
	// while the rest of make test loaded both cores. A crash of the
	// browser says nothing about the page, so it gets one more try; a
	// second crash, or any other failure, fails the test.
	for try := 1; ; try++ {
		out.Reset()
		errb.Reset()
		ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
		cmd := exec.CommandContext(ctx, browser, append(args, "file://"+abs)...)
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		cancel()
		if err == nil {
			break
		}
		var exit *exec.ExitError
		if crashed := errors.As(err, &exit) && exit.ProcessState.Sys().(syscall.WaitStatus).Signal() == syscall.SIGSEGV; crashed && try == 1 {
			t.Logf("chromium crashed on %s (%v); once more", page, err)
			continue
		}
		t.Fatalf("chromium on %s: %v\n%s", page, err, tail(errb.String(), 40))
	}
	for _, line := range strings.Split(errb.String(), "\n") {
		if strings.Contains(line, ":CONSOLE") || strings.Contains(line, "Uncaught") {
			console = append(console, line)
		}
	}
	return out.String(), console
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func TestRenderInChromium(t *testing.T) {
	browser := chromium(t)

	t.Run("a script error is caught, on the page or in a frame", func(t *testing.T) {
		const good = `<!DOCTYPE html><html><body><p id="x">x</p><script>document.getElementById("x").textContent = "ran"</script>` +
			`<iframe srcdoc="&lt;script&gt;document.title = 'frame'&lt;/script&gt;"></iframe></body></html>`
		pages := map[string]string{
			"good":  good,
			"page":  strings.Replace(good, `"ran"`, `missingOnPage()`, 1),
			"frame": strings.Replace(good, `document.title = 'frame'`, `missingInFrame()`, 1),
		}
		for name, html := range pages {
			path := filepath.Join(t.TempDir(), name+".html")
			if err := os.WriteFile(path, []byte(html), 0o644); err != nil {
				t.Fatal(err)
			}
			dom, console := browse(t, browser, path, "")
			switch name {
			case "good":
				if len(console) != 0 || !strings.Contains(dom, ">ran<") {
					t.Errorf("a page without errors: console %q, script ran: %v", console, strings.Contains(dom, ">ran<"))
				}
			case "page", "frame":
				want := map[string]string{"page": "missingOnPage", "frame": "missingInFrame"}[name]
				if !strings.Contains(strings.Join(console, "\n"), want) {
					t.Errorf("an uncaught error in the %s went unseen; console: %q", name, console)
				}
			}
		}
	})

	dir := os.Getenv(envReportDir)
	if dir == "" {
		dir = fixturePages(t)
	}
	pages := []string{filepath.Join(dir, "index.html")}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "report.html" {
			pages = append(pages, p)
		}
		return nil
	})
	if len(pages) < 3 {
		t.Fatalf("want the index and at least two run pages under %s, found %v", dir, pages)
	}
	shots := os.Getenv(envScreenshots)
	invalidShot := false
	for _, p := range pages {
		dom, console := browse(t, browser, p, "")
		if len(console) > 0 {
			t.Errorf("%s: script errors in the browser:\n%s", p, strings.Join(console, "\n"))
		}
		isIndex := filepath.Base(p) == "index.html"
		if want := `id="verdict"`; !isIndex && !strings.Contains(dom, want) {
			t.Errorf("%s: the rendered page lacks %s", p, want)
		}
		if isIndex && !strings.Contains(dom, `id="runs"`) {
			t.Errorf("%s: the rendered index lacks its table of runs", p)
		}
		if shots == "" {
			continue
		}
		name := ""
		switch {
		case isIndex:
			name = "index.png"
		case !invalidShot && strings.Contains(dom, `class="verdict invalid"`):
			name, invalidShot = "invalid-run.png", true
		default:
			continue
		}
		png := filepath.Join(shots, name)
		browse(t, browser, p, png)
		if b, err := os.ReadFile(png); err != nil || !bytes.HasPrefix(b, []byte("\x89PNG")) {
			t.Errorf("screenshot %s of %s was not saved as a PNG: %v", png, p, err)
		} else {
			t.Logf("screenshot of %s: %s (%d bytes)", p, png, len(b))
		}
	}
	if shots != "" && !invalidShot {
		t.Errorf("no invalid run among the pages under %s to take a screenshot of", dir)
	}
}

// fixturePages writes pages for a bad and a good fixture and their index.
func fixturePages(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	var runs []Run
	for i, f := range []string{"crash-takeover-bad.jsonl", "crash-takeover-good.jsonl"} {
		h, err := history.ReadFile(filepath.Join("..", "..", "models", "testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		rep, err := models.Check(h, models.Options{LinearizabilityTimeout: time.Minute, AcceptPartial: true})
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("run%d", i)
		if err := os.Mkdir(filepath.Join(dir, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := Write(filepath.Join(dir, name, "report.html"), h, rep, Meta{}); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, Run{Dir: name, ID: h.Header.Run.ID, Verdict: rep.Verdict, Start: h.Header.Start.Add(time.Duration(i) * time.Hour),
			Report: name + "/report.html"})
	}
	if err := WriteIndex(filepath.Join(dir, "index.html"), "fixtures", runs); err != nil {
		t.Fatal(err)
	}
	return dir
}
