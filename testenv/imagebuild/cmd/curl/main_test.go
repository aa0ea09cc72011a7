package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestTheTutorialsCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/schedule" || r.Header.Get("Accept") != "application/json" {
			http.Error(w, "wrong request: "+r.URL.Path+" "+r.Header.Get("Accept"), http.StatusBadRequest)
			return
		}
		w.Write([]byte(`{"schedule":[]}`))
	}))
	defer srv.Close()
	o, err := parse([]string{"-s", "-H", "accept: application/json", srv.URL + "/schedule"})
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run(o, &out, &errOut); code != 0 || out.String() != `{"schedule":[]}` {
		t.Fatalf("exit %d, out %q, err %q", code, out.String(), errOut.String())
	}
}

func TestExitCodesFollowCurl(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	cases := []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"-sSf", srv.URL + "/missing"}, 22, "returned error: 404"},
		{[]string{"-s", srv.URL + "/missing"}, 0, ""},
		{[]string{"-sS", "http://no-such-host.invalid/"}, 6, "Could not resolve host"},
		{[]string{"-s", "http://no-such-host.invalid/"}, 6, ""},
	}
	for _, c := range cases {
		o, err := parse(c.args)
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		code := run(o, &out, &errOut)
		if code != c.code || (c.err == "") != (errOut.Len() == 0) || !strings.Contains(errOut.String(), c.err) {
			t.Errorf("%v: exit %d (want %d), stderr %q (want %q)", c.args, code, c.code, errOut.String(), c.err)
		}
	}
}

func TestUnsupportedFlagsAreNamed(t *testing.T) {
	for _, args := range [][]string{{"-k", "http://x"}, {"--insecure", "http://x"}, {}, {"-H"}} {
		if _, err := parse(args); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
	if _, err := parse([]string{"-z", "http://x"}); err == nil || !strings.Contains(err.Error(), "-z") {
		t.Errorf("-z: %v", err)
	}
}

func TestFlagsAsCurlWritesThem(t *testing.T) {
	cases := []struct {
		args    []string
		headers []string
		method  string
		data    string
		max     string
		url     string
	}{
		{[]string{"curl", "-s", "-H", "accept: application/json", "http://x/schedule"}, []string{"accept: application/json"}, "GET", "", "0s", "http://x/schedule"},
		{[]string{"-sH", "a: b", "-XPUT", "-m5", "x:1"}, []string{"a: b"}, "PUT", "", "5s", "http://x:1"},
		{[]string{"--max-time=0.5", "--header=c: d", "-d", "-x", "http://y"}, []string{"c: d"}, "POST", "-x", "500ms", "http://y"},
	}
	for _, c := range cases {
		o, err := parse(c.args)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if strings.Join(o.headers, "|") != strings.Join(c.headers, "|") || o.method != c.method ||
			o.data != c.data || o.maxTime.String() != c.max || o.url != c.url {
			t.Errorf("%v: got headers %v method %s data %q max %s url %s", c.args, o.headers, o.method, o.data, o.maxTime, o.url)
		}
	}
}

func TestRedirectsTimeoutsAndClosedPorts(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/slow":
			time.Sleep(2 * time.Second)
		default:
			w.Write([]byte("the target page"))
		}
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()
	cases := []struct {
		args []string
		code int
		out  string
	}{
		// Like curl without -L: the 302 is the answer.
		{[]string{"-s", "-i", srv.URL + "/moved"}, 0, "302 Found"},
		{[]string{"-s", "-m", "0.2", srv.URL + "/slow"}, 28, ""},
		{[]string{"-s", closedURL + "/"}, 7, ""},
	}
	for _, c := range cases {
		o, err := parse(c.args)
		if err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		code := run(o, &out, &errOut)
		if code != c.code || !strings.Contains(out.String(), c.out) || strings.Contains(out.String(), "the target page") {
			t.Errorf("%v: exit %d (want %d), out %q (want %q)", c.args, code, c.code, out.String(), c.out)
		}
	}
}
