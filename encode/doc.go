// Package encode holds demandpipe's formats at the edges of the engine:
//
//   - projection (project.go): one raw JSON event in, the five fields the
//     engine needs out (ts, rider_id, lat, lng, product_type), everything else
//     skipped at scanning speed, with no heap allocation;
//   - product types (product.go): UUID strings <-> one-byte codes;
//   - rows (row.go, json.go): the merged feature rows the engine emits, as a
//     columnar Batch and as the ndjson wire form of the contract.
package encode
