// TEST CODE: carry out one pulumi-command v1.2.1 remote operation, the way its
// provider does, for tests/engine.py. Not part of the program.
//
// Usage: sshrun run|copy  (a JSON request on standard input, a JSON result on
// standard output; see tests/ENGINE.md for the request fields).
//
// Mirrored from github.com/pulumi/pulumi-command at tag v1.2.1 (paths under
// provider/pkg/provider/):
//   - remote/connection.go: SSHConfig (host key ignored unless hostKey is set,
//     private key, password + keyboard-interactive, agent from SSH_AUTH_SOCK),
//     Dial with dialWithRetry (retry.Until: 100ms delay, x1.5 backoff, 5s cap;
//     "after %d failed attempts: %w"), default dialErrorLimit 10, perDialTimeout 15.
//   - remote/commandOutputs.go: run(): Setenv for each environment entry (fatal),
//     PULUMI_COMMAND_STDOUT/STDERR from the previous outputs (failure only warns),
//     session.Stdin = strings.NewReader(stdin) only when stdin is non-empty,
//     stdout/stderr into buffers (and into a pipe read by util.LogOutput with a
//     bufio.Scanner), session.Run(cmd), error "%w: running %q:\n%s", outputs with
//     one trailing "\n" trimmed.
//   - remote/copyController.go: copyToRemote(), sftpCopy(), copyFile(), copyDir(),
//     copyTextContent() over github.com/pkg/sftp with UseConcurrentWrites(true).
//
// Library versions differ: Debian 12 ships x/crypto 0.4.0 and pkg/sftp 1.13.5;
// pulumi-command 1.2.1 was built with x/crypto 0.48.0 and pkg/sftp 1.13.6
// (provider/go.mod). The session code paths used here did not change.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

type Connection struct {
	User               *string  `json:"user"`
	Password           *string  `json:"password"`
	Host               *string  `json:"host"`
	Port               *float64 `json:"port"`
	PrivateKey         *string  `json:"privateKey"`
	PrivateKeyPassword *string  `json:"privateKeyPassword"`
	AgentSocketPath    *string  `json:"agentSocketPath"`
	DialErrorLimit     *int     `json:"dialErrorLimit"`
	PerDialTimeout     *int     `json:"perDialTimeout"`
	HostKey            *string  `json:"hostKey"`
}

type RunRequest struct {
	Connection             Connection        `json:"connection"`
	Command                string            `json:"command"`
	Stdin                  *string           `json:"stdin"`
	Environment            map[string]string `json:"environment"`
	AddPreviousOutputInEnv *bool             `json:"addPreviousOutputInEnv"`
	Logging                *string           `json:"logging"`
	// outputs of the previous run (Update: state := CommandOutputs{news, olds.BaseOutputs})
	Stdout string `json:"stdout"`
	Stderr string `json:"stderr"`
}

type CopyRequest struct {
	Connection Connection `json:"connection"`
	// exactly one of: Path (FileAsset or FileArchive, a file or a directory) or Text (StringAsset)
	Path       *string `json:"path"`
	Text       *string `json:"text"`
	RemotePath string  `json:"remotePath"`
}

type Result struct {
	Stdout   string   `json:"stdout"`
	Stderr   string   `json:"stderr"`
	Error    *string  `json:"error"`
	Warnings []string `json:"warnings"`
	Log      []string `json:"log"`
}

// connection.go: Annotate sets the defaults user=root, port=22, dialErrorLimit=10, perDialTimeout=15.
func (c *Connection) defaults() {
	if c.User == nil {
		u := "root"
		c.User = &u
	}
	if c.Port == nil {
		p := 22.0
		c.Port = &p
	}
	if c.DialErrorLimit == nil {
		d := 10
		c.DialErrorLimit = &d
	}
	if c.PerDialTimeout == nil {
		t := 15
		c.PerDialTimeout = &t
	}
}

func (con *Connection) sshConfig() (*ssh.ClientConfig, error) {
	var hostKeyCallback ssh.HostKeyCallback
	var hostKeyAlgorithms []string
	if con.HostKey != nil {
		publicKey, _, _, _, err := ssh.ParseAuthorizedKey([]byte(*con.HostKey))
		if err != nil {
			return nil, fmt.Errorf("failed to parse host key: %w", err)
		}
		hostKeyCallback = ssh.FixedHostKey(publicKey)
		hostKeyAlgorithms = []string{publicKey.Type()}
	} else {
		hostKeyCallback = ssh.InsecureIgnoreHostKey()
	}
	config := &ssh.ClientConfig{
		User:              *con.User,
		HostKeyCallback:   hostKeyCallback,
		HostKeyAlgorithms: hostKeyAlgorithms,
		Timeout:           time.Second * time.Duration(*con.PerDialTimeout),
	}
	if con.PrivateKey != nil {
		var signer ssh.Signer
		var err error
		if con.PrivateKeyPassword != nil {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(*con.PrivateKey), []byte(*con.PrivateKeyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(*con.PrivateKey))
		}
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeys(signer))
	}
	if con.Password != nil {
		config.Auth = append(config.Auth, ssh.Password(*con.Password))
		config.Auth = append(config.Auth, ssh.KeyboardInteractive(
			func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range questions {
					answers[i] = *con.Password
				}
				return answers, nil
			}))
	}
	sock := con.AgentSocketPath
	if sock == nil {
		if s := os.Getenv("SSH_AUTH_SOCK"); s != "" {
			sock = &s
		}
	}
	if sock != nil {
		conn, err := net.Dial("unix", *sock)
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	return config, nil
}

