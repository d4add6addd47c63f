package cqltest

import (
	"fmt"
	"strings"
)

// This file is the CQL subset's tokenizer and recursive-descent parser. It turns
// query text into a statement; nothing here knows the schema, so a statement can
// be parsed once (at PREPARE) and bound against the tables at each execution.
// Errors are *syntaxError so the server can answer SYNTAX_ERROR as Cassandra does.

type tokKind uint8

const (
	tokEOF    tokKind = iota
	tokIdent          // unquoted identifier or keyword, lower-cased
	tokQIdent         // "Quoted" identifier, case kept
	tokString         // 'string' with '' unescaped
	tokNumber         // integer or float literal, optional leading '-'
	tokBlob           // 0x... literal, text kept (without validation of its digits)
	tokMarker         // ?
	tokPunct          // one of ( ) , ; . = < > <= >= != * { } [ ] :
)

type token struct {
	kind tokKind
	text string
	pos  int
}

type syntaxError struct{ msg string }

func (e *syntaxError) Error() string { return e.msg }

func syntaxErrorf(format string, args ...any) error {
	return &syntaxError{msg: fmt.Sprintf(format, args...)}
}

// lex splits src into tokens. It never panics: every index is checked.
func lex(src string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '-' && i+1 < len(src) && src[i+1] == '-', c == '/' && i+1 < len(src) && src[i+1] == '/':
			for i < len(src) && src[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return nil, syntaxErrorf("unterminated comment at %d", i)
			}
			i += end + 4
		case c == '\'', c == '"':
			kind, what := tokString, "string"
			if c == '"' {
				kind, what = tokQIdent, "quoted identifier"
			}
			text, next, err := scanQuoted(src, i, what)
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{kind, text, i})
			i = next
		case c == '0' && i+1 < len(src) && (src[i+1] == 'x' || src[i+1] == 'X'):
			j := i + 2
			for j < len(src) && isHex(src[j]) {
				j++
			}
			toks = append(toks, token{tokBlob, strings.ToLower(src[i+2 : j]), i})
			i = j
		case isDigit(c) || (c == '-' && i+1 < len(src) && (isDigit(src[i+1]) || src[i+1] == '.')) || (c == '.' && i+1 < len(src) && isDigit(src[i+1])):
			j := i + 1
			for j < len(src) && (isDigit(src[j]) || src[j] == '.' || src[j] == 'e' || src[j] == 'E' ||
				((src[j] == '-' || src[j] == '+') && (src[j-1] == 'e' || src[j-1] == 'E'))) {
				j++
			}
			toks = append(toks, token{tokNumber, src[i:j], i})
			i = j
		case isIdentStart(c):
			j := i + 1
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			toks = append(toks, token{tokIdent, strings.ToLower(src[i:j]), i})
			i = j
		case c == '?':
			toks = append(toks, token{tokMarker, "?", i})
			i++
		case c == '<' || c == '>' || c == '!':
			if i+1 < len(src) && src[i+1] == '=' {
				toks = append(toks, token{tokPunct, src[i : i+2], i})
				i += 2
			} else if c == '!' {
				return nil, syntaxErrorf("unexpected '!' at %d", i)
			} else {
				toks = append(toks, token{tokPunct, src[i : i+1], i})
				i++
			}
		case strings.IndexByte("(),;.=*{}[]:", c) >= 0:
			toks = append(toks, token{tokPunct, src[i : i+1], i})
			i++
		default:
			return nil, syntaxErrorf("unexpected character %q at %d", c, i)
		}
	}
	return append(toks, token{kind: tokEOF, pos: len(src)}), nil
}

