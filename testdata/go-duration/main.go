// Prints, for each line of stdin, what Go's time.ParseDuration makes of it: the
// duration in nanoseconds, or "error". imageshim's Go-duration parser is compared
// with it (src/credentials/duration.rs, go_parses_every_input_as_we_do).
package main

import (
	"bufio"
	"fmt"
	"os"
	"time"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		d, err := time.ParseDuration(in.Text())
		if err != nil {
			fmt.Fprintln(out, "error")
		} else {
			fmt.Fprintln(out, int64(d))
		}
	}
}
