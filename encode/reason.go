package encode

// Reason says why a raw line was rejected. OK (0) means it was projected.
type Reason uint8

// Rejection reasons, counted separately by every stage that rejects.
const (
	OK                 Reason = iota
	InvalidJSON               // not one valid JSON value
	NotObject                 // valid JSON, but not an object
	MissingTS                 // no top-level "ts"
	MissingRiderID            // no top-level "rider_id"
	MissingLat                // no top-level "lat"
	MissingLng                // no top-level "lng"
	MissingProduct            // no top-level "product_type"
	BadTS                     // ts is not an integer in 0..MaxTS
	BadRiderID                // rider_id is not a non-empty string of at most MaxRiderIDBytes
	BadLat                    // lat is not a number in -90..90
	BadLng                    // lng is not a number in -180..180
	BadProduct                // product_type is not a UUID string
	DuplicateField            // a required field appears twice at the top level
	TooManyProducts           // a 257th distinct product type
	LineTooLong               // longer than the source's line limit
	Future                    // ahead of the machine's clock, or of a minute the end of the input left open (pipeline's event time)
	UnknownProduct            // product_type not in the products file (run -products=FILE)
	UnconfirmedProduct        // a new product type that waited, while product codes were scarce, for K riders who never came (pipeline's hold.go)
	NumReasons
)

var reasonNames = [NumReasons]string{
	"ok", "invalid_json", "not_object",
	"missing_ts", "missing_rider_id", "missing_lat", "missing_lng", "missing_product_type",
	"bad_ts", "bad_rider_id", "bad_lat", "bad_lng", "bad_product_type",
	"duplicate_field", "too_many_products", "line_too_long", "future",
	"unknown_product", "unconfirmed_product",
}

// String is the reason's stable snake_case name, used in summaries, metrics
// labels and the rejects file.
func (r Reason) String() string {
	if r < NumReasons {
		return reasonNames[r]
	}
	return "unknown"
}
