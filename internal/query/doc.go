// Package query is the ADT query language: SELECT, FROM DIGITALTWINS / RELATIONSHIPS, JOIN,
// MATCH and WHERE, answered from the in-memory graph index (package graph).
//
// Prepare lexes and parses a query with a hand-written recursive-descent parser (the WHERE
// clause and every path are package expr's grammar), checks it against ADT's limits and
// rules, and plans it; every refusal is an *Error whose message has ADT's form, "SQL query
// parse failed: SQL Parser Error, Line=<1-based>, Position=<0-based>, Message=... See samples
// in https://aka.ms/adtv2query for the correct syntax.". Run answers one page from a
// graph.Reader.
//
// # Planning
//
// A top-level AND conjunct that pins a twin collection's $dtId to strings (= or IN) anchors
// the query: only those twins are candidates, and JOIN and MATCH (which require such an
// anchor, on any of their twin collections) walk the graph from them along the index's
// outgoing and incoming relationship lists. For FROM RELATIONSHIPS, $sourceId or $targetId
// anchors the same way. Otherwise an IS_OF_MODEL conjunct on the only collection reads the
// index's per-model twin lists instead of every twin, and conjuncts comparing a top-level
// property with a number read the index's number columns before any document. What remains
// of WHERE is evaluated per candidate row. Plan describes the choice.
//
// # Semantics where ADT leaves a choice
//
//   - IS_OF_MODEL('<dtmi>') accepts twins whose model, or a model it extends, has the same
//     id with a version at least the requested one (a request without a version accepts
//     every version). With exact, the twin's model must be the requested DTMI itself.
//   - MATCH hop counts: none is one hop, *n exactly n, *a..b more than a and at most b, *..b
//     one to b. Multi-hop steps visit every twin once, at its shortest distance, so cycles
//     are followed once; a twin is returned when that distance is in range. The hops of a
//     pattern, counting each step's upper bound, may total 10.
//   - With one collection, paths may omit its alias; with several, every path starts with
//     an alias. SELECT * is refused when several collections are in scope; so are two
//     projections with the same result name (use AS).
//   - TOP(n) with no projection means SELECT TOP(n) *. TOP cannot be combined with COUNT().
//   - Rows come in index slot order (roughly creation order, with slots of deleted twins
//     reused), for JOIN and MATCH in anchor order, then relationship order. Paging resumes
//     after the last slot (or row) returned, so rows added or removed between pages are
//     seen or not, but no row is returned twice when nothing changes.
package query
