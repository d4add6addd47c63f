package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/demandpipe/demandpipe/job"
	"github.com/demandpipe/demandpipe/sink/cassandra"
)

const schemaMore = `Prints the CQL that -sink=cassandra://…?create=true would apply: the keyspace
and the feature table (partition per product, minute and H3 region; TTL and
TimeWindowCompactionStrategy sized to it). sink/CASSANDRA.md explains the model.
Apply it with cqlsh -f, or let the sink create it (?create=true).`

// schemaCommand prints a sink's schema.
func schemaCommand(args []string) error {
	fs := flag.NewFlagSet("schema", flag.ContinueOnError)
	url := fs.String("url", "cassandra://127.0.0.1/demandpipe", "the sink URL whose keyspace, table, ttl, dc and rf the schema uses")
	var defs definitionsFlag
	fs.Var(&defs, "definitions", "a definitions file (run -definitions): also the table of each further definition, TABLE_NAME")
	if len(args) == 0 || args[0] != "cassandra" {
		fmt.Fprintf(os.Stderr, "demandpipe schema cassandra [-url cassandra://HOST/KEYSPACE?table=…&ttl=…&dc=…&rf=…]\n\n%s\n", schemaMore)
		return errUsage
	}
	if err := parse(fs, args[1:], "demandpipe schema cassandra [flags]: print the Cassandra schema.", schemaMore); err != nil {
		return err
	}
	cfg, err := cassandra.ParseURL(*url)
	if err != nil {
		return err
	}
	fmt.Print(cassandra.Schema(cfg))
	for _, d := range defs.defs[min(1, len(defs.defs)):] {
		spec, err := job.CassandraDefinitionSpec(*url, d.Name)
		if err != nil {
			return err
		}
		dc, err := cassandra.ParseURL(spec)
		if err != nil {
			return err
		}
		dc.Definition = d.Definition
		fmt.Printf("\n-- definition %s\n%s", d.Name, tableOnly(cassandra.Schema(dc)))
	}
	return nil
}

// tableOnly is the statements of a schema that create its feature table:
// the keyspace and the state tables are shared by every definition.
func tableOnly(schema string) string {
	var out []string
	for _, st := range strings.SplitAfter(schema, ";\n") {
		if strings.Contains(st, "CREATE TABLE") && !strings.Contains(st, "."+cassandra.StateTable+" ") && !strings.Contains(st, "."+cassandra.MinutesTable+" ") {
			out = append(out, strings.TrimLeft(st, "\n"))
		}
	}
	return strings.Join(out, "")
}
