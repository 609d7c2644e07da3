package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/ClickHouse/clickhouse-go/v2"
)

// Exception codes of ClickHouse that say "try again later": the server is
// overloaded, short of memory, or lost a connection of its own; retrying
// the same statement later can succeed. Every other code (syntax, unknown
// table or column, a value the server cannot store, wrong credentials) is
// the statement or the setup being wrong, and retrying repeats the failure.
var transientCodes = map[int32]string{
	3:   "UNEXPECTED_END_OF_FILE",
	159: "TIMEOUT_EXCEEDED",
	164: "READONLY", // a replica that lost ZooKeeper turns read-only until it is back
	202: "TOO_MANY_SIMULTANEOUS_QUERIES",
	203: "NO_FREE_CONNECTION",
	209: "SOCKET_TIMEOUT",
	210: "NETWORK_ERROR",
	241: "MEMORY_LIMIT_EXCEEDED",
	242: "TABLE_IS_READ_ONLY",
	252: "TOO_MANY_PARTS",
	285: "TOO_FEW_LIVE_REPLICAS",
	319: "UNKNOWN_STATUS_OF_INSERT",
	425: "SYSTEM_ERROR",
	999: "KEEPER_EXCEPTION",
}

// Exception codes of wrong credentials: old servers (18.x, 19.x) tell
// which part was wrong, newer ones answer 516 to all.
var authCodes = map[int32]bool{
	192: true, // UNKNOWN_USER
	193: true, // WRONG_PASSWORD
	194: true, // REQUIRED_PASSWORD
	195: true, // IP_ADDRESS_NOT_ALLOWED
	516: true, // AUTHENTICATION_FAILED
}

// IsAuth reports whether err is ClickHouse refusing the credentials (native
// exception or HTTP answer).
func IsAuth(err error) bool {
	var ae *AuthError
	if errors.As(err, &ae) {
		return true
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		return authCodes[ex.Code]
	}
	var he *HTTPStatusError
	return errors.As(err, &he) && (he.Status == 401 || he.Status == 403)
}

// HTTPStatusError is an answer of the HTTP interface that is not 200 and
// carries no ClickHouse exception code (a proxy's, say).
type HTTPStatusError struct {
	Status int
	Body   string
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("HTTP %d: %s", e.Status, e.Body)
}

// Transient reports whether err is worth retrying: the server unreachable
// or overloaded (connection refused or reset, a timeout, a 5xx or 429
// without an exception code, or one of the exception codes above), as
// opposed to the statement or the setup being wrong (syntax, unknown
// table, wrong credentials, TLS verification). A cancelled context is not
// transient: the caller is stopping.
func Transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), IsAuth(err):
		return false
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, clickhouse.ErrAcquireConnTimeout):
		return true
	}
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		_, ok := transientCodes[ex.Code]
		return ok
	}
	var he *HTTPStatusError
	if errors.As(err, &he) {
		return he.Status >= 500 || he.Status == 429 || he.Status == 408
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial" // no route, host unreachable, DNS: the network, not the statement
}

// IsPermanent reports whether a write error is the server refusing the data
// itself, which retrying cannot fix (the sink sets such rows aside as dead
// letters), as opposed to the server being unreachable or overloaded.
// Refused credentials (a password rotated under a running sink) are not
// the data's fault: not permanent, so the rows wait for the fix; Open
// reports them at start.
func IsPermanent(err error) bool {
	if IsAuth(err) {
		return false
	}
	var ex *clickhouse.Exception
	if !errors.As(err, &ex) {
		return false
	}
	_, ok := transientCodes[ex.Code]
	return !ok
}
