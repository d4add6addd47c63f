package serve

import (
	"fmt"

	"github.com/demandpipe/demandpipe/encode"
	"github.com/demandpipe/demandpipe/productfile"
)

// Product names are for people: the page's product picker and the optional
// "names" field of GET /v1/products. The API itself only ever takes UUIDs,
// and a product without a name is shown by its UUID. The names file
// (-serve.product-names=FILE) is the products file (package productfile).

// productNames maps a product UUID to its name.
type productNames productfile.Names

// loadProductNames reads the names file at path ("" means no names).
func loadProductNames(path string) (productNames, error) {
	if path == "" {
		return nil, nil
	}
	names, err := productfile.Load(path)
	if err != nil {
		return nil, fmt.Errorf("serve.product-names=%w", err)
	}
	return productNames(names), nil
}

// appendJSON appends {"uuid":"name",…} for the products of list that have
// a name, in list's order.
func (n productNames) appendJSON(dst []byte, list []encode.UUID) []byte {
	dst = append(dst, '{')
	first := true
	for _, u := range list {
		name, ok := n[u]
		if !ok {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, '"')
		dst = u.AppendText(dst)
		dst = append(dst, `":`...)
		dst = encode.AppendJSONString(dst, name)
	}
	return append(dst, '}')
}
