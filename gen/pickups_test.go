package gen

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestReadPickups(t *testing.T) {
	csv := "Date/Time,Lat,Lon,Base\n04-02-14 0:05,40.7285,-74.0467,B02512\n4/13/2014 0:01:00,40.75,-73.99,B02598\n04-02-14 0:00,40.7458,-73.9843,B02512\n"
	ps, err := ReadPickups(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 3 || ps[0].Lat != 40.7458 || ps[2].Base != "B02598" || ps[0].TS/60000 != 1396396800000/60000 {
		t.Fatalf("%+v", ps)
	}
	line := AppendPickupEvent(nil, 7, ps[0])
	var ev struct {
		TS      int64   `json:"ts"`
		Rider   string  `json:"rider_id"`
		Lat     float64 `json:"lat"`
		Product string  `json:"product_type"`
	}
	if err := json.Unmarshal(line, &ev); err != nil || ev.Rider != "nyc-7" || ev.Product != "b0251200-0000-4000-8000-000000000000" || ev.Lat != 40.7458 {
		t.Fatalf("%s: %v", line, err)
	}
	if _, err := ReadPickups(strings.NewReader("x,y\n")); err == nil {
		t.Fatal("bad csv accepted")
	}
}
