// Package service writes the files that make oxios a service of the
// system's service manager: a systemd unit (Linux) or a launchd property
// list (macOS). The daemon runs in the foreground under them, telling
// systemd when it is ready (Type=notify).
package service

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"path/filepath"
	"strings"
	"text/template"
)

// Options describe the service to write.
type Options struct {
	// Binary is the absolute path of the oxios executable.
	Binary string
	// Home is $OXIOS_HOME; Config the config file (absolute).
	Home   string
	Config string
	// System makes a system-wide service run as User; otherwise it is the
	// user's own service.
	System bool
	User   string
	// SystemdVersion decides which restart settings the unit may use
	// (RestartSteps and RestartMaxDelaySec need 254); 0 is unknown.
	SystemdVersion int
	// StopTimeout is how long the manager waits for a graceful stop.
	StopTimeoutSec int
}

// Label is the launchd label and the systemd unit's name.
const (
	Label    = "io.oxios.daemon"
	UnitName = "oxios.service"
)

func (o Options) check() error {
	for name, p := range map[string]string{"binary": o.Binary, "home": o.Home, "config": o.Config} {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("the %s path must be absolute (got %q)", name, p)
		}
		if strings.ContainsAny(p, "\n\r\x00") {
			return fmt.Errorf("the %s path %q contains a line break or NUL, which a service file cannot express; move it", name, p)
		}
	}
	if o.System && o.User == "" {
		return fmt.Errorf("a system service needs the user it runs as (--run-as)")
	}
	if strings.ContainsAny(o.User, " \t\n\"'\\%$") {
		return fmt.Errorf("user name %q cannot be used in a unit", o.User)
	}
	return nil
}

// systemdQuote makes one word of a unit setting: specifiers (%) are
// escaped, and so are variables ($) in a command line (exec), and a word
// with spaces, quotes or backslashes is double-quoted with C-style escapes,
// as systemd unquotes it.
func systemdQuote(s string, exec bool) string {
	s = strings.ReplaceAll(s, "%", "%%")
	if exec {
		s = strings.ReplaceAll(s, "$", "$$")
	}
	if !strings.ContainsAny(s, " \t\"'\\;") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + r.Replace(s) + `"`
}

// envQuote makes an Environment= assignment, quoted whole.
func envQuote(k, v string) string {
	v = strings.ReplaceAll(v, "%", "%%")
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`)
	return `"` + k + "=" + r.Replace(v) + `"`
}

var unitTmpl = template.Must(template.New("unit").Parse(`# Written by "oxios service install"{{if .System}} --system{{else}} --user{{end}}.
# Remove with "oxios service uninstall"; edit with "systemctl{{if not .System}} --user{{end}} edit oxios".
[Unit]
Description=oxios, an operating system for AI agents
Documentation=https://github.com/oxios/oxios
{{- if .System}}
After=network-online.target
Wants=network-online.target
{{- end}}
StartLimitIntervalSec=300
StartLimitBurst=10

[Service]
Type=notify
NotifyAccess=main
ExecStart={{.Exec}}
Environment={{.Env}}
Restart=on-failure
RestartSec=1s
{{- if .Steps}}
RestartSteps=6
RestartMaxDelaySec=60s
{{- end}}
# The daemon stops its agents itself on SIGTERM; what is left after the
# timeout is killed with the rest of the group.
KillMode=mixed
TimeoutStopSec={{.StopTimeout}}s
{{- if .System}}
User={{.User}}
NoNewPrivileges=yes
ProtectSystem=strict
ReadWritePaths={{.Home}}
PrivateTmp=yes
ProtectControlGroups=yes
ProtectKernelModules=yes
ProtectKernelTunables=yes
RestrictSUIDSGID=yes
LockPersonality=yes
{{- else}}
NoNewPrivileges=yes
{{- end}}

[Install]
WantedBy={{if .System}}multi-user.target{{else}}default.target{{end}}
`))

// Unit returns the systemd unit.
func Unit(o Options) (string, error) {
	if err := o.check(); err != nil {
		return "", err
	}
	exec := []string{o.Binary, "start", "--foreground", "--config", o.Config}
	for i, w := range exec {
		exec[i] = systemdQuote(w, true)
	}
	stop := o.StopTimeoutSec
	if stop <= 0 {
		stop = 30
	}
	var b bytes.Buffer
	err := unitTmpl.Execute(&b, map[string]any{
		"System": o.System, "User": o.User, "Exec": strings.Join(exec, " "),
		"Env": envQuote("OXIOS_HOME", o.Home), "Home": systemdQuote(o.Home, false),
		"Steps": o.SystemdVersion >= 254, "StopTimeout": stop,
	})
	return b.String(), err
}

var plistTmpl = template.Must(template.New("plist").Funcs(template.FuncMap{"x": xmlEscape}).Parse(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by "oxios service install"; remove with "oxios service uninstall". -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>{{x .Label}}</string>
	<key>ProgramArguments</key>
	<array>
		<string>{{x .Binary}}</string>
		<string>start</string>
		<string>--foreground</string>
		<string>--config</string>
		<string>{{x .Config}}</string>
	</array>
	<key>EnvironmentVariables</key>
	<dict>
		<key>OXIOS_HOME</key>
		<string>{{x .Home}}</string>
	</dict>
	<key>RunAtLoad</key>
	<true/>
	<key>KeepAlive</key>
	<dict>
		<key>SuccessfulExit</key>
		<false/>
	</dict>
	<key>ThrottleInterval</key>
	<integer>5</integer>
	<key>ExitTimeOut</key>
	<integer>{{.StopTimeout}}</integer>
	<key>StandardOutPath</key>
	<string>{{x .Log}}</string>
	<key>StandardErrorPath</key>
	<string>{{x .Log}}</string>
{{- if .System}}
	<key>UserName</key>
	<string>{{x .User}}</string>
{{- end}}
</dict>
</plist>
`))

func xmlEscape(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// Plist returns the launchd property list. Its output goes to the daemon
// log, the file `oxios logs` reads.
func Plist(o Options) (string, error) {
	if err := o.check(); err != nil {
		return "", err
	}
	stop := o.StopTimeoutSec
	if stop <= 0 {
		stop = 30
	}
	var b bytes.Buffer
	err := plistTmpl.Execute(&b, map[string]any{
		"Label": Label, "Binary": o.Binary, "Config": o.Config, "Home": o.Home, "System": o.System, "User": o.User,
		"Log": filepath.Join(o.Home, "logs", "oxios.log"), "StopTimeout": stop,
	})
	return b.String(), err
}
