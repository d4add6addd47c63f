package encode

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

const uuidA = "a1b2c3d4-0000-4000-8000-000000000001"

func TestProjectGolden(t *testing.T) {
	cases := []struct {
		name, line string
		want       Reason
		ts         int64
		rider      string
		lat, lng   float64
	}{
		{"minimal", `{"ts":1717236420000,"rider_id":"r1","lat":40.5,"lng":-73.25,"product_type":"` + uuidA + `"}`, OK, 1717236420000, "r1", 40.5, -73.25},
		{"fields in any order, others ignored at any depth",
			`{"a":{"ts":"x","lat":999},"product_type":"` + strings.ToUpper(uuidA) + `","lng":-73.25,"list":[1,"two",{"rider_id":5},null,true,false,-1.5e3],"rider_id":"r1","lat":40.5,"ts":1717236420000,"z":""}`,
			OK, 1717236420000, "r1", 40.5, -73.25},
		{"white space everywhere", " \t{ \"ts\" : 5 , \"rider_id\" : \"r\" , \"lat\" : 0 , \"lng\" : 0 , \"product_type\" : \"" + uuidA + "\" } \r", OK, 5, "r", 0, 0},
		{"escaped rider id is decoded", `{"ts":1,"rider_id":"r\u00e9\n\"x\"","lat":-90,"lng":180,"product_type":"` + uuidA + `"}`, OK, 1, "ré\n\"x\"", -90, 180},
		{"escaped key still counts", `{"t\u0073":1,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, OK, 1, "r", 1, 2},
		{"exponent coordinates", `{"ts":1,"rider_id":"r","lat":4.05e1,"lng":-7325E-2,"product_type":"` + uuidA + `"}`, OK, 1, "r", 40.5, -73.25},
		{"long mantissa uses strconv", `{"ts":1,"rider_id":"r","lat":40.12345678901234567,"lng":0.1,"product_type":"` + uuidA + `"}`, OK, 1, "r", 40.12345678901234567, 0.1},
		{"not json", `GET / HTTP/1.1`, InvalidJSON, 0, "", 0, 0},
		{"truncated", `{"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA, InvalidJSON, 0, "", 0, 0},
		{"trailing garbage", `{"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"} x`, InvalidJSON, 0, "", 0, 0},
		{"trailing comma", `{"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `",}`, InvalidJSON, 0, "", 0, 0},
		{"bad nested value", `{"x":[1,],"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, InvalidJSON, 0, "", 0, 0},
		{"control char in string", "{\"x\":\"a\tb\",\"ts\":1}", InvalidJSON, 0, "", 0, 0},
		{"array", `[1,2]`, NotObject, 0, "", 0, 0},
		{"empty", ``, InvalidJSON, 0, "", 0, 0},
		{"empty object", `{}`, MissingTS, 0, "", 0, 0},
		{"missing rider", `{"ts":1,"lat":1,"lng":2,"product_type":"` + uuidA + `"}`, MissingRiderID, 0, "", 0, 0},
		{"missing lat", `{"ts":1,"rider_id":"r","lng":2,"product_type":"` + uuidA + `"}`, MissingLat, 0, "", 0, 0},
		{"missing lng", `{"ts":1,"rider_id":"r","lat":2,"product_type":"` + uuidA + `"}`, MissingLng, 0, "", 0, 0},
		{"missing product", `{"ts":1,"rider_id":"r","lat":1,"lng":2}`, MissingProduct, 0, "", 0, 0},
		{"nested fields do not count", `{"e":{"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}}`, MissingTS, 0, "", 0, 0},
		{"ts float", `{"ts":1.5,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, BadTS, 0, "", 0, 0},
		{"ts exponent", `{"ts":1e12,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, BadTS, 0, "", 0, 0},
		{"ts negative", `{"ts":-1,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, BadTS, 0, "", 0, 0},
		{"ts string", `{"ts":"1","rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, BadTS, 0, "", 0, 0},
		{"ts too large", `{"ts":253402300800000,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, BadTS, 0, "", 0, 0},
		{"ts huge", `{"ts":99999999999999999999999,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, BadTS, 0, "", 0, 0},
		{"rider empty", `{"ts":1,"rider_id":"","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, BadRiderID, 0, "", 0, 0},
		{"rider number", `{"ts":1,"rider_id":7,"lat":1,"lng":2,"product_type":"` + uuidA + `"}`, BadRiderID, 0, "", 0, 0},
		{"rider too long", `{"ts":1,"rider_id":"` + strings.Repeat("r", MaxRiderIDBytes+1) + `","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, BadRiderID, 0, "", 0, 0},
		{"lat out of range", `{"ts":1,"rider_id":"r","lat":90.0001,"lng":2,"product_type":"` + uuidA + `"}`, BadLat, 0, "", 0, 0},
		{"lat string", `{"ts":1,"rider_id":"r","lat":"1","lng":2,"product_type":"` + uuidA + `"}`, BadLat, 0, "", 0, 0},
		{"lng out of range", `{"ts":1,"rider_id":"r","lat":1,"lng":-180.5,"product_type":"` + uuidA + `"}`, BadLng, 0, "", 0, 0},
		{"lng null", `{"ts":1,"rider_id":"r","lat":1,"lng":null,"product_type":"` + uuidA + `"}`, BadLng, 0, "", 0, 0},
		{"product not uuid", `{"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"uberX"}`, BadProduct, 0, "", 0, 0},
		{"product bad hex", `{"ts":1,"rider_id":"r","lat":1,"lng":2,"product_type":"g1b2c3d4-0000-4000-8000-000000000001"}`, BadProduct, 0, "", 0, 0},
		{"duplicate field", `{"ts":1,"ts":2,"rider_id":"r","lat":1,"lng":2,"product_type":"` + uuidA + `"}`, DuplicateField, 0, "", 0, 0},
		{"invalid json wins over a bad field", `{"ts":"x","rider_id":"r",`, InvalidJSON, 0, "", 0, 0},
	}
	var p Projector
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var ev Event
			got := p.Project([]byte(c.line), &ev)
			if got != c.want {
				t.Fatalf("reason %s, want %s", got, c.want)
			}
			if got != OK {
				return
			}
			if ev.TS != c.ts || string(ev.Rider) != c.rider || ev.Lat != c.lat || ev.Lng != c.lng {
				t.Fatalf("got ts=%d rider=%q lat=%v lng=%v", ev.TS, ev.Rider, ev.Lat, ev.Lng)
			}
			if ev.Product.String() != uuidA {
				t.Fatalf("product %s", ev.Product)
			}
		})
	}
}

func TestProjectNoAllocs(t *testing.T) {
	line := []byte(`{"event_id":"9f13e2f741b81dcf","session":{"id":"1cff","ts":1717235961929},"ts":1717235999694,"rider_id":"r-194a","device":{"os":"android","battery":0.69},"lat":40.7174663,"lng":-74.1400182,"product_type":"` + uuidA + `","exp":["eta_\u00e9t\u00e9"],"promo":null}`)
	var p Projector
	var ev Event
	if n := testing.AllocsPerRun(1000, func() { p.Project(line, &ev) }); n != 0 {
		t.Fatalf("%v allocations per projection, want 0", n)
	}
}

func FuzzProject(f *testing.F) {
	f.Add([]byte(`{"ts":1717236420000,"rider_id":"r1","lat":40.5,"lng":-73.25,"product_type":"` + uuidA + `"}`))
	f.Add([]byte(`{"a":[{"b":"\u00e9"}],"ts":5,"rider_id":"x\"y","lat":-0.0,"lng":1e2,"product_type":"` + uuidA + `"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"ts":1,"ts":1}`))
	f.Add([]byte(`"\ud800"`))
	var p Projector
	f.Fuzz(func(t *testing.T, line []byte) {
		var ev Event
		got := p.Project(line, &ev)
		valid := json.Valid(line)
		if !valid {
			if got != InvalidJSON {
				t.Fatalf("invalid JSON %q projected as %s", line, got)
			}
			return
		}
		if got == InvalidJSON {
			t.Fatalf("valid JSON %q rejected as invalid_json", line)
		}
		if got != OK {
			return
		}
		// Accepted: encoding/json must agree on every field.
		var m map[string]json.RawMessage
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("accepted %q but encoding/json says %v", line, err)
		}
		var ts int64
		var rider, prod string
		var lat, lng float64
		if json.Unmarshal(m["ts"], &ts) != nil || ts != ev.TS {
			t.Fatalf("ts: %s vs %d", m["ts"], ev.TS)
		}
		if json.Unmarshal(m["rider_id"], &rider) != nil || rider != string(ev.Rider) && !strings.ContainsRune(rider, '\uFFFD') {
			t.Fatalf("rider_id: %s vs %q", m["rider_id"], ev.Rider)
		}
		if json.Unmarshal(m["lat"], &lat) != nil || lat != ev.Lat || math.Abs(lat) > 90 {
			t.Fatalf("lat: %s vs %v", m["lat"], ev.Lat)
		}
		if json.Unmarshal(m["lng"], &lng) != nil || lng != ev.Lng || math.Abs(lng) > 180 {
			t.Fatalf("lng: %s vs %v", m["lng"], ev.Lng)
		}
		if json.Unmarshal(m["product_type"], &prod) != nil || strings.ToLower(prod) != ev.Product.String() {
			t.Fatalf("product_type: %s vs %s", m["product_type"], ev.Product)
		}
	})
}

func TestUUIDRoundTrip(t *testing.T) {
	u, ok := ParseUUID([]byte("A1B2C3D4-0000-4000-8000-00000000000F"))
	if !ok || u.String() != "a1b2c3d4-0000-4000-8000-00000000000f" {
		t.Fatalf("%v %s", ok, u)
	}
	for _, bad := range []string{"", "a1b2c3d4-0000-4000-8000-00000000000", "a1b2c3d4x0000-4000-8000-000000000001", "a1b2c3d4-0000-4000-8000-00000000000g"} {
		if _, ok := ParseUUID([]byte(bad)); ok {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestProductsCodes(t *testing.T) {
	p := NewProducts()
	for i := range MaxProducts {
		var u UUID
		u[0], u[1] = byte(i), byte(i>>8)
		c, err := p.Code(u)
		if err != nil || int(c) != i {
			t.Fatalf("product %d: code %d err %v", i, c, err)
		}
		if c2, _ := p.Code(u); c2 != c {
			t.Fatal("code changed")
		}
	}
	if _, err := p.Code(UUID{0xff, 0xff, 1}); err != ErrTooManyProducts {
		t.Fatalf("257th product: %v", err)
	}
	if p.Name(3) != (UUID{3}).String() {
		t.Fatal(p.Name(3))
	}
}

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"plain", "q\"b\\", "ctl\x01\n\t", "é€😀", "bad\xffutf8"} {
		out := AppendJSONString(nil, []byte(s))
		if fromString := AppendJSONString(nil, s); string(fromString) != string(out) {
			t.Fatalf("%q: string and []byte forms differ: %s vs %s", s, fromString, out)
		}
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, out, err)
		}
		if want := strings.ToValidUTF8(s, "\uFFFD"); back != want {
			t.Fatalf("%q -> %q", s, back)
		}
	}
}

func BenchmarkProject(b *testing.B) {
	line := []byte(`{"event_id":"9f13e2f741b81dcf","event_type":"pricing_view","v":7,"session":{"id":"1cff4stw2uqqi","ts":1717235961929},"ts":1717235999694,"rider_id":"r-194a","device":{"os":"android","model":"iPhone13,1","app_version":"4.523.10003","locale":"en_US","battery":0.69},"lat":40.7174663,"lng":-74.1400182,"product_type":"16c2d89c-4a7e-495d-9c10-b4026c87e1da","surge_multiplier_shown":1.4,"eta_seconds":449,"nearby_drivers":[{"id":"d-1hnl","dist_m":96}],"network":"lte","exp":["eta_\u00e9t\u00e9"],"promo":null}`)
	var p Projector
	var ev Event
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	for b.Loop() {
		if p.Project(line, &ev) != OK {
			b.Fatal("rejected")
		}
	}
}

// TestProductsReuse: past 256 codes Assign reuses the first reusable code,
// and rows of minutes before the reuse keep the former owner's name.
func TestProductsReuse(t *testing.T) {
	p := NewProducts()
	u := func(i int) UUID { return UUID{0xcc, byte(i >> 8), byte(i)} }
	for i := range MaxProducts {
		if c, err := p.Assign(u(i), 0, nil); err != nil || int(c) != i {
			t.Fatalf("%d: %d %v", i, c, err)
		}
	}
	if _, err := p.Assign(u(256), 10, func(byte) bool { return false }); err != ErrTooManyProducts {
		t.Fatalf("no reusable code: %v", err)
	}
	gen := p.Gen()
	c, err := p.Assign(u(256), 10, func(c byte) bool { return c == 7 })
	if err != nil || c != 7 || p.Gen() == gen {
		t.Fatalf("reuse: %d %v gen %d", c, err, p.Gen())
	}
	if _, ok := p.Lookup(u(7)); ok {
		t.Fatal("the former owner still has a code")
	}
	if p.UUIDAt(7, 9) != u(7) || p.UUIDAt(7, 10) != u(256) || p.NameAt(7, 9) != u(7).String() || p.Name(7) != u(256).String() {
		t.Fatal("owners by minute")
	}
	// A second reuse of the same code: three owners, each for its minutes.
	if c, _ := p.Assign(u(257), 20, func(c byte) bool { return c == 7 }); c != 7 {
		t.Fatal(c)
	}
	for m, want := range map[int64]UUID{5: u(7), 9: u(7), 10: u(256), 19: u(256), 20: u(257), 99: u(257)} {
		if got := p.UUIDAt(7, m); got != want {
			t.Errorf("minute %d: %v, want %v", m, got, want)
		}
	}
}
