package commands

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// roleOf returns the caller's role: deny by default, admin wins over operator. unchecked lists
// the user groups whose members could not be looked up; log gives the logger for a failed lookup.
func (h *Handler) roleOf(ctx context.Context, log func() *slog.Logger, user string) (role Role, unchecked []string) {
	if user == "" {
		return Anyone, nil
	}
	isAdmin, ua := h.member(ctx, log, user, h.Admins)
	if isAdmin {
		return Admin, nil
	}
	isOperator, uo := h.member(ctx, log, user, h.Operators)
	if isOperator {
		return Operator, nil
	}
	return Anyone, append(ua, uo...)
}

func (h *Handler) member(ctx context.Context, log func() *slog.Logger, user string, ids []string) (bool, []string) {
	if slices.Contains(ids, user) {
		return true, nil
	}
	if h.Groups == nil {
		return false, nil
	}
	var unchecked []string
	for _, id := range ids {
		if !strings.HasPrefix(id, "S") {
			continue
		}
		members, err := h.Groups.GroupMembers(ctx, id)
		if err != nil {
			log().Warn("user group lookup failed", "group", id, "err", err)
			unchecked = append(unchecked, id)
			continue
		}
		if slices.Contains(members, user) {
			return true, nil
		}
	}
	return false, unchecked
}

// mention renders a user (U...) or user group (S...) for Slack; the shell shows it as @ID.
func mention(id string) string {
	if strings.HasPrefix(id, "S") {
		return "<!subteam^" + id + ">"
	}
	return "<@" + id + ">"
}

func mentions(ids []string) string {
	if len(ids) == 0 {
		return "nobody"
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = mention(id)
	}
	return strings.Join(out, ", ")
}

// who says who may run commands that need role r.
func (h *Handler) who(r Role) string {
	if r == Admin {
		return "admins: " + mentions(h.Admins)
	}
	return "operators: " + mentions(h.Operators) + "; admins: " + mentions(h.Admins)
}

func (h *Handler) denied(c *call, need Role) Response {
	text := fmt.Sprintf("%s needs the %s role, which you (%s) do not have; nothing changed.\nWho may: %s.",
		c.sub.Name, need, mention(c.req.UserID), h.who(need))
	if len(c.unchecked) > 0 {
		text += fmt.Sprintf("\nSlack did not answer when asked who is in %s: if you are, try again in a moment, or ask an admin.", mentions(c.unchecked))
	}
	return Response{Failed: true, Text: text}
}

func (h *Handler) help(c *call) Response {
	if len(c.args) > 0 {
		s := lookup(strings.ToLower(c.args[0]))
		if s == nil {
			return usageResponse(&UsageError{Msg: fmt.Sprintf("no help for %q: unknown subcommand", clip(c.args[0], 40))})
		}
		return Response{Text: fmt.Sprintf("/migration %s\n%s\nWho: %s\nExample: /migration %s", s.Usage, s.Summary, h.roleLabel(s.Role), s.Example)}
	}
	var b strings.Builder
	b.WriteString("/migration <subcommand> [migration] [args]; the migration may be left out when only one is configured or the channel is bound to one.\n")
	if len(h.Migrations) > 0 {
		fmt.Fprintf(&b, "Migrations: %s\n", strings.Join(h.names(), ", "))
	}
	fmt.Fprintf(&b, "You are %s (%s).\n", mention(c.req.UserID), roleWord(c.role))
	var mine, others []*Subcommand
	for _, s := range Registry {
		if c.role >= s.Role {
			mine = append(mine, s)
		} else {
			others = append(others, s)
		}
	}
	b.WriteString("You may run:\n")
	for _, s := range mine {
		fmt.Fprintf(&b, "  /migration %s: %s (e.g. /migration %s)\n", s.Usage, s.Summary, s.Example)
	}
	if len(others) > 0 {
		b.WriteString("Others may run:\n")
		for _, s := range others {
			fmt.Fprintf(&b, "  /migration %s: %s [%s]\n", s.Usage, s.Summary, h.roleLabel(s.Role))
		}
	}
	return Response{Text: strings.TrimRight(b.String(), "\n")}
}

func roleWord(r Role) string {
	switch r {
	case Admin:
		return "admin"
	case Operator:
		return "operator"
	}
	return "no role: read-only commands"
}

func (h *Handler) roleLabel(r Role) string {
	switch r {
	case Admin:
		return h.who(Admin)
	case Operator:
		return h.who(Operator)
	}
	return "anyone"
}