// connection.go dialWithRetry + sdk/go/common/util/retry/until.go (DefaultDelay 100ms,
// DefaultBackoff 1.5, DefaultMaxDelay 5s).
func dialWithRetry(ctx context.Context, log *[]string, msg string, maxAttempts int, f func() (*ssh.Client, error)) (*ssh.Client, error) {
	delay, backoff, maxDelay := 100*time.Millisecond, 1.5, 5*time.Second
	for try := 0; ; try++ {
		if delay > maxDelay {
			delay = maxDelay
		}
		result, userError := f()
		if userError == nil {
			return result, nil
		}
		dials := try + 1
		if maxAttempts > -1 && dials > maxAttempts {
			return nil, fmt.Errorf("after %d failed attempts: %w", try, userError)
		}
		limit := "inf"
		if maxAttempts != -1 {
			limit = fmt.Sprintf("%d", maxAttempts)
		}
		*log = append(*log, fmt.Sprintf("%s %d/%s failed: retrying", msg, dials, limit))
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		delay = time.Duration(float64(delay) * backoff)
	}
}

func (c *Connection) dial(ctx context.Context, log *[]string) (*ssh.Client, error) {
	c.defaults()
	config, err := c.sshConfig()
	if err != nil {
		return nil, err
	}
	endpoint := net.JoinHostPort(*c.Host, fmt.Sprintf("%d", int(*c.Port)))
	return dialWithRetry(ctx, log, "Dial", *c.DialErrorLimit, func() (*ssh.Client, error) {
		return ssh.Dial("tcp", endpoint, config)
	})
}

// util.LogOutput: a bufio.Scanner over the pipe (its 64 KiB token limit included).
func logOutput(r io.Reader, done chan<- struct{}, log *[]string) {
	defer close(done)
	scanner := bufio.NewScanner(r)
	for scanner.Scan() {
		*log = append(*log, scanner.Text())
	}
}

func shouldLog(l *string, which string) bool {
	return l == nil || *l == which || *l == "stdoutAndStderr"
}

// commandOutputs.go run()
func run(ctx context.Context, req RunRequest, res *Result) error {
	client, err := req.Connection.dial(ctx, &res.Log)
	if err != nil {
		return err
	}
	session, err := client.NewSession()
	if err != nil {
		return err
	}
	defer session.Close()

	for k, v := range req.Environment {
		if err := session.Setenv(k, v); err != nil {
			return fmt.Errorf("could not set environment variable %q: %w", k, err)
		}
	}
	if req.AddPreviousOutputInEnv == nil || *req.AddPreviousOutputInEnv {
		if req.Stdout != "" {
			if err := session.Setenv("PULUMI_COMMAND_STDOUT", req.Stdout); err != nil {
				res.Warnings = append(res.Warnings, "Unable to set 'PULUMI_COMMAND_STDOUT'")
			}
		}
		if req.Stderr != "" {
			if err := session.Setenv("PULUMI_COMMAND_STDERR", req.Stderr); err != nil {
				res.Warnings = append(res.Warnings, "Unable to set 'PULUMI_COMMAND_STDERR'")
			}
		}
	}
	if req.Stdin != nil && len(*req.Stdin) > 0 {
		session.Stdin = strings.NewReader(*req.Stdin)
	}

	var stdoutbuf, stderrbuf, stdouterrbuf bytes.Buffer
	r, w := io.Pipe()
	stdoutWriters := []io.Writer{&stdoutbuf, &stdouterrbuf}
	if shouldLog(req.Logging, "stdout") {
		stdoutWriters = append(stdoutWriters, w)
	}
	session.Stdout = io.MultiWriter(stdoutWriters...)
	stderrWriters := []io.Writer{&stderrbuf, &stdouterrbuf}
	if shouldLog(req.Logging, "stderr") {
		stderrWriters = append(stderrWriters, w)
	}
	session.Stderr = io.MultiWriter(stderrWriters...)

	done := make(chan struct{})
	go logOutput(r, done, &res.Log)

	err = session.Run(req.Command)

	w.Close()
	<-done

	if err != nil {
		return fmt.Errorf("%w: running %q:\n%s", err, req.Command, stdouterrbuf.String())
	}
	res.Stdout = strings.TrimSuffix(stdoutbuf.String(), "\n")
	res.Stderr = strings.TrimSuffix(stderrbuf.String(), "\n")
	return nil
}

