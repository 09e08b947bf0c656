package main

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig: whatever the file holds, loadConfig does not panic and returns either a
// config or an error, never both and never neither.
func FuzzLoadConfig(f *testing.F) {
	if b, err := os.ReadFile("../../examples/migrationbot.toml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(flowConfig("fuzz")))
	f.Add([]byte(""))
	f.Add([]byte("[roles]\nadmins = [\"U0ADMIN\"]\n[[migration]]\nname = \"a\"\nchannel = \"C0A\"\nsource_host = \"s\"\nreport_schedule = \"CRON_TZ=Nowhere/Zone 0 9 * * *\"\n"))
	f.Add([]byte("[roles]\nadmins = [\"U0ADMIN\"]\n[[migration]]\nname = \"a\"\nchannel = \"C0A\"\nsource_host = \"s\"\n[migration.checks]\nports = [25, \"10993/imaps\", 1.5, true, [1]]\ntimeout = \"-1s\"\nconfidence_days = -3\n"))
	f.Add([]byte("key_prefix = \"{x}\"\nmigration = 3\nroles = \"x\""))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "fuzz.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(path)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("loadConfig returned config %v and error %v: want exactly one", cfg != nil, err)
		}
	})
}
