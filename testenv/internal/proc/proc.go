// Package proc starts, finds and stops the detached serve-cluster processes.
package proc

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Alive reports whether pid is a live process (zombies count as gone).
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces or parentheses.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return false
	}
	switch data[i+2] {
	case 'Z', 'X', 'x':
		return false
	}
	return true
}

// ServeArgs are the arguments of the process that serves one cluster.
func ServeArgs(dir, name string) []string {
	return []string{"serve-cluster", "--dir", dir, "--name", name}
}

// IsServing reports whether pid is alive and is the serve-cluster process of
// the cluster name in dir (and not an unrelated process that reused the pid).
func IsServing(pid int, dir, name string) bool {
	if !Alive(pid) {
		return false
	}
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(strings.Join(ServeArgs(dir, name), "\x00")+"\x00"))
}

// Spawn starts `exe serve-cluster --dir dir --name name` in its own session,
// detached from the terminal, with stdin from /dev/null and stdout/stderr
// appended to logFile. exited receives the process's exit once it ends
// while this process still runs.
func Spawn(exe, dir, name, logFile string) (pid int, exited <-chan error, err error) {
	log, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, nil, err
	}
	defer func() { _ = log.Close() }()
	fmt.Fprintf(log, "==== testenv: starting cluster %s at %s ====\n", name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(exe, ServeArgs(dir, name)...)
	cmd.Stdout = log
	cmd.Stderr = log
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, nil, err
	}
	ch := make(chan error, 1)
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exited with status 0")
		}
		ch <- err
	}()
	return cmd.Process.Pid, ch, nil
}

// Stop sends SIGTERM to pid, waits up to grace for it to exit, then sends
// SIGKILL and waits a little more. It only signals pid if it still is the
// serve-cluster process of (dir, name).
func Stop(pid int, dir, name string, grace time.Duration) error {
	if !IsServing(pid, dir, name) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if waitGone(pid, grace) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if waitGone(pid, 5*time.Second) {
		return nil
	}
	return fmt.Errorf("process %d of cluster %s did not exit after SIGKILL", pid, name)
}

func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		if !Alive(pid) {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