func isDigit(c byte) bool      { return c >= '0' && c <= '9' }
func isHex(c byte) bool        { return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') }
func isIdentStart(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' || c == '_' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || isDigit(c) }

// stmtKind names a statement; the names are what Stats.Statements counts.
type stmtKind string

const (
	stmtSelect         stmtKind = "SELECT"
	stmtInsert         stmtKind = "INSERT"
	stmtUpdate         stmtKind = "UPDATE"
	stmtDelete         stmtKind = "DELETE"
	stmtCreateKeyspace stmtKind = "CREATE KEYSPACE"
	stmtCreateTable    stmtKind = "CREATE TABLE"
	stmtUse            stmtKind = "USE"
	stmtDropTable      stmtKind = "DROP TABLE"
	stmtDropKeyspace   stmtKind = "DROP KEYSPACE"
	stmtTruncate       stmtKind = "TRUNCATE"
)

type termKind uint8

const (
	termMarker termKind = iota
	termString
	termNumber
	termBool
	termNull
	termBlob
	termList // [a, b] (also a parenthesised tuple)
	termSet  // {a, b}
	termMap  // {k: v}
	termIdent
)

// term is a value in a statement: a bind marker or a literal that is encoded only
// once its column type is known.
type term struct {
	kind   termKind
	text   string
	marker int // index of the bind marker, for termMarker
	elems  []term
	keys   []term // termMap keys, parallel to elems
}

// relation is one WHERE condition: col op term, or col IN (terms) / IN ?.
type relation struct {
	col   string
	op    string // = < <= > >= IN
	terms []term // one term, or the IN list (a single marker for IN ?)
	inAll bool   // IN ? : the single marker binds a list
}

// condition is one IF condition of a lightweight transaction: col op
// value, op one of = != < <= > >= (cql3/conditions/ColumnCondition.java;
// IN and collection elements are not supported here).
type condition struct {
	col   string
	op    string
	value term
}

type option struct {
	name  string
	value term
}

type columnDef struct {
	name   string
	typ    *colType
	static bool
}

// statement is a parsed CQL statement. Which fields are set depends on kind.
type statement struct {
	kind     stmtKind
	keyspace string // qualifier of the table, or the keyspace of keyspace statements
	table    string
	ifExists bool // IF NOT EXISTS for CREATE/INSERT, IF EXISTS for DROP/DELETE/UPDATE
	options  []option

	// CREATE TABLE
	columns      []columnDef
	partitionKey []string
	clustering   []string
	descending   map[string]bool

	// INSERT / UPDATE
	insertCols []string
	values     []term
	ttl        *term
	timestamp  *term

	// SELECT / DELETE / UPDATE
	selectCols []string // nil means *
	countAll   bool     // SELECT COUNT(*)
	where      []relation
	limit      *term
	deleteCols []string // DELETE c1, c2 FROM: the cells deleted (nil: rows)

	// UPDATE / DELETE ... IF c = v [AND ...]: a lightweight transaction
	// (with ifExists: IF EXISTS instead).
	conds []condition

	markers int    // number of bind markers
	text    string // the statement as the client sent it
}

type parser struct {
	toks    []token
	i       int
	markers int
}

// parse parses one CQL statement (an optional trailing ';' is allowed).
func parse(src string) (*statement, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks}
	st, err := p.statement()
	if err != nil {
		return nil, err
	}
	p.acceptPunct(";")
	if p.peek().kind != tokEOF {
		return nil, p.errorf("unexpected %q after statement", p.peek().text)
	}
	st.markers, st.text = p.markers, src
	return st, nil
}

func (p *parser) peek() token { return p.toks[p.i] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tokEOF {
		p.i++
	}
	return t
}

func (p *parser) errorf(format string, args ...any) error {
	return syntaxErrorf("line 1:%d %s", p.peek().pos, fmt.Sprintf(format, args...))
}

func (p *parser) isKeyword(kw string) bool {
	t := p.peek()
	return t.kind == tokIdent && t.text == kw
}

func (p *parser) acceptKeyword(kw string) bool {
	if p.isKeyword(kw) {
		p.i++
		return true
	}
	return false
}

func (p *parser) expectKeyword(kw string) error {
	if !p.acceptKeyword(kw) {
		return p.errorf("expected %s, got %q", strings.ToUpper(kw), p.peek().text)
	}
	return nil
}

func (p *parser) acceptPunct(s string) bool {
	t := p.peek()
	if t.kind == tokPunct && t.text == s {
		p.i++
		return true
	}
	return false
}

func (p *parser) expectPunct(s string) error {
	if !p.acceptPunct(s) {
		return p.errorf("expected %q, got %q", s, p.peek().text)
	}
	return nil
}

func (p *parser) ident() (string, error) {
	t := p.peek()
	if t.kind == tokIdent || t.kind == tokQIdent {
		p.i++
		return t.text, nil
	}
	return "", p.errorf("expected identifier, got %q", t.text)
}

// qualifiedName parses [keyspace.]name.
func (p *parser) qualifiedName() (ks, name string, err error) {
	if name, err = p.ident(); err != nil {
		return "", "", err
	}
	if p.acceptPunct(".") {
		ks = name
		if name, err = p.ident(); err != nil {
			return "", "", err
		}
	}
	return ks, name, nil
}

func (p *parser) statement() (*statement, error) {
	switch {
	case p.acceptKeyword("select"):
		return p.selectStmt()
	case p.acceptKeyword("insert"):
		return p.insertStmt()
	case p.acceptKeyword("update"):
		return p.updateStmt()
	case p.acceptKeyword("delete"):
		return p.deleteStmt()
	case p.acceptKeyword("create"):
		switch {
		case p.acceptKeyword("keyspace"), p.acceptKeyword("schema"):
			return p.createKeyspace()
		case p.acceptKeyword("table"), p.acceptKeyword("columnfamily"):
			return p.createTable()
		}
		return nil, p.errorf("unsupported CREATE %q", p.peek().text)
	case p.acceptKeyword("use"):
		ks, err := p.ident()
		return &statement{kind: stmtUse, keyspace: ks}, err
	case p.acceptKeyword("drop"):
		kind := stmtDropTable
		switch {
		case p.acceptKeyword("table"), p.acceptKeyword("columnfamily"):
		case p.acceptKeyword("keyspace"), p.acceptKeyword("schema"):
			kind = stmtDropKeyspace
		default:
			return nil, p.errorf("unsupported DROP %q", p.peek().text)
		}
		st := &statement{kind: kind}
		if p.acceptKeyword("if") {
			if err := p.expectKeyword("exists"); err != nil {
				return nil, err
			}
			st.ifExists = true
		}
		var err error
		if kind == stmtDropKeyspace {
			st.keyspace, err = p.ident()
		} else {
			st.keyspace, st.table, err = p.qualifiedName()
		}
		return st, err
	case p.acceptKeyword("truncate"):
		p.acceptKeyword("table")
		st := &statement{kind: stmtTruncate}
		var err error
		st.keyspace, st.table, err = p.qualifiedName()
		return st, err
	}
	return nil, p.errorf("unsupported statement starting with %q", p.peek().text)
}

func (p *parser) ifNotExists() (bool, error) {
	if !p.acceptKeyword("if") {
		return false, nil
	}
	if err := p.expectKeyword("not"); err != nil {
		return false, err
	}
	return true, p.expectKeyword("exists")
}

func (p *parser) createKeyspace() (*statement, error) {
	st := &statement{kind: stmtCreateKeyspace}
	var err error
	if st.ifExists, err = p.ifNotExists(); err != nil {
		return nil, err
	}
	if st.keyspace, err = p.ident(); err != nil {
		return nil, err
	}
	if p.acceptKeyword("with") {
		if st.options, err = p.options(); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (p *parser) createTable() (*statement, error) {
	st := &statement{kind: stmtCreateTable, descending: map[string]bool{}}
	var err error
	if st.ifExists, err = p.ifNotExists(); err != nil {
		return nil, err
	}
	if st.keyspace, st.table, err = p.qualifiedName(); err != nil {
		return nil, err
	}
	if err = p.expectPunct("("); err != nil {
		return nil, err
	}
	for {
		if p.acceptKeyword("primary") {
			if err = p.expectKeyword("key"); err != nil {
				return nil, err
			}
			if st.partitionKey != nil {
				return nil, p.errorf("multiple PRIMARY KEY definitions")
			}
			if err = p.primaryKey(st); err != nil {
				return nil, err
			}
		} else {
			var cd columnDef
			if cd.name, err = p.ident(); err != nil {
				return nil, err
			}
			if cd.typ, err = p.typ(0); err != nil {
				return nil, err
			}
			if p.acceptKeyword("static") {
				cd.static = true
			}
			if p.acceptKeyword("primary") {
				if err = p.expectKeyword("key"); err != nil {
					return nil, err
				}
				if st.partitionKey != nil {
					return nil, p.errorf("multiple PRIMARY KEY definitions")
				}
				st.partitionKey = []string{cd.name}
			}
			st.columns = append(st.columns, cd)
		}
		if p.acceptPunct(")") {
			break
		}
		if err = p.expectPunct(","); err != nil {
			return nil, err
		}
	}
	if st.partitionKey == nil {
		return nil, p.errorf("no PRIMARY KEY specified")
	}
	if p.acceptKeyword("with") {
		for {
			switch {
			case p.acceptKeyword("clustering"):
				if err = p.clusteringOrder(st); err != nil {
					return nil, err
				}
			case p.acceptKeyword("compact"):
				if err = p.expectKeyword("storage"); err != nil {
					return nil, err
				}
				st.options = append(st.options, option{name: "compact storage", value: term{kind: termBool, text: "true"}})
			default:
				o, err := p.option()
				if err != nil {
					return nil, err
				}
				st.options = append(st.options, o)
			}
			if !p.acceptKeyword("and") {
				break
			}
		}
	}
	return st, nil
}

// primaryKey parses ( pk | (pk1, pk2), ck1, ... ).
func (p *parser) primaryKey(st *statement) error {
	if err := p.expectPunct("("); err != nil {
		return err
	}
	if p.acceptPunct("(") {
		names, err := p.identList()
		if err != nil {
			return err
		}
		st.partitionKey = names
	} else {
		name, err := p.ident()
		if err != nil {
			return err
		}
		st.partitionKey = []string{name}
	}
	for p.acceptPunct(",") {
		name, err := p.ident()
		if err != nil {
			return err
		}
		st.clustering = append(st.clustering, name)
	}
	return p.expectPunct(")")
}

// identList parses "a, b, c)" after an opening parenthesis.
func (p *parser) identList() ([]string, error) {
	var names []string
	for {
		name, err := p.ident()
		if err != nil {
			return nil, err
		}
		names = append(names, name)
		if p.acceptPunct(")") {
			return names, nil
		}
		if err = p.expectPunct(","); err != nil {
			return nil, err
		}
	}
}

func (p *parser) clusteringOrder(st *statement) error {
	if err := p.expectKeyword("order"); err != nil {
		return err
	}
	if err := p.expectKeyword("by"); err != nil {
		return err
	}
	if err := p.expectPunct("("); err != nil {
		return err
	}
	for {
		name, err := p.ident()
		if err != nil {
			return err
		}
		if p.acceptKeyword("desc") {
			st.descending[name] = true
		} else {
			p.acceptKeyword("asc")
		}
		if p.acceptPunct(")") {
			return nil
		}
		if err = p.expectPunct(","); err != nil {
			return err
		}
	}
}

func (p *parser) options() ([]option, error) {
	var opts []option
	for {
		o, err := p.option()
		if err != nil {
			return nil, err
		}
		opts = append(opts, o)
		if !p.acceptKeyword("and") {
			return opts, nil
		}
	}
}

func (p *parser) option() (option, error) {
	name, err := p.ident()
	if err != nil {
		return option{}, err
	}
	if err = p.expectPunct("="); err != nil {
		return option{}, err
	}
	v, err := p.term(0)
	if err != nil {
		return option{}, err
	}
	if v.kind == termMarker {
		return option{}, p.errorf("bind markers are not allowed in options")
	}
	return option{name: name, value: v}, nil
}

// maxDepth bounds nesting of types and collection literals so hostile input
// cannot exhaust the stack.
const maxDepth = 32

// typ parses a CQL type such as bigint, list<int> or frozen<map<text, text>>.
func (p *parser) typ(depth int) (*colType, error) {
	if depth > maxDepth {
		return nil, p.errorf("type nested too deeply")
	}
	name, err := p.ident()
	if err != nil {
		return nil, err
	}
	var args []*colType
	if p.acceptPunct("<") {
		for {
			a, err := p.typ(depth + 1)
			if err != nil {
				return nil, err
			}
			args = append(args, a)
			if p.acceptPunct(">") {
				break
			}
			if err = p.expectPunct(","); err != nil {
				return nil, err
			}
		}
	}
	t, err := newColType(name, args)
	if err != nil {
		return nil, p.errorf("%v", err)
	}
	return t, nil
}

// term parses a bind marker or a literal.
func (p *parser) term(depth int) (term, error) {
	if depth > maxDepth {
		return term{}, p.errorf("literal nested too deeply")
	}
	t := p.next()
	switch t.kind {
	case tokMarker:
		m := term{kind: termMarker, marker: p.markers}
		p.markers++
		return m, nil
	case tokString:
		return term{kind: termString, text: t.text}, nil
	case tokNumber:
		return term{kind: termNumber, text: t.text}, nil
	case tokBlob:
		return term{kind: termBlob, text: t.text}, nil
	case tokIdent:
		switch t.text {
		case "true", "false":
			return term{kind: termBool, text: t.text}, nil
		case "null":
			return term{kind: termNull}, nil
		case "nan", "infinity":
			return term{kind: termNumber, text: t.text}, nil
		}
		// Bare words appear as option values (e.g. durable_writes = true is
		// handled above; caching = 'ALL' is a string) and as unquoted names.
		return term{kind: termIdent, text: t.text}, nil
	case tokQIdent:
		return term{kind: termIdent, text: t.text}, nil
	case tokPunct:
		switch t.text {
		case "[", "(":
			closing := "]"
			if t.text == "(" {
				closing = ")"
			}
			out := term{kind: termList}
			if p.acceptPunct(closing) {
				return out, nil
			}
			for {
				e, err := p.term(depth + 1)
				if err != nil {
					return term{}, err
				}
				out.elems = append(out.elems, e)
				if p.acceptPunct(closing) {
					return out, nil
				}
				if err = p.expectPunct(","); err != nil {
					return term{}, err
				}
			}
		case "{":
			out := term{kind: termSet}
			if p.acceptPunct("}") {
				out.kind = termMap // {} is an empty map or set; maps are more common in options
				return out, nil
			}
			for first := true; ; first = false {
				k, err := p.term(depth + 1)
				if err != nil {
					return term{}, err
				}
				if p.acceptPunct(":") {
					if !first && out.kind != termMap {
						return term{}, p.errorf("mixed set and map literal")
					}
					out.kind = termMap
					v, err := p.term(depth + 1)
					if err != nil {
						return term{}, err
					}
					out.keys = append(out.keys, k)
					out.elems = append(out.elems, v)
				} else {
					if out.kind == termMap {
						return term{}, p.errorf("mixed set and map literal")
					}
					out.elems = append(out.elems, k)
				}
				if p.acceptPunct("}") {
					return out, nil
				}
				if err = p.expectPunct(","); err != nil {
					return term{}, err
				}
			}
		}
	}
	p.i-- // report the offending token
	if t.kind == tokEOF {
		p.i++
	}
	return term{}, p.errorf("expected a value, got %q", t.text)
}

func (p *parser) selectStmt() (*statement, error) {
	st := &statement{kind: stmtSelect}
	p.acceptKeyword("distinct") // accepted: results are the same for single-row partitions
	switch {
	case p.acceptPunct("*"):
	case p.isKeyword("count") && p.toks[p.i+1].kind == tokPunct && p.toks[p.i+1].text == "(":
		p.i += 2
		if !p.acceptPunct("*") {
			if _, err := p.ident(); err != nil {
				return nil, err
			}
		}
		if err := p.expectPunct(")"); err != nil {
			return nil, err
		}
		st.countAll = true
	default:
		for {
			name, err := p.ident()
			if err != nil {
				return nil, err
			}
			st.selectCols = append(st.selectCols, name)
			if !p.acceptPunct(",") {
				break
			}
		}
	}
	if err := p.expectKeyword("from"); err != nil {
		return nil, err
	}
	var err error
	if st.keyspace, st.table, err = p.qualifiedName(); err != nil {
		return nil, err
	}
	if p.acceptKeyword("where") {
		if st.where, err = p.relations(); err != nil {
			return nil, err
		}
	}
	if p.acceptKeyword("order") {
		// ORDER BY on a clustering column: accepted, rows come in clustering order.
		if err = p.expectKeyword("by"); err != nil {
			return nil, err
		}
		for {
			if _, err = p.ident(); err != nil {
				return nil, err
			}
			if !p.acceptKeyword("asc") {
				p.acceptKeyword("desc")
			}
			if !p.acceptPunct(",") {
				break
			}
		}
	}
	if p.acceptKeyword("limit") {
		l, err := p.term(0)
		if err != nil {
			return nil, err
		}
		st.limit = &l
	}
	if p.acceptKeyword("allow") {
		if err = p.expectKeyword("filtering"); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func (p *parser) relations() ([]relation, error) {
	var rels []relation
	for {
		col, err := p.ident()
		if err != nil {
			return nil, err
		}
		r := relation{col: col}
		switch {
		case p.acceptKeyword("in"):
			r.op = "IN"
			if p.peek().kind == tokMarker {
				t, _ := p.term(0)
				r.terms = []term{t}
				r.inAll = true
			} else {
				if err = p.expectPunct("("); err != nil {
					return nil, err
				}
				if !p.acceptPunct(")") {
					for {
						t, err := p.term(0)
						if err != nil {
							return nil, err
						}
						r.terms = append(r.terms, t)
						if p.acceptPunct(")") {
							break
						}
						if err = p.expectPunct(","); err != nil {
							return nil, err
						}
					}
				}
			}
		default:
			t := p.peek()
			if t.kind != tokPunct || (t.text != "=" && t.text != "<" && t.text != "<=" && t.text != ">" && t.text != ">=") {
				return nil, p.errorf("expected a comparison, got %q", t.text)
			}
			p.i++
			r.op = t.text
			v, err := p.term(0)
			if err != nil {
				return nil, err
			}
			r.terms = []term{v}
		}
		rels = append(rels, r)
		if !p.acceptKeyword("and") {
			return rels, nil
		}
	}
}

// using parses USING TTL x [AND TIMESTAMP y] (either order).
func (p *parser) using(st *statement) error {
	for {
		switch {
		case p.acceptKeyword("ttl"):
			t, err := p.term(0)
			if err != nil {
				return err
			}
			st.ttl = &t
		case p.acceptKeyword("timestamp"):
			t, err := p.term(0)
			if err != nil {
				return err
			}
			st.timestamp = &t
		default:
			return p.errorf("expected TTL or TIMESTAMP, got %q", p.peek().text)
		}
		if !p.acceptKeyword("and") {
			return nil
		}
	}
}

func (p *parser) insertStmt() (*statement, error) {
	st := &statement{kind: stmtInsert}
	if err := p.expectKeyword("into"); err != nil {
		return nil, err
	}
	var err error
	if st.keyspace, st.table, err = p.qualifiedName(); err != nil {
		return nil, err
	}
	if err = p.expectPunct("("); err != nil {
		return nil, err
	}
	if st.insertCols, err = p.identList(); err != nil {
		return nil, err
	}
	if err = p.expectKeyword("values"); err != nil {
		return nil, err
	}
	if err = p.expectPunct("("); err != nil {
		return nil, err
	}
	for {
		t, err := p.term(0)
		if err != nil {
			return nil, err
		}
		st.values = append(st.values, t)
		if p.acceptPunct(")") {
			break
		}
		if err = p.expectPunct(","); err != nil {
			return nil, err
		}
	}
	if len(st.values) != len(st.insertCols) {
		return nil, p.errorf("unmatched column names/values: %d columns, %d values", len(st.insertCols), len(st.values))
	}
	// Cassandra accepts IF NOT EXISTS before or after USING.
	for range 2 {
		if p.acceptKeyword("if") {
			if err = p.expectKeyword("not"); err != nil {
				return nil, err
			}
			if err = p.expectKeyword("exists"); err != nil {
				return nil, err
			}
			st.ifExists = true
		}
		if p.acceptKeyword("using") {
			if err = p.using(st); err != nil {
				return nil, err
			}
		}
	}
	return st, nil
}

// updateStmt parses UPDATE t [USING ...] SET c = v, ... WHERE ...; it is executed
// as an insert of the key columns from WHERE plus the SET columns.
func (p *parser) updateStmt() (*statement, error) {
	st := &statement{kind: stmtUpdate}
	var err error
	if st.keyspace, st.table, err = p.qualifiedName(); err != nil {
		return nil, err
	}
	if p.acceptKeyword("using") {
		if err = p.using(st); err != nil {
			return nil, err
		}
	}
	if err = p.expectKeyword("set"); err != nil {
		return nil, err
	}
	for {
		col, err := p.ident()
		if err != nil {
			return nil, err
		}
		if err = p.expectPunct("="); err != nil {
			return nil, err
		}
		v, err := p.term(0)
		if err != nil {
			return nil, err
		}
		st.insertCols = append(st.insertCols, col)
		st.values = append(st.values, v)
		if !p.acceptPunct(",") {
			break
		}
	}
	if err = p.expectKeyword("where"); err != nil {
		return nil, err
	}
	if st.where, err = p.relations(); err != nil {
		return nil, err
	}
	if err = p.ifClause(st); err != nil {
		return nil, err
	}
	return st, nil
}

func (p *parser) deleteStmt() (*statement, error) {
	st := &statement{kind: stmtDelete}
	if !p.isKeyword("from") {
		// DELETE c1, c2 FROM ...: cell tombstones.
		for {
			col, err := p.ident()
			if err != nil {
				return nil, err
			}
			st.deleteCols = append(st.deleteCols, col)
			if !p.acceptPunct(",") {
				break
			}
		}
	}
	if err := p.expectKeyword("from"); err != nil {
		return nil, err
	}
	var err error
	if st.keyspace, st.table, err = p.qualifiedName(); err != nil {
		return nil, err
	}
	if p.acceptKeyword("using") {
		if err = p.using(st); err != nil {
			return nil, err
		}
	}
	if err = p.expectKeyword("where"); err != nil {
		return nil, err
	}
	if st.where, err = p.relations(); err != nil {
		return nil, err
	}
	if err = p.ifClause(st); err != nil {
		return nil, err
	}
	return st, nil
}

// ifClause parses the IF of an UPDATE or DELETE: IF EXISTS, or IF
// c op v [AND c op v ...] (Cql.g updateConditions; IF NOT EXISTS is
// INSERT's only).
func (p *parser) ifClause(st *statement) error {
	if !p.acceptKeyword("if") {
		return nil
	}
	if p.acceptKeyword("exists") {
		st.ifExists = true
		return nil
	}
	for {
		col, err := p.ident()
		if err != nil {
			return err
		}
		if p.isKeyword("in") {
			return p.errorf("IN conditions are not supported by cqltest")
		}
		t := p.peek()
		if t.kind != tokPunct || (t.text != "=" && t.text != "!=" && t.text != "<" && t.text != "<=" && t.text != ">" && t.text != ">=") {
			return p.errorf("expected a comparison in an IF condition, got %q", t.text)
		}
		p.i++
		v, err := p.term(0)
		if err != nil {
			return err
		}
		st.conds = append(st.conds, condition{col: col, op: t.text, value: v})
		if !p.acceptKeyword("and") {
			return nil
		}
	}
}

// conditional reports a lightweight transaction: an INSERT ... IF NOT
// EXISTS, an UPDATE or DELETE ... IF EXISTS or IF conditions.
func (st *statement) conditional() bool {
	return (st.kind == stmtInsert || st.kind == stmtUpdate || st.kind == stmtDelete) && (st.ifExists || len(st.conds) > 0)
}

// scanQuoted reads the quoted text starting at src[i] (a ' string or a "
// identifier: the quote doubled stands for itself) and returns it with the
// index just past the closing quote.
func scanQuoted(src string, i int, what string) (string, int, error) {
	q := src[i]
	var b strings.Builder
	j := i + 1
	for {
		if j >= len(src) {
			return "", 0, syntaxErrorf("unterminated %s at %d", what, i)
		}
		if src[j] == q {
			if j+1 < len(src) && src[j+1] == q {
				b.WriteByte(q)
				j += 2
				continue
			}
			return b.String(), j + 1, nil
		}
		b.WriteByte(src[j])
		j++
	}
}
