// Command curl is the HTTP client of the tutorial's consumer pod, standing in for the
// curlimages/curl image (no registry is reachable here): enough of curl's flags for
//
//	curl -s -H 'accept: application/json' http://flights-service.liqo-demo:7999/schedule
//
// It supports -s/--silent, -S/--show-error, -f/--fail, -H/--header (repeat), -X/--request,
// -d/--data, -i/--include, -o/--output, -m/--max-time SECONDS, and one URL. Errors go to
// stderr (unless -s without -S) and the exit codes follow curl: 6 name not resolved, 7 no
// connection, 22 HTTP error with -f, 28 timeout, 2 bad usage.
package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

type options struct {
	silent, showError, fail, include bool
	headers                          []string
	method, data, output, url        string
	maxTime                          time.Duration
}

func main() {
	opts, err := parse(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "curl:", err)
		os.Exit(2)
	}
	os.Exit(run(opts, os.Stdout, os.Stderr))
}

// parse reads curl's flags: short flags may be joined (-sS, -sH 'a: b', -XPOST, -m5), long
// ones may carry their value (--max-time=5).
func parse(args []string) (options, error) {
	o := options{}
	// `kubectl run consumer --image=curl:dev -- curl -s URL` passes "curl" as the first
	// argument: curlimages/curl's entrypoint script runs it as the command; this image has no
	// shell, so the program skips it itself.
	if len(args) > 0 && args[0] == "curl" {
		args = args[1:]
	}
	args = expand(args)
	value := func(i *int, flag string) (string, error) {
		if *i+1 >= len(args) {
			return "", fmt.Errorf("option %s needs a value", flag)
		}
		*i++
		return args[*i], nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		var err error
		switch {
		case a == "--silent":
			o.silent = true
		case a == "--show-error":
			o.showError = true
		case a == "--fail":
			o.fail = true
		case a == "--include":
			o.include = true
		case a == "-H" || a == "--header":
			var h string
			h, err = value(&i, a)
			o.headers = append(o.headers, h)
		case a == "-X" || a == "--request":
			o.method, err = value(&i, a)
		case a == "-d" || a == "--data":
			o.data, err = value(&i, a)
		case a == "-o" || a == "--output":
			o.output, err = value(&i, a)
		case a == "-m" || a == "--max-time":
			var s string
			if s, err = value(&i, a); err == nil {
				var secs float64
				if secs, err = strconv.ParseFloat(s, 64); err == nil {
					o.maxTime = time.Duration(secs * float64(time.Second))
				}
			}
		case strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && len(a) > 1:
			for _, c := range a[1:] {
				switch c {
				case 's':
					o.silent = true
				case 'S':
					o.showError = true
				case 'f':
					o.fail = true
				case 'i':
					o.include = true
				default:
					return o, fmt.Errorf("option -%c is not supported by this stand-in (supported: -s -S -f -i -H -X -d -o -m)", c)
				}
			}
		case strings.HasPrefix(a, "--"):
			return o, fmt.Errorf("option %s is not supported by this stand-in", a)
		default:
			if o.url != "" {
				return o, fmt.Errorf("one URL only (got %s and %s)", o.url, a)
			}
			o.url = a
		}
		if err != nil {
			return o, err
		}
	}
	if o.url == "" {
		return o, errors.New("no URL given")
	}
	if !strings.Contains(o.url, "://") {
		o.url = "http://" + o.url
	}
	if o.method == "" {
		o.method = http.MethodGet
		if o.data != "" {
			o.method = http.MethodPost
		}
	}
	return o, nil
}

// expand rewrites joined short flags and `--name=value` into separate arguments, so parse
// sees one flag per argument: -sSf -> -s -S -f; -sH v -> -s -H v; -XPOST -> -X POST.
func expand(args []string) []string {
	takesValue := "HXdom"
	longTakesValue := map[string]bool{"--header": true, "--request": true, "--data": true, "--output": true, "--max-time": true}
	var out []string
	valueNext := false
	for i, a := range args {
		if valueNext {
			// The value of the previous flag, whatever it looks like (-d -x is data "-x").
			out = append(out, a)
			valueNext = false
			continue
		}
		switch {
		case a == "--":
			return append(out, args[i:]...)
		case strings.HasPrefix(a, "--") && strings.Contains(a, "="):
			name, value, _ := strings.Cut(a, "=")
			out = append(out, name, value)
		case strings.HasPrefix(a, "-") && !strings.HasPrefix(a, "--") && len(a) > 2:
			for j, c := range a[1:] {
				out = append(out, "-"+string(c))
				if strings.ContainsRune(takesValue, c) {
					if rest := a[2+j:]; rest != "" {
						out = append(out, rest)
					} else {
						valueNext = true
					}
					break
				}
			}
		default:
			out = append(out, a)
			valueNext = longTakesValue[a] || (len(a) == 2 && a[0] == '-' && strings.ContainsRune(takesValue, rune(a[1])))
		}
	}
	return out
}

// run performs the request and returns curl's exit code.
func run(o options, stdout, stderr io.Writer) int {
	complain := func(code int, format string, args ...any) int {
		if !o.silent || o.showError {
			fmt.Fprintf(stderr, "curl: (%d) "+format+"\n", append([]any{code}, args...)...)
		}
		return code
	}
	var body io.Reader
	if o.data != "" {
		body = strings.NewReader(o.data)
	}
	req, err := http.NewRequest(o.method, o.url, body)
	if err != nil {
		return complain(3, "URL rejected: %v", err)
	}
	req.Header.Set("User-Agent", "curl/liqo-stand-in")
	for _, h := range o.headers {
		k, v, ok := strings.Cut(h, ":")
		if !ok {
			return complain(2, "header %q is not NAME: VALUE", h)
		}
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	if o.data != "" && req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	// Like curl without -L: a redirect is the answer, not followed.
	client := &http.Client{
		Timeout:       o.maxTime,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		var dns *net.DNSError
		var op *net.OpError
		switch {
		case errors.As(err, &dns):
			return complain(6, "Could not resolve host: %s", req.URL.Hostname())
		case timedOut(err):
			return complain(28, "Operation timed out: %v", err)
		case errors.As(err, &op) && op.Op == "dial":
			return complain(7, "Failed to connect to %s: %v", req.URL.Host, err)
		default:
			return complain(56, "Failure when receiving data from the peer: %v", err)
		}
	}
	defer resp.Body.Close()
	if o.fail && resp.StatusCode >= 400 {
		return complain(22, "The requested URL returned error: %d", resp.StatusCode)
	}
	out := stdout
	if o.output != "" && o.output != "-" {
		f, err := os.Create(o.output)
		if err != nil {
			return complain(23, "Failure writing output to destination: %v", err)
		}
		defer f.Close()
		out = f
	}
	if o.include {
		fmt.Fprintf(out, "%s %s\r\n", resp.Proto, resp.Status)
		_ = resp.Header.Write(out)
		fmt.Fprint(out, "\r\n")
	}
	if _, err := io.Copy(out, resp.Body); err != nil {
		if timedOut(err) {
			return complain(28, "Operation timed out: %v", err)
		}
		return complain(56, "Failure when receiving data from the peer: %v", err)
	}
	return 0
}

// timedOut tells a timeout (-m) from other network errors.
func timedOut(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) && netErr.Timeout()
}
