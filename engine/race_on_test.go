//go:build race

package engine_test

// raceDetector: the race detector slows the SQLite store about twentyfold; tests that measure
// at scale run a smaller sample under it.
const raceDetector = true
