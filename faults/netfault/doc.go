// Package netfault is the seam between the fault schedule and a network
// fault plane: the per-client faults a run can put on the path between a
// client's locker and its backend ([Faults]), the optional reshaping of
// bytes on the wire ([Shaper]), and several backends at once
// ([BackendGroup]). It holds no implementation, so a harness that runs an
// in-process locker never links one. The toxiproxy plane, one proxy per
// client on 127.0.0.1, is package proxies.
package netfault
