//go:build tools

// Package tools pins lego, the benchmark's second ACME client (bench/). Its own module, so that
// lego's dependencies never move the Kubernetes pins in hack/tools.
package tools

import (
	_ "github.com/go-acme/lego/v4/cmd/lego"
)
