// SPDX-License-Identifier: LGPL-2.1-or-later

// varlink-interop drives a running tsmd with an independent Varlink implementation, Debian's
// Go varlink library (golang-github-varlink-go-dev), and prints the result of each check as
// TAP. It exits non-zero if any check failed.
//
// Usage: varlink-interop ADDRESS PROTO_DIR
//
//	ADDRESS    the service address, e.g. unix:/run/tsmd/io.tsmd
//	PROTO_DIR  the source tree's proto/ directory, holding the *.varlink files tsmd serves
//
// Every network operation runs under a context with a deadline, and the whole program under
// a global watchdog, so it can never hang.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/varlink/go/varlink"
	"github.com/varlink/go/varlink/idl"
)

const (
	// Deadline of one call or one awaited reply.
	callTimeout = 10 * time.Second
	// The whole run; a watchdog ends the program if it is exceeded.
	totalTimeout = 120 * time.Second
)

var (
	address  string
	protoDir string
	nChecks  int
	nFailed  int
	// Set by describeErr(): the error it described was a timeout. A check failing on a
	// timeout ends the run, as every later call would wait for its deadline too.
	timedOut bool
)

func check(ok bool, name string, format string, args ...interface{}) bool {
	nChecks++
	if ok {
		fmt.Printf("ok %d - %s\n", nChecks, name)
		return true
	}
	nFailed++
	fmt.Printf("not ok %d - %s\n", nChecks, name)
	diag(format, args...)
	if timedOut {
		fmt.Printf("1..%d\nBail out! tsmd did not answer within %v\n", nChecks, callTimeout)
		os.Exit(1)
	}
	return false
}

func pass(name string) { check(true, name, "") }

func fail(name string, format string, args ...interface{}) { check(false, name, format, args...) }

// A failure that is a known limitation of the Go library, not of tsmd: TAP "TODO".
func todo(name string, reason string, format string, args ...interface{}) {
	nChecks++
	fmt.Printf("not ok %d - %s # TODO %s\n", nChecks, name, reason)
	diag(format, args...)
}

func diag(format string, args ...interface{}) {
	if format == "" {
		return
	}
	for _, l := range strings.Split(fmt.Sprintf(format, args...), "\n") {
		fmt.Printf("# %s\n", l)
	}
}

func callCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), callTimeout)
}

func connect() (*varlink.Connection, error) {
	ctx, cancel := callCtx()
	defer cancel()
	return varlink.NewConnection(ctx, address)
}

// call is conn.Call under a deadline.
func call(c *varlink.Connection, method string, in interface{}, out interface{}) error {
	ctx, cancel := callCtx()
	defer cancel()
	return c.Call(ctx, method, in, out)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// describeErr names the Go type and content of an error, for diagnostics.
func describeErr(err error) string {
	timedOut = errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded)
	if err == nil {
		return "no error"
	}
	switch e := err.(type) {
	case *varlink.Error:
		p := "null"
		if raw, ok := e.Parameters.(*json.RawMessage); ok && raw != nil {
			p = string(*raw)
		}
		return fmt.Sprintf("*varlink.Error{Name: %q, Parameters: %s}", e.Name, p)
	default:
		// The library's typed errors (*varlink.InvalidParameter, ...) carry their parameters
		// as JSON-tagged fields.
		if b, jerr := json.Marshal(err); jerr == nil && string(b) != "{}" {
			return fmt.Sprintf("%T: %v %s", err, err, b)
		}
		return fmt.Sprintf("%T: %v", err, err)
	}
}

// ---------------------------------------------------------------------------------------

