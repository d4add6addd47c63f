// Package corruptfile damages a store's table files for the tests of what a
// corrupt store does (store, cmd/demandpipe): the largest .sst of a
// directory, bytes flipped in its middle, where pebble keeps data blocks
// (keys sort by tag, and the rows are most of the bytes) while its index
// and footer stay whole, so the store still opens.
package corruptfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// Largest is the largest *.sst file in dir.
func Largest(dir string) (string, error) {
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	largest, size := "", int64(0)
	for _, f := range ssts {
		if fi, err := os.Stat(f); err == nil && fi.Size() > size {
			largest, size = f, fi.Size()
		}
	}
	if largest == "" {
		return "", fmt.Errorf("no table file in %s to corrupt", dir)
	}
	return largest, nil
}

// FlipMiddle flips every 97th byte of the middle fifth of path.
func FlipMiddle(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for i := len(b) * 2 / 5; i < len(b)*3/5; i += 97 {
		b[i] ^= 0x5a
	}
	return os.WriteFile(path, b, 0o644)
}

// LargestTable flips bytes in the middle of dir's largest table file.
func LargestTable(dir string) error {
	f, err := Largest(dir)
	if err != nil {
		return err
	}
	return FlipMiddle(f)
}
