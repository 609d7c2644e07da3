package tag

import "time"

// CorrectSkew returns the event time of a record sent by a client whose clock
// may be wrong, the way Segment does it: the client's own offset between the
// event and the send (sentAt − clientTime) is applied to the server's receive
// time. Without sentAt the client time is kept; without a client time the
// receive time is used.
func CorrectSkew(clientTime, sentAt, receivedAt time.Time) time.Time {
	switch {
	case clientTime.IsZero():
		return receivedAt
	case sentAt.IsZero() || receivedAt.IsZero():
		return clientTime
	default:
		return receivedAt.Add(clientTime.Sub(sentAt))
	}
}