func checkGetInfo(c *varlink.Connection) []string {
	var vendor, product, version, url string
	var interfaces []string

	ctx, cancel := callCtx()
	defer cancel()
	err := c.GetInfo(ctx, &vendor, &product, &version, &url, &interfaces)
	if !check(err == nil, "GetInfo() succeeds", "error: %s", describeErr(err)) {
		return nil
	}
	check(vendor == "tsmd", "GetInfo() vendor is \"tsmd\"", "vendor: %q", vendor)
	check(product != "", "GetInfo() product is set", "product: %q", product)
	check(version != "", "GetInfo() version is set", "version: %q", version)
	check(url != "", "GetInfo() url is set", "url: %q", url)
	for _, want := range []string{"org.varlink.service", "io.tsmd", "io.tsmd.Service"} {
		check(contains(interfaces, want), fmt.Sprintf("GetInfo() interfaces include %s", want),
			"interfaces: %q", interfaces)
	}
	return interfaces
}

// Interface names with capitals ("io.tsmd.Service") are valid Varlink (systemd's interfaces
// are named like that), but the Go idl parser of golang-github-varlink-go 0.4.0 only accepts
// [a-z0-9-] in names; it also rejects an interface that declares no method (io.tsmd declares
// only errors), which the Varlink grammar allows. To still check the rest of the text with
// the Go parser, workaround() lowercases the name and adds a placeholder method.
var interfaceLine = regexp.MustCompile(`(?m)^interface[ \t]+(\S+)`)

func workaround(description string) (string, []string) {
	var what []string
	m := interfaceLine.FindStringSubmatchIndex(description)
	if m != nil {
		name := description[m[2]:m[3]]
		if lower := strings.ToLower(name); lower != name {
			description = description[:m[2]] + lower + description[m[3]:]
			what = append(what, "capitals in the interface name")
		}
	}
	if !regexp.MustCompile(`(?m)^method[ \t]`).MatchString(description) {
		description += "\nmethod GoIdlPlaceholder() -> ()\n"
		what = append(what, "an interface without methods")
	}
	return description, what
}

func checkIdlParse(name, description string) *idl.IDL {
	parsed, err := idl.New(description)
	if err == nil {
		check(parsed.Name == name, fmt.Sprintf("Go idl parser parses %s", name),
			"parsed interface name %q", parsed.Name)
		return parsed
	}

	fixed, what := workaround(description)
	if len(what) == 0 {
		fail(fmt.Sprintf("Go idl parser parses %s", name), "idl.New: %v\ndescription:\n%s", err, description)
		return nil
	}
	parsed, err2 := idl.New(fixed)
	if err2 != nil {
		fail(fmt.Sprintf("Go idl parser parses %s", name),
			"idl.New: %v\nand with the workaround for %s: %v\ndescription:\n%s",
			err, strings.Join(what, ", "), err2, description)
		return nil
	}
	todo(fmt.Sprintf("Go idl parser parses %s verbatim", name),
		"Go varlink 0.4.0 idl rejects "+strings.Join(what, " and ")+" (valid Varlink)",
		"idl.New: %v", err)
	check(parsed.Name == strings.ToLower(name),
		fmt.Sprintf("Go idl parser parses %s with a workaround for %s", name, strings.Join(what, ", ")),
		"parsed interface name %q", parsed.Name)
	return parsed
}

func memberNames(p *idl.IDL) (methods, errs, types []string) {
	for _, m := range p.Methods {
		methods = append(methods, m.Name)
	}
	for _, e := range p.Errors {
		errs = append(errs, e.Name)
	}
	for _, a := range p.Aliases {
		types = append(types, a.Name)
	}
	return
}

