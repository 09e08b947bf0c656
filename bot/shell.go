package bot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strings"
	"sync"

	"github.com/migrationbot/migrationbot/commands"
)

// Shell reads commands one per line and prints the answers as plain text.
type Shell struct {
	Handler *commands.Handler
	User    string // Slack user ID the commands run as
	In      io.Reader
	Out     io.Writer
	Prompt  bool // show a prompt (only on a terminal)
	Log     *slog.Logger

	mu sync.Mutex // serialises writes to Out (reports may print between commands)
}

const prompt = "migration> "

// Run answers commands until the input ends (nil) or ctx is done.
func (s *Shell) Run(ctx context.Context) error {
	// Changes whose outcome was unknown are watched while the shell runs, and printed if they
	// turn out applied.
	ctx, stopWatching := context.WithCancel(ctx)
	var watchers sync.WaitGroup
	defer watchers.Wait()
	defer stopWatching()
	lines := make(chan string)
	scanErr := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(s.In)
		sc.Buffer(make([]byte, 0, 4096), 64*1024)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
		scanErr <- sc.Err()
		close(lines)
	}()
	for {
		s.showPrompt()
		var line string
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case line, ok = <-lines:
		}
		if !ok {
			if err := <-scanErr; err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read commands: %w", err)
			}
			if s.Prompt {
				s.Print("")
			}
			return nil
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if line == "exit" || line == "quit" {
			return nil
		}
		resp, err := s.Handler.Handle(ctx, commands.Request{UserID: s.User, Text: line})
		if err != nil && s.Log != nil {
			s.Log.Warn("command failed", "text", line, "user", s.User, "err", err)
		}
		s.Print(PlainText(resp.Text))
		if resp.Pending != "" {
			watchers.Go(func() {
				wctx, cancel := context.WithTimeout(ctx, PendingWindow)
				defer cancel()
				if late, applied := watchPending(wctx, s.Handler, resp, pendingEvery); applied {
					s.Print(PlainText(late.Text))
				}
			})
		}
	}
}

func (s *Shell) showPrompt() {
	if !s.Prompt {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fmt.Fprint(s.Out, prompt)
}

// Print writes a block of text followed by a blank line; safe for concurrent use.
func (s *Shell) Print(text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if text == "" {
		fmt.Fprintln(s.Out)
		return
	}
	fmt.Fprintf(s.Out, "%s\n\n", text)
}

var (
	mentionRE = regexp.MustCompile(`<[@!](?:subteam\^)?([A-Z0-9]+)(?:\|[^>]*)?>`)
	channelRE = regexp.MustCompile(`<#([A-Z0-9]+)(?:\|[^>]*)?>`)
)

// PlainText turns Slack mentions (<@U123>, <!subteam^S123>, <#C123>) into @U123 and #C123 for
// a terminal.
func PlainText(s string) string {
	return channelRE.ReplaceAllString(mentionRE.ReplaceAllString(s, "@$1"), "#$1")
}
