package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvPrefix prefixes the environment variables that override the file:
// LONGHAUL_ADMIN_ADDRESS, LONGHAUL_ADMIN_DEBUGADDRESS, LONGHAUL_LOG_LEVEL,
// LONGHAUL_LOG_FORMAT.
const EnvPrefix = "LONGHAUL"

// overrides are the keys that flags and the environment can set, with the
// flag that sets each.
var overrides = []struct{ key, flag, usage string }{
	{"admin.address", "admin-address", "admin server host:port (overrides admin.address)"},
	{"admin.debugAddress", "admin-debug-address", `debug server host:port, "" for none (overrides admin.debugAddress)`},
	{"log.level", "log-level", "log level: debug, info, warn or error (overrides log.level)"},
	{"log.format", "log-format", "log format: json or console (overrides log.format)"},
	{"gateway.class", "gateway-class", `serve the Gateways of this GatewayClass, "" for none (overrides gateway.class)`},
}

// BindFlags registers on fs the flags that override the file:
// --admin-address, --admin-debug-address, --log-level and --log-format. A
// flag counts only when it is given on the command line; it beats the
// environment (LONGHAUL_ADMIN_ADDRESS, LONGHAUL_ADMIN_DEBUGADDRESS,
// LONGHAUL_LOG_LEVEL, LONGHAUL_LOG_FORMAT), which beats the file.
func BindFlags(fs *pflag.FlagSet) {
	d := Default()
	defaults := map[string]string{
		"admin.address":      d.Admin.Address,
		"admin.debugAddress": d.Admin.DebugAddress,
		"log.level":          d.Log.Level,
		"log.format":         d.Log.Format,
		"gateway.class":      d.Gateway.Class,
	}
	for _, o := range overrides {
		if fs.Lookup(o.flag) == nil {
			fs.String(o.flag, defaults[o.key], o.usage)
		}
	}
}

// Load reads the YAML file at path, applies the environment and the flags of
// flags (nil for none; see BindFlags) over it, fills in defaults and
// validates the result. Every problem found is reported in one error
// wrapping a *ValidationError.
func Load(path string, flags *pflag.FlagSet) (*Config, error) {
	if path == "" {
		return nil, errors.New("config: no file given")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return load(path, data, flags, true)
}

// Parse reads a configuration from YAML, fills in defaults and validates it,
// as Load does but without the environment or flags.
func Parse(yaml []byte) (*Config, error) {
	return load("", yaml, nil, false)
}

// load turns data into a valid Config; name (the file's path, or "") only
// labels errors.
func load(name string, data []byte, flags *pflag.FlagSet, env bool) (*Config, error) {
	what := "config"
	if name != "" {
		what = "config " + name
	}
	v := viper.New()
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, fmt.Errorf("%s: parse YAML: %w", what, err)
	}
	if env {
		v.SetEnvPrefix(EnvPrefix)
		v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
		v.AutomaticEnv()
		for _, o := range overrides {
			if err := v.BindEnv(o.key); err != nil {
				return nil, fmt.Errorf("%s: bind environment for %s: %w", what, o.key, err)
			}
		}
	}
	if flags != nil {
		for _, o := range overrides {
			if f := flags.Lookup(o.flag); f != nil && f.Changed {
				v.Set(o.key, f.Value.String())
			}
		}
	}
	raw := v.AllSettings()

	c := Default()
	var d decoder
	d.decode("", raw, c)
	c.applyListenerDefaults(raw)
	problems := d.problems
	if err := c.Validate(); err != nil {
		var ve *ValidationError
		if !errors.As(err, &ve) {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		// A field that could not be decoded kept its default or zero value;
		// do not report that value's problems on top of the decoding one.
		for _, p := range ve.Problems {
			if !d.failed(p.Path) {
				problems = append(problems, p)
			}
		}
	}
	if len(problems) > 0 {
		sortProblems(problems)
		return nil, wrapProblems(what, &ValidationError{Problems: problems})
	}
	return c, nil
}

// applyListenerDefaults sets what depends on other fields: a listener whose
// policy is not maglev has bounded loads off unless it sets boundedLoad,
// and one whose policy is least-connections rebalances (factor
// DefaultRebalanceFactor) unless it sets drain.rebalance.factor.
func (c *Config) applyListenerDefaults(raw map[string]any) {
	ls, _ := lookup(raw, "listeners").([]any)
	for i := range c.Listeners {
		var lraw any
		if i < len(ls) {
			lraw = ls[i]
		}
		l := &c.Listeners[i]
		policyDefaults(&l.Balance, &l.Drain, lraw)
		bs, _ := lookup(lraw, "backends").([]any)
		for j := range l.Backends {
			var braw any
			if j < len(bs) {
				braw = bs[j]
			}
			policyDefaults(&l.Backends[j].Balance, &l.Backends[j].Drain, lraw, braw)
		}
	}
}

// policyDefaults applies the defaults that depend on the policy: no
// bounded loads but for maglev, rebalancing on for least-connections,
// unless one of raws (the listener's, then a backend's) gives the key.
func policyDefaults(b *Balance, d *Drain, raws ...any) {
	given := func(keys ...string) bool {
		for _, r := range raws {
			if lookup(r, keys...) != nil {
				return true
			}
		}
		return false
	}
	if b.Policy != "maglev" && !given("balance", "boundedLoad") {
		b.BoundedLoad = 0
	}
	if b.Policy == "least-connections" && !given("drain", "rebalance", "factor") {
		d.Rebalance.Factor = DefaultRebalanceFactor
	}
}

// lookup follows keys (matched case-insensitively) through nested maps and
// returns the value found, or nil.
func lookup(raw any, keys ...string) any {
	for _, k := range keys {
		m, ok := raw.(map[string]any)
		if !ok {
			return nil
		}
		raw = nil
		for mk, mv := range m {
			if strings.EqualFold(mk, k) {
				raw = mv
				break
			}
		}
	}
	return raw
}

// wrapProblems labels a ValidationError with what was read, keeping it
// reachable with errors.As.
func wrapProblems(what string, ve *ValidationError) error {
	if len(ve.Problems) == 1 {
		return fmt.Errorf("%s: %w", what, ve)
	}
	return fmt.Errorf("%s: %d problems:\n%w", what, len(ve.Problems), ve)
}
