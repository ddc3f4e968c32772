package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/choreo-dev/choreo/events/catalog"
)

// traceSeqKey names a row by where its message is stored, the one link a
// dead letter keeps to the message it holds.
func traceSeqKey(stream, seq string) string {
	if stream == "" || seq == "" {
		return ""
	}
	return "seq:" + stream + ":" + seq
}

// traceNode is a row of the causal tree.
type traceNode struct {
	row      traceRow
	children []*traceNode
}

// traceTree arranges rows (sorted by time) as a forest: each row under the
// row its cause names, children in time order. A row whose cause is not
// among the rows — a command, an HTTP placement, an event whose cause the
// stream limits dropped — is a root.
func traceTree(rows []traceRow) []*traceNode {
	nodes := make([]*traceNode, len(rows))
	byKey := map[string]*traceNode{}
	for i, r := range rows {
		n := &traceNode{row: r}
		nodes[i] = n
		byKey[traceSeqKey(r.Stream, fmt.Sprint(r.Sequence))] = n
		if r.key == "" {
			continue
		}
		// A pending deadline's schedule carries the same id as the
		// deadline it fires: what the deadline caused hangs under the
		// deadline itself.
		if prev, ok := byKey[r.key]; !ok || strings.HasPrefix(prev.row.Subject, catalog.SchedulePrefix+".") {
			byKey[r.key] = n
		}
	}
	var roots []*traceNode
	for _, n := range nodes {
		parent := byKey[n.row.cause]
		if n.row.cause == "" || parent == nil || parent == n || traceIsAncestor(n, parent) {
			roots = append(roots, n)
			continue
		}
		parent.children = append(parent.children, n)
	}
	return roots
}

// traceIsAncestor reports whether n is p or above it: ids that collide
// must not make a cycle, which would drop rows from the tree.
func traceIsAncestor(n, p *traceNode) bool {
	if n == p {
		return true
	}
	for _, c := range n.children {
		if traceIsAncestor(c, p) {
			return true
		}
	}
	return false
}

// traceTreeRow is the --json --tree shape of an event line.
type traceTreeRow struct {
	traceRow
	Depth int `json:"depth"`
}

var traceTreeHeader = []string{"TIME", "AFTER", "STREAM:SEQ", "CAUSAL TREE"}

// tree prints rows as a causal tree: TIME, AFTER (the time since its
// cause, "-" for a root), STREAM:SEQ, then the subject — without the
// order id every row shares — indented under its cause, and the summary.
func (p *tracePrinter) tree(rows []traceRow) error {
	roots := traceTree(rows)
	type line struct {
		node   *traceNode
		depth  int
		prefix string
		after  string
		since  time.Duration
	}
	var lines []line
	var walk func(n *traceNode, depth int, indent string, last bool, cause *traceRow)
	walk = func(n *traceNode, depth int, indent string, last bool, cause *traceRow) {
		prefix, childIndent := "", ""
		if depth > 0 {
			prefix, childIndent = indent+"├─ ", indent+"│  "
			if last {
				prefix, childIndent = indent+"└─ ", indent+"   "
			}
		}
		after, since := "-", time.Duration(0)
		if cause != nil {
			since = n.row.Time.Sub(cause.Time)
			after = formatGap(since)
		}
		lines = append(lines, line{node: n, depth: depth, prefix: prefix, after: after, since: since})
		for i, c := range n.children {
			walk(c, depth+1, childIndent, i == len(n.children)-1, &n.row)
		}
	}
	for _, r := range roots {
		walk(r, 0, "", true, nil)
	}
	p.count += len(rows)
	if p.json {
		out := make([]traceTreeRow, len(lines))
		for i, l := range lines {
			r := l.node.row
			// In tree order the gap that means something is the one to
			// the cause: 0 for a root.
			r.GapMS = l.since.Milliseconds()
			out[i] = traceTreeRow{traceRow: r, Depth: l.depth}
		}
		return writeJSONLines(p.w, out)
	}
	t := newTable(p.w, traceTreeHeader...)
	for _, l := range lines {
		r := l.node.row
		what := strings.TrimSuffix(strings.TrimSuffix(r.Subject, p.orderID), ".")
		if r.Summary != "" {
			what += ": " + r.Summary
		}
		if r.Type == "dead letter" || r.Type == "invalid" {
			what = colour(p.colour, "31", what)
		}
		t.row(r.Time.Format(traceTimeFormat), l.after, fmt.Sprintf("%s:%d", r.Stream, r.Sequence), l.prefix+what)
	}
	return t.flush()
}