func checkDescriptions(c *varlink.Connection, interfaces []string) {
	// The exact text of io.tsmd.Service.
	path := filepath.Join(protoDir, "io.tsmd.Service.varlink")
	want, err := os.ReadFile(path)
	if err != nil {
		fail("read "+path, "%v", err)
	} else {
		ctx, cancel := callCtx()
		got, err := c.GetInterfaceDescription(ctx, "io.tsmd.Service")
		cancel()
		if check(err == nil, "GetInterfaceDescription(io.tsmd.Service) succeeds", "error: %s", describeErr(err)) {
			ok := got == string(want)
			diagText := ""
			if !ok {
				i := 0
				for i < len(got) && i < len(want) && got[i] == want[i] {
					i++
				}
				diagText = fmt.Sprintf("differs from %s at byte %d (got %d bytes, file has %d)\n"+
					"got:  %q\nwant: %q", path, i, len(got), len(want),
					tail(got, i), tail(string(want), i))
			}
			check(ok, "GetInterfaceDescription(io.tsmd.Service) is the text of proto/io.tsmd.Service.varlink", "%s", diagText)
		}
	}

	// Every interface tsmd lists is described, and the Go parser reads the description.
	for _, name := range interfaces {
		ctx, cancel := callCtx()
		desc, err := c.GetInterfaceDescription(ctx, name)
		cancel()
		if !check(err == nil && desc != "", fmt.Sprintf("GetInterfaceDescription(%s) succeeds", name),
			"error: %s, description %q", describeErr(err), desc) {
			continue
		}
		parsed := checkIdlParse(name, desc)
		if parsed == nil {
			continue
		}
		methods, errs, types := memberNames(parsed)
		switch name {
		case "io.tsmd.Service":
			check(contains(methods, "Ping") && contains(methods, "GetStatus") && contains(methods, "SetLogLevel") &&
				contains(types, "Limits"),
				"Go idl sees io.tsmd.Service's Ping, GetStatus, SetLogLevel and type Limits",
				"methods %q, types %q", methods, types)
		case "io.tsmd":
			check(contains(errs, "System"), "Go idl sees io.tsmd's error System", "errors %q", errs)
		case "org.varlink.service":
			check(contains(methods, "GetInfo") && contains(methods, "GetInterfaceDescription") &&
				contains(errs, "InterfaceNotFound") && contains(errs, "MethodNotFound") &&
				contains(errs, "InvalidParameter"),
				"Go idl sees org.varlink.service's methods and errors", "methods %q, errors %q", methods, errs)
		}
	}
}

func tail(s string, from int) string {
	start := from - 20
	if start < 0 {
		start = 0
	}
	end := from + 60
	if end > len(s) {
		end = len(s)
	}
	if start > len(s) {
		return ""
	}
	return s[start:end]
}

// ---------------------------------------------------------------------------------------

func checkPing(c *varlink.Connection) {
	// conn.Call sends "parameters": null when given nil.
	var out map[string]interface{}
	err := call(c, "io.tsmd.Service.Ping", nil, &out)
	check(err == nil, "Ping() via Call (parameters: null)", "error: %s", describeErr(err))

	// Send with an empty object, and without parameters at all.
	for _, v := range []struct {
		name   string
		params interface{}
	}{{"parameters: {}", struct{}{}}, {"no parameters", nil}} {
		ctx, cancel := callCtx()
		recv, err := c.Send(ctx, "io.tsmd.Service.Ping", v.params, 0)
		if err == nil {
			var flags uint64
			flags, err = recv(ctx, &out)
			if err == nil && flags&varlink.Continues != 0 {
				err = fmt.Errorf("reply has continues set")
			}
		}
		cancel()
		check(err == nil, "Ping() via Send ("+v.name+")", "error: %s", describeErr(err))
	}

	// A oneway call gets no reply: the next reply read must be GetInfo's.
	ctx, cancel := callCtx()
	defer cancel()
	_, err = c.Send(ctx, "io.tsmd.Service.Ping", nil, varlink.Oneway)
	if !check(err == nil, "oneway Ping() is sent", "error: %s", describeErr(err)) {
		return
	}
	var vendor string
	err = c.GetInfo(ctx, &vendor, nil, nil, nil, nil)
	check(err == nil && vendor == "tsmd", "oneway Ping() gets no reply (the next reply is GetInfo's)",
		"error: %s, vendor %q", describeErr(err), vendor)
}

// ---------------------------------------------------------------------------------------

