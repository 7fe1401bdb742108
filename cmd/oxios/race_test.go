//go:build race

package main

// raceBuild makes the end-to-end tests build the daemon with the race
// detector when they themselves run under it.
const raceBuild = true
