package register

import (
	"context"
	"sync"
)

// Memory is an in-process Store for in-process lockers: one mutex guards
// every register, so each call is atomic.
type Memory struct {
	fenced bool

	mu   sync.Mutex
	regs map[string]memReg
}

type memReg struct {
	value int64
	fence uint64
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-process store, fenced or plain.
func NewMemory(fenced bool) Store {
	return &Memory{fenced: fenced, regs: make(map[string]memReg)}
}

// Read returns key's value; a fenced store first checks and raises the fence.
func (m *Memory) Read(ctx context.Context, key string, token uint64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.regs[key]
	if m.fenced {
		if token < r.fence {
			return 0, StaleError("read", key, token, r.fence)
		}
		if token > r.fence {
			r.fence = token
			m.regs[key] = r
		}
	}
	return r.value, nil
}

// Write sets key's value; a fenced store first checks and raises the fence.
func (m *Memory) Write(ctx context.Context, key string, value int64, token uint64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.regs[key]
	if m.fenced {
		if token < r.fence {
			return StaleError("write", key, token, r.fence)
		}
		r.fence = token
	}
	r.value = value
	m.regs[key] = r
	return nil
}

// Final returns key's value without touching the fence.
func (m *Memory) Final(ctx context.Context, key string) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.regs[key].value, nil
}