func checkErrors(c *varlink.Connection) {
	// The Go library's DispatchError() turns the org.varlink.service errors it knows into
	// *varlink.InterfaceNotFound, *varlink.MethodNotFound, *varlink.InvalidParameter.
	{
		ctx, cancel := callCtx()
		_, err := c.GetInterfaceDescription(ctx, "com.example.Nope")
		cancel()
		var e *varlink.InterfaceNotFound
		check(errors.As(err, &e) && e.Interface == "com.example.Nope",
			"GetInterfaceDescription(com.example.Nope) fails with InterfaceNotFound {interface: com.example.Nope}",
			"error: %s", describeErr(err))
	}
	{
		var out map[string]interface{}
		err := call(c, "io.tsmd.Service.Ping", map[string]interface{}{"bogus": 1}, &out)
		var e *varlink.InvalidParameter
		check(errors.As(err, &e) && e.Parameter == "bogus",
			"Ping(bogus: 1) fails with InvalidParameter {parameter: bogus}",
			"error: %s", describeErr(err))
	}
	{
		var out map[string]interface{}
		err := call(c, "io.tsmd.Service.Nope", nil, &out)
		var e *varlink.MethodNotFound
		check(errors.As(err, &e) && e.Method == "io.tsmd.Service.Nope",
			"io.tsmd.Service.Nope() fails with MethodNotFound {method: io.tsmd.Service.Nope}",
			"error: %s", describeErr(err))
	}
	{
		var out map[string]interface{}
		err := call(c, "com.example.X.Y", nil, &out)
		var e *varlink.InterfaceNotFound
		check(errors.As(err, &e) && e.Interface == "com.example.X",
			"com.example.X.Y() fails with InterfaceNotFound {interface: com.example.X}",
			"error: %s", describeErr(err))
	}
	// After the errors, the connection still works.
	var vendor string
	ctx, cancel := callCtx()
	err := c.GetInfo(ctx, &vendor, nil, nil, nil, nil)
	cancel()
	check(err == nil && vendor == "tsmd", "the connection still works after the error replies",
		"error: %s, vendor %q", describeErr(err), vendor)
}

// ---------------------------------------------------------------------------------------

type limits struct {
	MaxMessageSize       int64 `json:"maxMessageSize"`
	MaxDepth             int64 `json:"maxDepth"`
	MaxFdsPerMessage     int64 `json:"maxFdsPerMessage"`
	MaxPendingCalls      int64 `json:"maxPendingCalls"`
	MaxConnections       int64 `json:"maxConnections"`
	MaxConnectionsPerUid int64 `json:"maxConnectionsPerUid"`
	MaxAdminConnections  int64 `json:"maxAdminConnections"`
}

type status struct {
	Version     *string `json:"version"`
	UptimeUsec  *int64  `json:"uptimeUsec"`
	Connections *int64  `json:"connections"`
	Limits      *limits `json:"limits"`
}

func (s status) String() string {
	b, _ := json.Marshal(s)
	return string(b)
}

// receiveStatus waits for the next reply to a GetStatus call.
func receiveStatus(recv func(context.Context, interface{}) (uint64, error)) (status, uint64, error) {
	ctx, cancel := callCtx()
	defer cancel()
	var st status
	flags, err := recv(ctx, &st)
	return st, flags, err
}

