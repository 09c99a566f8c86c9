// Package expr is twinflow's one expression language: the WHERE clause of queries, event
// route filters and ingestion mapping rules all parse and evaluate their conditions here.
//
// The lexer (Lex) keeps the line and column of every token; the hand-written
// recursive-descent Parser builds an immutable tree of Nodes and reports errors as
// *SyntaxError at the offending token. Languages that embed expressions drive the same Parser
// for their own clauses. Evaluation (Eval, Match) is over a caller-supplied Env that resolves
// paths, with a caller-supplied function table (Builtins plus the caller's own), so the
// package knows nothing of twins, events or telemetry.
//
// The grammar follows ADT's query language: keywords are not case sensitive, names and
// string values are; identifiers may start with '$' ($dtId, $metadata); [[escaped]] names
// allow reserved words and other characters; strings are single-quoted with backslash
// escapes (\' for a quote).
package expr
