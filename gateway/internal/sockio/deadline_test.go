package sockio_test

import (
	"testing"
	"time"

	"github.com/basaltplatform/basalt/gateway/internal/sockio"
)

func TestDeadlineIsSetOnlyWhenTheOneInPlaceDoesNotServe(t *testing.T) {
	t.Parallel()
	base := time.Unix(1_800_000_000, 0)
	type step struct {
		want   time.Time
		slack  time.Duration
		set    bool
		result time.Time
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"a new connection has none, so none needs nothing", []step{
			{want: time.Time{}, set: false, result: time.Time{}},
		}},
		{"the first bound is set with its slack", []step{
			{want: base, slack: time.Second, set: true, result: base.Add(time.Second)},
		}},
		{"later bounds within the slack keep it", []step{
			{want: base, slack: time.Second, set: true, result: base.Add(time.Second)},
			{want: base.Add(300 * time.Millisecond), slack: time.Second, set: false, result: base.Add(time.Second)},
			{want: base.Add(time.Second), slack: time.Second, set: false, result: base.Add(time.Second)},
		}},
		{"a bound past the deadline in place sets a new one", []step{
			{want: base, slack: time.Second, set: true, result: base.Add(time.Second)},
			{want: base.Add(time.Second + time.Nanosecond), slack: time.Second, set: true, result: base.Add(2*time.Second + time.Nanosecond)},
		}},
		{"a bound earlier than the deadline in place by more than the slack sets it", []step{
			{want: base.Add(10 * time.Second), slack: time.Second, set: true, result: base.Add(11 * time.Second)},
			{want: base.Add(5 * time.Second), slack: time.Second, set: true, result: base.Add(6 * time.Second)},
		}},
		{"no slack asks for the bound exactly", []step{
			{want: base, slack: time.Second, set: true, result: base.Add(time.Second)},
			{want: base.Add(500 * time.Millisecond), slack: 0, set: true, result: base.Add(500 * time.Millisecond)},
			{want: base.Add(500 * time.Millisecond), slack: 0, set: false, result: base.Add(500 * time.Millisecond)},
		}},
		{"no bound clears a deadline, once", []step{
			{want: base, slack: time.Second, set: true, result: base.Add(time.Second)},
			{want: time.Time{}, set: true, result: time.Time{}},
			{want: time.Time{}, set: false, result: time.Time{}},
			{want: base, slack: time.Second, set: true, result: base.Add(time.Second)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var d sockio.Deadline
			for i, s := range tt.steps {
				got, set := d.Need(s.want, s.slack)
				if set != s.set || !got.Equal(s.result) {
					t.Fatalf("step %d: Need(%v, %v) = %v, %t; want %v, %t", i, s.want, s.slack, got, set, s.result, s.set)
				}
			}
		})
	}
}
