package sockio

import "time"

// Deadline remembers the deadline last set on a connection, so that a caller can leave one in
// place that is close enough to the one it wants. Setting a deadline re-arms a runtime timer
// under the connection's lock; a server or a client making thousands of calls a second on a
// few connections would otherwise pay for that on every call, when the bound it needs is
// coarse (an idle limit of minutes, a call timeout of seconds). The zero value knows no
// deadline, as a new connection has none.
type Deadline struct {
	at time.Time
}

// Need returns the deadline to set on the connection for a bound of want, and false when the
// one in place already serves: a deadline no earlier than want and at most slack later. A new
// deadline is want plus slack, so that the calls of the next slack of time keep it. A zero want
// (no deadline) needs a zero deadline; a zero slack asks for want exactly.
func (d *Deadline) Need(want time.Time, slack time.Duration) (time.Time, bool) {
	if want.IsZero() {
		if d.at.IsZero() {
			return time.Time{}, false
		}
		d.at = time.Time{}
		return d.at, true
	}
	if !d.at.IsZero() && !d.at.Before(want) && !d.at.After(want.Add(slack)) {
		return d.at, false
	}
	d.at = want.Add(slack)
	return d.at, true
}
