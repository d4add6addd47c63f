//go:build nodoubles

package doubles

import "time"

const included = false

func startCQL(time.Duration) (Server, error) { return nil, ErrLeftOut }
