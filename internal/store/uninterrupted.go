package store

import (
	"context"
	"database/sql/driver"
	"fmt"
)

// uninterrupted connects the writer to SQLite so that no statement is
// interrupted when its caller's context ends. The driver interrupts a
// running statement on cancellation, and SQLite answers an interrupted
// write inside a transaction by rolling back the whole transaction: under
// group commit that took the other writes of the batch with it, already
// released from their savepoints. A caller that hangs up before its write
// starts is still refused (database/sql checks the context before it runs
// a statement), and the writer skips writes whose caller is gone; a write
// under way finishes, and its caller (who waits for the outcome) learns it
// happened.
type uninterrupted struct{ driver.Connector }

func (c uninterrupted) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	switch conn.(type) {
	case interface {
		driver.ConnBeginTx
		driver.ConnPrepareContext
		driver.ExecerContext
		driver.QueryerContext
		driver.Pinger
		driver.SessionResetter
		driver.Validator
	}:
		return uninterruptedConn{conn}, nil
	}
	conn.Close()
	return nil, fmt.Errorf("sqlite driver connection %T lacks an interface the writer needs", conn)
}

// uninterruptedConn passes the driver's optional interfaces through (a
// wrapper that only embeds driver.Conn hides them), each with a context
// that is never cancelled.
type uninterruptedConn struct{ driver.Conn }

func (c uninterruptedConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	return c.Conn.(driver.ConnBeginTx).BeginTx(context.WithoutCancel(ctx), opts)
}

func (c uninterruptedConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	st, err := c.Conn.(driver.ConnPrepareContext).PrepareContext(context.WithoutCancel(ctx), query)
	if err != nil {
		return nil, err
	}
	return uninterruptedStmt{st}, nil
}

func (c uninterruptedConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	return c.Conn.(driver.ExecerContext).ExecContext(context.WithoutCancel(ctx), query, args)
}

func (c uninterruptedConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	return c.Conn.(driver.QueryerContext).QueryContext(context.WithoutCancel(ctx), query, args)
}

func (c uninterruptedConn) Ping(ctx context.Context) error {
	return c.Conn.(driver.Pinger).Ping(ctx)
}

func (c uninterruptedConn) ResetSession(ctx context.Context) error {
	return c.Conn.(driver.SessionResetter).ResetSession(ctx)
}

func (c uninterruptedConn) IsValid() bool { return c.Conn.(driver.Validator).IsValid() }

type uninterruptedStmt struct{ driver.Stmt }

func (s uninterruptedStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	return s.Stmt.(driver.StmtExecContext).ExecContext(context.WithoutCancel(ctx), args)
}

func (s uninterruptedStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	return s.Stmt.(driver.StmtQueryContext).QueryContext(context.WithoutCancel(ctx), args)
}
