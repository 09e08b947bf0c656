package state

// All keys of one migration share the hash tag {name}, so every script touching them runs on
// one Redis Cluster slot. The prefix (default "migrationbot") keeps them apart from other users
// of the same Redis, such as the proxy's route:* keys, and lets tests use their own.

// DefaultPrefix is the key prefix used when none is configured.
const DefaultPrefix = "migrationbot"

type keys struct{ prefix string }

func (k keys) base(name string) string { return k.prefix + ":{" + name + "}:" }

// state is the hash holding the migration's Record.
func (k keys) state(name string) string { return k.base(name) + "state" }

// audit is the stream of audit entries, capped at auditCap.
func (k keys) audit(name string) string { return k.base(name) + "audit" }

// challenge is the hash of the pending decommission challenge (user, phrase, expires), with a TTL.
func (k keys) challenge(name string) string { return k.base(name) + "challenge" }

// delivery marks a Slack delivery (its trigger_id) as applied, for DeliveryTTL.
func (k keys) delivery(name, id string) string { return k.base(name) + "delivery:" + id }

// checks is the hash of the last check results, one JSON value per check id.
func (k keys) checks(name string) string { return k.base(name) + "checks" }

// report is the claim of one scheduled report occurrence (unix seconds).
func (k keys) report(name string, occurrence int64) string {
	return k.base(name) + "report:" + itoa(occurrence)
}
