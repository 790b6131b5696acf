// The four patterns of weir's vs_go comparison, written the way Go people
// write them. Prints one line per pattern: "go <pattern> <ns/item>", the
// median of 5 runs. Run through benches/go/run.sh, which sets GOMAXPROCS=2
// and runs weir's side in the same invocation.
package main

import (
	"fmt"
	"os"
	"sort"
	"sync"
	"time"
)

const n = 1_000_000
const spawnN = 200_000

func pool(workers int) uint64 {
	jobs := make(chan uint64, 1024)
	results := make(chan uint64, 1024)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				results <- j * j
			}
		}()
	}
	go func() {
		for i := uint64(0); i < n; i++ {
			jobs <- i
		}
		close(jobs)
	}()
	go func() { wg.Wait(); close(results) }()
	var sum uint64
	for r := range results {
		sum += r
	}
	return sum
}

func pipeline() uint64 {
	gen := make(chan uint64, 1024)
	sq := make(chan uint64, 1024)
	go func() {
		for i := uint64(0); i < n; i++ {
			gen <- i
		}
		close(gen)
	}()
	go func() {
		for x := range gen {
			sq <- x * x
		}
		close(sq)
	}()
	var sum uint64
	for x := range sq {
		sum += x
	}
	return sum
}

func fanIn() uint64 {
	out := make(chan uint64, 1024)
	var wg sync.WaitGroup
	for p := 0; p < 4; p++ {
		wg.Add(1)
		go func(p int) {
			defer wg.Done()
			for i := uint64(0); i < n/4; i++ {
				out <- i
			}
		}(p)
	}
	go func() { wg.Wait(); close(out) }()
	var sum uint64
	for x := range out {
		sum += x
	}
	return sum
}

func spawn() uint64 {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sum uint64
	for i := 0; i < spawnN; i++ {
		wg.Add(1)
		go func(i uint64) {
			defer wg.Done()
			mu.Lock()
			sum += i
			mu.Unlock()
		}(uint64(i))
	}
	wg.Wait()
	return sum
}

func measure(name string, items int, f func() uint64) {
	var ns []float64
	for r := 0; r < 5; r++ {
		start := time.Now()
		f()
		ns = append(ns, float64(time.Since(start).Nanoseconds())/float64(items))
	}
	sort.Float64s(ns)
	fmt.Printf("go %s %.1f\n", name, ns[2])
}

func main() {
	measure("pool_w2", n, func() uint64 { return pool(2) })
	measure("pool_w4", n, func() uint64 { return pool(4) })
	measure("pool_w8", n, func() uint64 { return pool(8) })
	measure("pipeline_3_stage", n, pipeline)
	measure("fan_in_4", n, fanIn)
	measure("spawn_wait_200k", spawnN, spawn)
	os.Exit(0)
}
