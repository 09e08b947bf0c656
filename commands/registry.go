package commands

// Role is what a caller may do.
type Role int

// Roles, from least to most.
const (
	Anyone Role = iota
	Operator
	Admin
)

func (r Role) String() string {
	switch r {
	case Operator:
		return "operator"
	case Admin:
		return "admin"
	}
	return "anyone"
}

// Subcommand describes one subcommand; help is generated from these.
type Subcommand struct {
	Name    string
	Usage   string // after "/migration "
	Example string
	Summary string
	Role    Role
	Slow    bool // may run checks and take longer than Slack's 3-second ack
}

// Registry lists every subcommand in the order help shows them.
var Registry = []*Subcommand{
	{Name: "help", Usage: "help [subcommand]", Example: "help rollback", Summary: "every subcommand with usage and an example", Role: Anyone},
	{Name: "status", Usage: "status [migration]", Example: "status example", Summary: "phase, since when and by whom, confidence period, checklist, last events", Role: Anyone},
	{Name: "check", Usage: "check [migration]", Example: "check example", Summary: "run every configured check now", Role: Anyone, Slow: true},
	{Name: "history", Usage: "history [migration] [n]", Example: "history example 20", Summary: "the last n audit events (default 10, at most 100)", Role: Anyone},
	{Name: "cutover", Usage: "cutover [migration] | cutover [migration] force <reason>", Example: "cutover example", Summary: "run the source-empty gate and move to cutover (force: admin only, skips a failing gate)", Role: Operator, Slow: true},
	{Name: "rollback", Usage: "rollback [migration] <reason>", Example: "rollback example IMAP logins failing on the new server", Summary: "from cutover back to proxied at once, with the rollback runbook", Role: Operator},
	{Name: "decommission", Usage: "decommission [migration] | decommission [migration] confirm <phrase>", Example: "decommission example confirm decommission source.internal.example.org", Summary: "after the confidence period: get the phrase, then type it within 10 minutes; final", Role: Admin},
	{Name: "extend", Usage: "extend [migration] <days> <reason>", Example: "extend example 7 waiting for the quarterly mailing", Summary: "lengthen (or, negative, shorten) the confidence period", Role: Admin},
	{Name: "init", Usage: "init [migration] [phase] [since]", Example: "init example cutover 2026-12-01T09:00:00Z", Summary: "create the state of a configured migration, or restore it after it was lost (phase default proxied, since default now)", Role: Admin},
}

func lookup(name string) *Subcommand {
	for _, s := range Registry {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// Lookup returns the subcommand called name, or nil.
func Lookup(name string) *Subcommand { return lookup(name) }
