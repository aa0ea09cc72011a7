package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
