package main

import (
	"context"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"time"
)

// runPairs measures the gateway and nginx in pairs of throughput phases back to back, taking
// turns at going first, and prints each pair's ratios and their median. The rounds put seconds
// and other targets between the gateway and nginx, and a shared machine drifts in that time as
// much as the two differ; within a pair it drifts less, and the median of many pairs leaves out
// the ones a burst of other work disturbed.
func runPairs(ctx context.Context, o options, p protocol, gw, ng target, up *exec.Cmd) error {
	type phase struct {
		rps                 float64
		proxy, proxySys, up time.Duration
	}
	measure := func(t target) (phase, error) {
		proxy := t.proxy
		upBefore, before := cpuTime(up.Process.Pid), cpuTime(proxy.Process.Pid)
		warmup := o.pairDuration / 4
		r, _, err := t.load.run(ctx, o.concurrency, warmup, o.pairDuration)
		if err != nil {
			return phase{}, err
		}
		if r.Errors > 0 {
			return phase{}, fmt.Errorf("%d failed requests, first: %v", r.Errors, r.FirstError)
		}
		sent := float64(r.Requests) * float64(warmup+o.pairDuration) / float64(o.pairDuration)
		used := cpuTime(proxy.Process.Pid).sub(before)
		per := func(d time.Duration) time.Duration { return time.Duration(float64(d) / sent) }
		return phase{r.RPS(), per(used.total()), per(used.system), per(cpuTime(up.Process.Pid).sub(upBefore).total())}, nil
	}
	fmt.Printf("\n%s: %d pairs of %s phases, gateway and nginx back to back, %d connections\n", p.title, o.pairs, o.pairDuration, o.concurrency)
	fmt.Printf("%-5s | %9s %9s %7s | %17s %17s | %9s %9s\n", "pair", "gateway", "nginx", "ratio", "gateway CPU", "nginx CPU", "svc gw", "svc ngx")
	var ratios, cpuRatios []float64
	for i := range o.pairs {
		var g, n phase
		var err error
		if i%2 == 0 {
			if g, err = measure(gw); err == nil {
				n, err = measure(ng)
			}
		} else {
			if n, err = measure(ng); err == nil {
				g, err = measure(gw)
			}
		}
		if err != nil {
			return fmt.Errorf("%s pairs: %w", p.name, err)
		}
		ratios = append(ratios, g.rps/n.rps)
		cpuRatios = append(cpuRatios, float64(g.proxy)/float64(n.proxy))
		fmt.Printf("%-5d | %9.0f %9.0f %6.2fx | %8s (%6s) %8s (%6s) | %9s %9s\n", i+1, g.rps, n.rps, g.rps/n.rps,
			us(g.proxy), us(g.proxySys), us(n.proxy), us(n.proxySys), us(g.up), us(n.up))
	}
	slices.Sort(ratios)
	slices.Sort(cpuRatios)
	q := func(s []float64, p float64) float64 { return s[int(float64(len(s)-1)*p)] }
	fmt.Printf("gateway/nginx throughput: median %.3fx, quartiles %.3f to %.3f, range %.3f to %.3f\n",
		q(ratios, 0.5), q(ratios, 0.25), q(ratios, 0.75), ratios[0], ratios[len(ratios)-1])
	fmt.Printf("gateway/nginx proxy CPU per request: median %.3fx, quartiles %.3f to %.3f\n",
		q(cpuRatios, 0.5), q(cpuRatios, 0.25), q(cpuRatios, 0.75))
	fmt.Println(verdict("throughput", ratios, pairConfidence, "the gateway", "nginx"))
	fmt.Println(verdict("proxy CPU per request", cpuRatios, pairConfidence, "nginx", "the gateway"))
	return nil
}

// pairConfidence is the confidence of the interval runPairs gives for each median ratio.
const pairConfidence = 0.95

// medianInterval returns a distribution-free confidence interval for the median of the
// population sorted was drawn from: the order statistics k from either end, with k the largest
// for which fewer than k of n draws fall below the median with probability at most
// (1-confidence)/2. Each draw falls below the median with probability one half whatever the
// population, which is why the interval holds for a machine whose noise has no known shape. ok
// is false when n is too small for any interval at that confidence.
func medianInterval(sorted []float64, confidence float64) (lo, hi float64, ok bool) {
	n := len(sorted)
	tail := (1 - confidence) / 2
	// below is P(X <= j) for X ~ Binomial(n, 1/2), summed term by term.
	below, term, k := 0.0, math.Pow(0.5, float64(n)), 0
	for j := 0; j < n; j++ {
		below += term
		if below > tail {
			break
		}
		k = j + 1
		term = term * float64(n-j) / float64(j+1)
	}
	if k == 0 {
		return 0, 0, false
	}
	return sorted[k-1], sorted[n-k], true
}

// verdict says, for the sorted ratios of what, whether the interval of their median lies above
// one (above wins), below it (below wins), or holds it (no difference shown).
func verdict(what string, sorted []float64, confidence float64, above, below string) string {
	lo, hi, ok := medianInterval(sorted, confidence)
	switch {
	case !ok:
		return fmt.Sprintf("%s: too few pairs for a %.0f %% interval of the median", what, 100*confidence)
	case lo > 1:
		return fmt.Sprintf("%s: median ratio between %.3f and %.3f at %.0f %% confidence; %s is ahead", what, lo, hi, 100*confidence, above)
	case hi < 1:
		return fmt.Sprintf("%s: median ratio between %.3f and %.3f at %.0f %% confidence; %s is ahead", what, lo, hi, 100*confidence, below)
	default:
		return fmt.Sprintf("%s: median ratio between %.3f and %.3f at %.0f %% confidence; no difference shown", what, lo, hi, 100*confidence)
	}
}
