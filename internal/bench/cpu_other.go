//go:build !unix

package bench

// selfCPU returns -1: this platform's CPU time is not measured.
func selfCPU() float64 { return -1 }
