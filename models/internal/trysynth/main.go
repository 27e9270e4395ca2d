package main

import (
	"fmt"
	"os"
	"time"
	"runtime"
	"runtime/pprof"

	"github.com/lockcheck/lockcheck/models"
	"github.com/lockcheck/lockcheck/models/synth"
)

func main() {
	var n, c, k int
	fmt.Sscan(os.Args[1], &n)
	fmt.Sscan(os.Args[2], &c)
	fmt.Sscan(os.Args[3], &k)
	t0 := time.Now()
	res, err := synth.Generate(synth.Realistic(1, c, k, n))
	if err != nil { panic(err) }
	fmt.Println("gen", time.Since(t0), len(res.History.Events))
	runtime.GC()
	t0 = time.Now()
	r, err := models.Check(res.History, models.Options{LinearizabilityTimeout: time.Minute})
	if err != nil { panic(err) }
	stopProf()
	fmt.Println("check", time.Since(t0))
	fmt.Print(r.Summary())
	fmt.Printf("%+v\n", r.Counts)
	l := r.Linearizability
	fmt.Println(l.Segments, l.LargestSegment, l.Chunks, l.LargestChunk, l.Elapsed)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fmt.Println("totalalloc MB", ms.TotalAlloc>>20, "sys", ms.Sys>>20)
	if len(os.Args) > 4 { fmt.Println(r.WriteVisualization(os.Args[4])) }
}

func init() {
	if p := os.Getenv("CPUPROF"); p != "" {
		f, _ := os.Create(p)
		pprof.StartCPUProfile(f)
		go func() {}()
		stopProf = func() { pprof.StopCPUProfile(); f.Close() }
	}
}

var stopProf = func() {}
