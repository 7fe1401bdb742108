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
	"unicode/utf8"
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
		if !utf8.ValidString(p) {
			return fmt.Errorf("the %s path %q is not UTF-8, which a service file cannot carry; move it", name, p)
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

// Unit returns the systemd unit. (Built with strings, not text/template,
// whose reflection would keep every method of every type in the binary.)
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
	var b strings.Builder
	line := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	scope, user := "--user", " --user"
	if o.System {
		scope, user = "--system", ""
	}
	line(`# Written by "oxios service install" %s.`, scope)
	line(`# Remove with "oxios service uninstall"; edit with "systemctl%s edit oxios".`, user)
	line("[Unit]")
	line("Description=oxios, an operating system for AI agents")
	line("Documentation=https://github.com/oxios/oxios")
	if o.System {
		line("After=network-online.target")
		line("Wants=network-online.target")
	}
	line("# Never give up: a daemon that cannot start is retried, with a delay.")
	line("StartLimitIntervalSec=0")
	line("")
	line("[Service]")
	line("Type=notify")
	line("NotifyAccess=main")
	line("ExecStart=%s", strings.Join(exec, " "))
	line("Environment=%s", envQuote("OXIOS_HOME", o.Home))
	line("# Variables the daemon needs, e.g. OPENAI_API_KEY=..., one per line (0600).")
	line("EnvironmentFile=-%s", strings.ReplaceAll(filepath.Join(o.Home, "secrets", "daemon.env"), "%", "%%"))
	line("ExecReload=/bin/kill -HUP $MAINPID")
	line("Restart=on-failure")
	if o.SystemdVersion >= 254 {
		line("RestartSec=1s")
		line("RestartSteps=6")
		line("RestartMaxDelaySec=60s")
	} else {
		line("# A growing delay (RestartSteps) needs systemd 254: a fixed one.")
		line("RestartSec=5s")
	}
	line("# The daemon stops its agents itself on SIGTERM; what is left after the")
	line("# timeout is killed with the rest of the group.")
	line("KillMode=mixed")
	line("TimeoutStopSec=%ds", stop)
	if o.System {
		line("User=%s", o.User)
		line("NoNewPrivileges=yes")
		line("ProtectSystem=strict")
		line("ReadWritePaths=%s", systemdQuote(o.Home, false))
		line("PrivateTmp=yes")
		line("ProtectControlGroups=yes")
		line("ProtectKernelModules=yes")
		line("ProtectKernelTunables=yes")
		line("RestrictSUIDSGID=yes")
		line("LockPersonality=yes")
	} else {
		line("NoNewPrivileges=yes")
	}
	line("")
	line("[Install]")
	if o.System {
		line("WantedBy=multi-user.target")
	} else {
		line("WantedBy=default.target")
	}
	return b.String(), nil
}

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
	x := xmlEscape
	log := x(filepath.Join(o.Home, "logs", "oxios.log"))
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<!-- Written by "oxios service install"; remove with "oxios service uninstall". -->
<plist version="1.0">
<dict>
	<key>Label</key>
	<string>` + x(Label) + `</string>
	<key>ProgramArguments</key>
	<array>
		<string>` + x(o.Binary) + `</string>
		<string>start</string>
		<string>--foreground</string>
		<string>--config</string>
		<string>` + x(o.Config) + `</string>
	</array>
	<key>EnvironmentVariables</key>
	<dict>
		<key>OXIOS_HOME</key>
		<string>` + x(o.Home) + `</string>
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
	<integer>` + fmt.Sprint(stop) + `</integer>
	<key>StandardOutPath</key>
	<string>` + log + `</string>
	<key>StandardErrorPath</key>
	<string>` + log + `</string>
`)
	if o.System {
		b.WriteString("\t<key>UserName</key>\n\t<string>" + x(o.User) + "</string>\n")
	}
	b.WriteString("</dict>\n</plist>\n")
	return b.String(), nil
}
