// Package checks holds migrationbot's verification probes: the read-only
// checks that tell whether a Stalwart migration's runbook steps really
// happened. Each check looks at one real system (the proxy's mapping table and
// admin API, DNS, the public hostname's mail ports and certificates, an SMTP
// session to the new server, stalwart-cli, the source server) and returns a
// plain Result: pass, warn, fail or skip (not configured), a one-line detail
// and what it observed.
//
// What a check expects depends on the migration's phase: while "proxied" the
// proxy should run and the public hostname point at it; after "cutover" the
// hostname points at the new deployment, the proxy is stopped and the
// migration configuration removed; after "decommissioned" the source is gone.
//
// Runner.Run runs any set of checks concurrently, each under its own timeout,
// and never blocks past its context's deadline. The package imports nothing
// from the rest of the program.
package checks
