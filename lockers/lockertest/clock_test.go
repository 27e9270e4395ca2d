package lockertest

import (
	"context"
	"testing"
	"time"
)

func TestFakeClock(t *testing.T) {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	c := NewFakeClock(start)
	select {
	case got := <-c.After(0):
		if !got.Equal(start) {
			t.Errorf("After(0) delivered %v, want %v", got, start)
		}
	default:
		t.Fatal("After(0) did not fire at once")
	}

	late, early := c.After(2*time.Second), c.After(time.Second)
	if err := c.WaitForTimers(Bounded(t), 2); err != nil {
		t.Fatal(err)
	}
	c.Advance(time.Second - time.Nanosecond)
	select {
	case <-early:
		t.Fatal("a timer fired before its time")
	default:
	}
	c.Advance(time.Nanosecond)
	if got := <-early; !got.Equal(start.Add(time.Second)) {
		t.Errorf("early timer delivered %v", got)
	}
	if c.Pending() != 1 {
		t.Errorf("pending %d, want 1", c.Pending())
	}
	c.Advance(time.Hour)
	if got := <-late; !got.Equal(start.Add(2 * time.Second)) {
		t.Errorf("late timer delivered %v, want its due time", got)
	}
	if got := c.Now(); !got.Equal(start.Add(time.Hour + time.Second)) {
		t.Errorf("Now %v", got)
	}
}

func TestFakeClockWaitForTimersWakesOnNewTimer(t *testing.T) {
	c := NewFakeClock(time.Unix(0, 0))
	done := make(chan error, 1)
	go func() { done <- c.WaitForTimers(Bounded(t), 1) }()
	c.After(time.Minute)
	if err := Recv(t, done, "WaitForTimers return"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.WaitForTimers(ctx, 5); err == nil {
		t.Error("WaitForTimers returned nil with fewer timers and an ended context")
	}
}
