//go:build !serve

package main

import "errors"

// serveCommand is replaced by serve.go when the feature store lands (issue 3).
func serveCommand([]string) error {
	return errors.New("serve is not built yet: the feature store and HTTP API are issue 3, in progress")
}
