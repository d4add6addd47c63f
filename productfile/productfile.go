// Package productfile reads the products file: the product types a
// deployment knows, with a name for people. `run -products=FILE` admits
// only its products (an event of any other is rejected as unknown_product,
// so junk product UUIDs cost only their own events), and `serve
// -serve.product-names=FILE` names them on the page and in GET
// /v1/products.
//
// The file is either CSV, one product a line:
//
//	uuid,name
//	6f1c0a5e-2d4b-4c1e-9a7f-0b1d2c3e4f50,uberX
//	0e9d8c7b-6a5f-4e3d-2c1b-a09f8e7d6c5b,"Comfort, quiet"
//
// (an optional header whose first field is "uuid" or "product_type";
// lines starting with # are comments), or JSON, either an object
// {"uuid":"name",…} or an array [{"uuid":…,"name":…},…]. Every line is
// checked: a UUID that does not parse, an empty or over-long name, a
// control character, a UUID or a name given twice is an error naming the
// file and the line (or the JSON entry), so a typo stops the process at
// start instead of mislabelling or dropping a product.
package productfile

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/demandpipe/demandpipe/encode"
)

// MaxNameBytes bounds a product name: it must fit a picker (and a line of
// a status bar); 64 bytes is ~3x the longest real product names.
const MaxNameBytes = 64

// MaxFileBytes bounds the names file: 256 products of 64-byte names
// and 36-byte UUIDs are ~26 KB, so 1 MiB is room for comments and more.
const MaxFileBytes = 1 << 20

// Names maps a product UUID to its name.
type Names map[encode.UUID]string

// Load reads the products file at path; errors name the path.
func Load(path string) (Names, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(b) > MaxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, MaxFileBytes)
	}
	names, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return names, nil
}

// Parse parses a products file's content: JSON when its first
// non-blank byte is { or [, CSV otherwise.
func Parse(b []byte) (Names, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf")) // a byte-order mark from a spreadsheet
	if !utf8.Valid(b) {
		return nil, errors.New("not UTF-8 text")
	}
	t := bytes.TrimLeft(b, " \t\r\n")
	names := Names{}
	byName := map[string]string{}
	var err error
	switch {
	case len(t) == 0:
		return nil, errors.New("empty: want CSV lines uuid,name or a JSON object {\"uuid\":\"name\"}")
	case t[0] == '{' || t[0] == '[':
		err = parseNamesJSON(t, names, byName)
	default:
		err = parseNamesCSV(b, names, byName)
	}
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, errors.New("no product named: want CSV lines uuid,name or a JSON object {\"uuid\":\"name\"}")
	}
	return names, nil
}

func parseNamesCSV(b []byte, names Names, byName map[string]string) error {
	r := csv.NewReader(bytes.NewReader(b))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	r.TrimLeadingSpace = true
	first := true
	for {
		rec, err := r.Read()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				return fmt.Errorf("line %d: %v", pe.StartLine, pe.Err)
			}
			return err
		}
		line, _ := r.FieldPos(0)
		where := "line " + strconv.Itoa(line)
		if first {
			first = false
			if h := string(bytes.ToLower([]byte(rec[0]))); h == "uuid" || h == "product_type" || h == "product" {
				continue // header
			}
		}
		if len(rec) != 2 {
			return fmt.Errorf("%s: %d fields, want 2: uuid,name (quote a name that holds a comma)", where, len(rec))
		}
		if err := addName(names, byName, where, rec[0], rec[1]); err != nil {
			return err
		}
	}
}

func parseNamesJSON(b []byte, names Names, byName map[string]string) error {
	d := json.NewDecoder(bytes.NewReader(b))
	if b[0] == '{' {
		// An object keeps its order only through the token stream, and
		// the stream is what sees a key given twice.
		if _, err := d.Token(); err != nil {
			return jsonErr(err)
		}
		for i := 1; d.More(); i++ {
			k, err := d.Token()
			if err != nil {
				return jsonErr(err)
			}
			var v string
			if err := d.Decode(&v); err != nil {
				return fmt.Errorf("JSON entry %d (%q): the name must be a string: %v", i, k, jsonErr(err))
			}
			if err := addName(names, byName, fmt.Sprintf("JSON entry %d", i), k.(string), v); err != nil {
				return err
			}
		}
		if _, err := d.Token(); err != nil {
			return jsonErr(err)
		}
	} else {
		var list []struct {
			UUID *string `json:"uuid"`
			Name *string `json:"name"`
		}
		d.DisallowUnknownFields()
		if err := d.Decode(&list); err != nil {
			return fmt.Errorf("want [{\"uuid\":…,\"name\":…},…]: %v", jsonErr(err))
		}
		for i, e := range list {
			where := fmt.Sprintf("JSON entry %d", i+1)
			if e.UUID == nil || e.Name == nil {
				return fmt.Errorf("%s: want both \"uuid\" and \"name\"", where)
			}
			if err := addName(names, byName, where, *e.UUID, *e.Name); err != nil {
				return err
			}
		}
	}
	if _, err := d.Token(); err != io.EOF {
		return errors.New("JSON: text after the end of the names")
	}
	return nil
}

func jsonErr(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("JSON at byte %d: %v", se.Offset, err)
	}
	return err
}

// addName checks one (uuid, name) pair and adds it.
func addName(names Names, byName map[string]string, where, id, name string) error {
	u, ok := encode.ParseUUID([]byte(id))
	if !ok {
		return fmt.Errorf("%s: %s: not a product type UUID (8-4-4-4-12 hex digits)", where, quote(id))
	}
	if name == "" {
		return fmt.Errorf("%s: %s has an empty name", where, id)
	}
	if len(name) > MaxNameBytes {
		return fmt.Errorf("%s: name %s is %d bytes, at most %d", where, quote(name), len(name), MaxNameBytes)
	}
	for _, r := range name {
		if unicode.IsControl(r) {
			return fmt.Errorf("%s: name %s holds a control character", where, strconv.Quote(name))
		}
	}
	if name != string(bytes.TrimSpace([]byte(name))) {
		return fmt.Errorf("%s: name %s starts or ends with a space", where, strconv.Quote(name))
	}
	if old, dup := names[u]; dup {
		return fmt.Errorf("%s: product %s named twice (%s and %s)", where, u, quote(old), quote(name))
	}
	if other, dup := byName[name]; dup {
		return fmt.Errorf("%s: name %s is also the name of %s: a picker could not tell them apart", where, quote(name), other)
	}
	names[u] = name
	byName[name] = u.String()
	return nil
}

// quote shows a value from the file in an error, cut to 64 bytes.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + s + `"`
}
