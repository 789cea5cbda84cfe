// Command berth is the Berth container image registry.
package main

import (
	"os"

	"github.com/berth-registry/berth/internal/cli"
)

func main() { os.Exit(cli.Execute()) }
