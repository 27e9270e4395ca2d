// Package stores keeps the register workloads' registers on the networked
// backends: a GCS object per key ([GCS]) and a Redis hash per key
// ([Redis]), plain or fenced. They are apart from package register so
// that a run of an in-process locker, whose registers live in memory,
// links neither storage client.
package stores
