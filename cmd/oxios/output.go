package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/term"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printFields prints "name: value" rows aligned, indented under a heading.
func printFields(w io.Writer, rows [][2]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s:\t%s\n", r[0], r[1])
	}
	tw.Flush()
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// colors paints text only on a terminal and only when NO_COLOR is unset.
type colors struct{ on bool }

func newColors(w io.Writer) colors {
	_, noColor := os.LookupEnv("NO_COLOR")
	return colors{on: !noColor && isTerminal(w)}
}

func (c colors) paint(code, s string) string {
	if !c.on {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (c colors) green(s string) string  { return c.paint("32", s) }
func (c colors) yellow(s string) string { return c.paint("33", s) }
func (c colors) red(s string) string    { return c.paint("31", s) }

// spinner shows progress on a long wait, only when w is a terminal.
type spinner struct {
	w     io.Writer
	label string
	on    bool
	frame int
	drawn bool
}

func newSpinner(w io.Writer, label string) *spinner {
	return &spinner{w: w, label: label, on: isTerminal(w)}
}

var frames = []string{"|", "/", "-", "\\"}

func (s *spinner) tick(elapsed time.Duration) {
	if !s.on {
		return
	}
	s.frame++
	fmt.Fprintf(s.w, "\r%s %s… %.1fs", frames[s.frame%len(frames)], s.label, elapsed.Seconds())
	s.drawn = true
}

func (s *spinner) done() {
	if s.drawn {
		fmt.Fprint(s.w, "\r"+strings.Repeat(" ", len(s.label)+16)+"\r")
	}
}