func checkGetStatus() {
	// One-shot call first.
	c, err := connect()
	if !check(err == nil, "connect for GetStatus()", "error: %s", describeErr(err)) {
		return
	}
	var st status
	err = call(c, "io.tsmd.Service.GetStatus", nil, &st)
	if check(err == nil, "GetStatus() succeeds", "error: %s", describeErr(err)) {
		check(st.Version != nil && *st.Version != "" && st.UptimeUsec != nil && *st.UptimeUsec >= 0 &&
			st.Connections != nil && *st.Connections >= 1 && st.Limits != nil &&
			st.Limits.MaxMessageSize > 0 && st.Limits.MaxDepth > 0 && st.Limits.MaxPendingCalls > 0 &&
			st.Limits.MaxConnections > 0 && st.Limits.MaxConnectionsPerUid > 0 && st.Limits.MaxAdminConnections > 0 && st.Limits.MaxFdsPerMessage >= 0,
			"GetStatus() reply has version, uptimeUsec, connections >= 1 and limits", "reply: %v", st)
	}

	// Then a 'more' call on the same connection.
	ctx, cancel := callCtx()
	recv, err := c.Send(ctx, "io.tsmd.Service.GetStatus", nil, varlink.More)
	cancel()
	if !check(err == nil, "GetStatus() with more is sent", "error: %s", describeErr(err)) {
		c.Close()
		return
	}
	first, flags, err := receiveStatus(recv)
	if !check(err == nil && flags&varlink.Continues != 0 && first.Connections != nil,
		"GetStatus() with more: first reply has continues: true",
		"error: %s, flags %#x, reply %v", describeErr(err), flags, first) {
		c.Close()
		return
	}
	last := *first.Connections

	// Another connection must make tsmd send an update with a higher count. Other updates
	// may come first (an earlier connection's hang-up being noticed late): read until the
	// count goes up, within the deadline.
	c2, err := connect()
	if !check(err == nil, "open a second connection", "error: %s", describeErr(err)) {
		c.Close()
		return
	}
	var seen []int64
	rose := false
	deadline := time.Now().Add(callTimeout)
	for !rose && time.Now().Before(deadline) {
		st, flags, err := receiveStatus(recv)
		if err != nil || flags&varlink.Continues == 0 || st.Connections == nil {
			fail("GetStatus() with more: update after the second connection has continues: true",
				"error: %s, flags %#x, reply %v", describeErr(err), flags, st)
			c2.Close()
			c.Close()
			return
		}
		seen = append(seen, *st.Connections)
		rose = *st.Connections > last
		last = *st.Connections
	}
	check(rose, "GetStatus() with more: an update shows connections went up after a second connection",
		"first reply connections=%d, then %v", *first.Connections, seen)

	// Check the second connection is usable, then hang it up: the count must go down.
	var out map[string]interface{}
	err = call(c2, "io.tsmd.Service.Ping", nil, &out)
	check(err == nil, "Ping() on the second connection", "error: %s", describeErr(err))
	c2.Close()
	if rose {
		fell := false
		seen = nil
		deadline = time.Now().Add(callTimeout)
		for !fell && time.Now().Before(deadline) {
			st, flags, err := receiveStatus(recv)
			if err != nil || flags&varlink.Continues == 0 || st.Connections == nil {
				break
			}
			seen = append(seen, *st.Connections)
			fell = *st.Connections < last
			last = *st.Connections
		}
		check(fell, "GetStatus() with more: an update shows connections went down after the second hung up",
			"counts seen: %v", seen)
	}

	// The client hangs up with the call still open; tsmd must carry on.
	c.Close()
	time.Sleep(100 * time.Millisecond)
	c3, err := connect()
	if err == nil {
		err = call(c3, "io.tsmd.Service.Ping", nil, &out)
		c3.Close()
	}
	check(err == nil, "tsmd still answers after a client hung up during a 'more' call", "error: %s", describeErr(err))
}

// ---------------------------------------------------------------------------------------

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintf(os.Stderr, "Usage: %s ADDRESS PROTO_DIR\n", os.Args[0])
		os.Exit(2)
	}
	address = os.Args[1]
	protoDir = os.Args[2]

	go func() {
		time.Sleep(totalTimeout)
		fmt.Printf("not ok %d - the run finished within %v\nBail out! watchdog expired\n", nChecks+1, totalTimeout)
		os.Exit(1)
	}()

	c, err := connect()
	if !check(err == nil, "connect to "+address, "error: %s", describeErr(err)) {
		fmt.Printf("1..%d\n", nChecks)
		os.Exit(1)
	}
	interfaces := checkGetInfo(c)
	checkDescriptions(c, interfaces)
	checkPing(c)
	checkErrors(c)
	c.Close()
	checkGetStatus()

	fmt.Printf("1..%d\n", nChecks)
	if nFailed > 0 {
		fmt.Printf("# %d of %d checks failed\n", nFailed, nChecks)
		os.Exit(1)
	}
}
