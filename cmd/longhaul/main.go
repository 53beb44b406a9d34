// Command longhaul is a connection-aware L4/L7 reverse proxy for Kubernetes.
//
//	longhaul run --config FILE       serve as the file says
//	longhaul validate --config FILE  check a file; print every problem
//	longhaul demo                    three local backends behind longhaul, live
//	longhaul status [--watch]        a running longhaul's endpoints, drains and migrations
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/pflag"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/longhaul-proxy/longhaul/config"
	"github.com/longhaul-proxy/longhaul/gateway"
	"github.com/longhaul-proxy/longhaul/internal/app"
)

const usage = `longhaul: a connection-aware reverse proxy for Kubernetes

Usage:
  longhaul run --config FILE [flags]       serve as FILE says
  longhaul validate --config FILE          check FILE; print every problem
  longhaul demo [--duration D]             three local echo backends behind longhaul
  longhaul status [--admin ADDR] [--watch] a running longhaul's listeners, endpoints, sessions,
                                           drains and recent migrations (its live page's view)

Run "longhaul COMMAND --help" for the flags of a command.
`

func main() {
	os.Exit(realMain(os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = runCmd(ctx, args[1:], stderr)
	case "validate":
		err = validateCmd(args[1:], stdout)
	case "demo":
		err = demoCmd(ctx, args[1:], stdout)
	case "status":
		err = statusCmd(ctx, args[1:], stdout)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, pflag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "longhaul %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func runCmd(ctx context.Context, args []string, stderr io.Writer) error {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	path := fs.String("config", "", "configuration file (YAML)")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for Kubernetes endpoint sources (default: in-cluster)")
	delay := fs.Duration("shutdown-delay", app.DefaultShutdownDelay, "on SIGTERM, keep accepting and serving this long after /readyz fails, while the Service's endpoints update")
	config.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("--config is required")
	}
	cfg, err := config.Load(*path, fs)
	if err != nil {
		return err
	}
	log, level, err := newLogger(cfg.Log, stderr)
	if err != nil {
		return err
	}
	defer log.Sync()
	a, err := app.New(cfg, app.Options{Logger: log, Level: &level, ShutdownDelay: *delay, Kubernetes: kubeSource(*kubeconfig)})
	if err != nil {
		return err
	}
	var gw *gateway.Controller
	if cfg.Gateway.Class != "" {
		if gw, err = newGateway(cfg, a, *kubeconfig, log); err != nil {
			a.Close()
			return err
		}
	}
	// Reload the file when it changes: what can change in place does, an
	// invalid file or a change that needs a restart is logged and ignored.
	wctx, stopWatch := context.WithCancel(ctx)
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		err := config.Watch(wctx, *path, fs, func(next *config.Config) {
			if err := a.Reload(next); err != nil {
				log.Error("configuration change not applied", zap.String("config", *path), zap.Error(err))
			}
		}, func(err error) {
			log.Error("configuration file rejected; keeping the one in force", zap.String("config", *path), zap.Error(err))
			a.ConfigRejected()
		})
		if err != nil {
			log.Warn("configuration file not watched; changes need a restart", zap.Error(err))
		}
	}()
	// A gateway that stops watching stops longhaul: its Gateways would go
	// stale while reported as programmed.
	runCtx, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	gwDone := make(chan error, 1)
	if gw != nil {
		go func() {
			err := gw.Run(wctx)
			if err != nil && wctx.Err() == nil {
				log.Error("gateway controller stopped; shutting down", zap.Error(err))
				stopRun(err)
			}
			gwDone <- err
		}()
	} else {
		gwDone <- nil
	}
	err = a.Run(runCtx)
	stopWatch()
	<-watchDone
	if gerr := <-gwDone; gerr != nil && !errors.Is(gerr, context.Canceled) && err == nil {
		err = fmt.Errorf("gateway: %w", gerr)
	}
	return err
}

func validateCmd(args []string, stdout io.Writer) error {
	fs := pflag.NewFlagSet("validate", pflag.ContinueOnError)
	path := fs.String("config", "", "configuration file (YAML)")
	config.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return errors.New("--config is required")
	}
	cfg, err := config.Load(*path, fs)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: valid (%d listeners)\n", *path, len(cfg.Listeners))
	return nil
}

func newLogger(c config.Log, w io.Writer) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zap.ParseAtomicLevel(c.Level)
	if err != nil {
		return nil, lvl, fmt.Errorf("log level: %w", err)
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	if c.Format == "console" {
		enc = zapcore.NewConsoleEncoder(ec)
	} else {
		enc = zapcore.NewJSONEncoder(ec)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), lvl)), lvl, nil
}
