package main

import (
	"errors"
	"io"
)

func runBenchmark(args []string, stdout, stderr io.Writer) error { return errors.New("run: not built yet") }
func planCommand(args []string, stdout io.Writer) error            { return errors.New("plan: not built yet") }
func checkCommand(args []string, stdout io.Writer) error           { return errors.New("check: not built yet") }
func nvmlInfo(w io.Writer, ordinal int) error                      { return nil }

type interrupted struct{ error }
