// Command pause is the lab node's sandbox ("pause") container: it holds a Pod's namespaces open
// and, as PID 1 of the Pod, reaps orphaned children, until it is told to stop. The node has no
// registry to pull registry.k8s.io/pause from, so the lab builds this one with its binaries and
// hack/node/images.py wraps it in an OCI image. Static (CGO_ENABLED=0), no dependencies.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	children := make(chan os.Signal, 16)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			os.Exit(0)
		case <-children:
			// Reap every exited child; -1: any child, WNOHANG: do not block.
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
