package postgres

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/twinflow/twinflow/internal/store"
)

// markUnavailable wraps err with store.ErrUnavailable when it says that the database server
// could not be reached or dropped the connection, so that callers tell an outage, which a
// retry may cure, from a bad request. Other errors, and nil, are returned as they are.
func markUnavailable(err error) error {
	if err == nil || errors.Is(err, store.ErrUnavailable) || !unavailable(err) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}

// unavailable reports whether err is a failure to reach the database server or to keep the
// connection to it: a failed connect, a network error, a connection closed mid-way, a
// statement the driver never sent (pgconn.SafeToRetry), or the
// server refusing work as it starts up or shuts down (SQLSTATE class 08, 57P01–57P03).
func unavailable(err error) bool {
	var (
		connect *pgconn.ConnectError
		netErr  net.Error
		pgErr   *pgconn.PgError
	)
	switch {
	case errors.As(err, &connect), errors.As(err, &netErr):
		return true
	case errors.Is(err, pgconn.ErrConnClosed), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return true
	case errors.As(err, &pgErr):
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" || pgErr.Code == "57P03"
	}
	return pgconn.SafeToRetry(err)
}
