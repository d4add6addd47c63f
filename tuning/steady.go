package tuning

// Steady reports whether the last n rates are steady, each within ±tol of
// their mean (and the mean above zero), and that mean. Fewer than n rates
// (or n < 2) are never steady.
func Steady(rates []float64, n int, tol float64) (bool, float64) {
	if n < 2 || len(rates) < n {
		return false, 0
	}
	last := rates[len(rates)-n:]
	var sum float64
	for _, r := range last {
		sum += r
	}
	mean := sum / float64(n)
	if mean <= 0 {
		return false, mean
	}
	for _, r := range last {
		if r < mean*(1-tol) || r > mean*(1+tol) {
			return false, mean
		}
	}
	return true, mean
}