// copyController.go copyToRemote()
func copyToRemote(ctx context.Context, req CopyRequest, res *Result) error {
	client, err := req.Connection.dial(ctx, &res.Log)
	if err != nil {
		return err
	}
	defer client.Close()
	sftpClient, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if err != nil {
		return err
	}
	defer sftpClient.Close()
	if req.Text != nil {
		return copyTextContent(sftpClient, *req.Text, req.RemotePath)
	}
	return sftpCopy(sftpClient, *req.Path, req.RemotePath)
}

func remoteStat(c *sftp.Client, path string) (fs.FileInfo, error) {
	info, err := c.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("failed to stat remote path %s: %w", path, err)
	}
	return info, nil
}

func copyTextContent(c *sftp.Client, content, destPath string) error {
	destStat, err := remoteStat(c, destPath)
	if err != nil {
		return err
	}
	if destStat != nil && destStat.IsDir() {
		return fmt.Errorf("remote path %s is a directory; when using a text asset, remotePath must be a file path", destPath)
	}
	if err := c.MkdirAll(filepath.Dir(destPath)); err != nil {
		return fmt.Errorf("failed to create parent directories for %s: %w", destPath, err)
	}
	remote, err := c.Create(destPath)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", destPath, err)
	}
	defer remote.Close()
	if _, err = remote.Write([]byte(content)); err != nil {
		return fmt.Errorf("failed to write text content to remote path %s: %w", destPath, err)
	}
	return nil
}

func sftpCopy(c *sftp.Client, sourcePath, destPath string) error {
	src, err := os.Open(sourcePath)
	if err != nil {
		return err
	}
	defer src.Close()
	srcInfo, err := src.Stat()
	if err != nil {
		return err
	}
	destStat, err := remoteStat(c, destPath)
	if err != nil {
		return err
	}
	dest := destPath
	if srcInfo.IsDir() {
		if destStat == nil {
			if err = c.MkdirAll(dest); err != nil {
				return fmt.Errorf("failed to create remote directory %s: %w", dest, err)
			}
		}
		if !strings.HasSuffix(sourcePath, "/") {
			dest = filepath.Join(dest, filepath.Base(sourcePath))
			destStat, err := remoteStat(c, dest)
			if err != nil {
				return err
			}
			if destStat != nil && !destStat.IsDir() {
				return fmt.Errorf("remote path %s exists but is not a directory", dest)
			}
			if destStat == nil {
				if err = c.Mkdir(dest); err != nil {
					return fmt.Errorf("failed to create remote directory %s: %w", dest, err)
				}
			}
		}
		return copyDir(c, sourcePath, dest)
	}
	if destStat != nil && destStat.IsDir() {
		dest = filepath.Join(dest, filepath.Base(sourcePath))
	} else if destStat == nil {
		if err := c.MkdirAll(filepath.Dir(dest)); err != nil {
			return fmt.Errorf("failed to create parent directories for %s: %w", dest, err)
		}
	}
	return copyFile(c, sourcePath, dest)
}

func copyFile(c *sftp.Client, src, dst string) error {
	local, err := os.Open(src)
	if err != nil {
		return err
	}
	defer local.Close()
	remote, err := c.Create(dst)
	if err != nil {
		return fmt.Errorf("failed to create remote file %s: %w", dst, err)
	}
	defer remote.Close()
	if _, err = remote.ReadFrom(local); err != nil {
		return fmt.Errorf("failed to copy file %s to remote path %s: %w", src, dst, err)
	}
	return nil
}

func copyDir(c *sftp.Client, src, dst string) error {
	return fs.WalkDir(os.DirFS(src), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		remotePath := filepath.Join(dst, path)
		if !d.IsDir() {
			return copyFile(c, filepath.Join(src, path), remotePath)
		}
		dirInfo, err := remoteStat(c, remotePath)
		if err != nil {
			return err
		}
		if dirInfo == nil {
			if err = c.Mkdir(remotePath); err != nil {
				return fmt.Errorf("failed to create remote directory %s: %w", remotePath, err)
			}
		} else if !dirInfo.IsDir() {
			return fmt.Errorf("remote path %s exists but is not a directory", remotePath)
		}
		return nil
	})
}

func main() {
	if len(os.Args) != 2 || (os.Args[1] != "run" && os.Args[1] != "copy") {
		fmt.Fprintln(os.Stderr, "usage: sshrun run|copy < request.json")
		os.Exit(2)
	}
	ctx := context.Background()
	res := Result{Warnings: []string{}, Log: []string{}}
	var err error
	dec := json.NewDecoder(os.Stdin)
	if os.Args[1] == "run" {
		var req RunRequest
		if err = dec.Decode(&req); err != nil {
			fmt.Fprintln(os.Stderr, "bad request:", err)
			os.Exit(2)
		}
		err = run(ctx, req, &res)
	} else {
		var req CopyRequest
		if err = dec.Decode(&req); err != nil || (req.Path == nil) == (req.Text == nil) {
			fmt.Fprintln(os.Stderr, "bad request: exactly one of path, text", err)
			os.Exit(2)
		}
		err = copyToRemote(ctx, req, &res)
	}
	if err != nil {
		msg := err.Error()
		res.Error = &msg
	}
	out, _ := json.Marshal(res)
	os.Stdout.Write(out)
}
