package webhook

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// Handshake runs the CloudEvents webhook validation handshake (CloudEvents "HTTP 1.1 Web
// Hooks", section 4): an OPTIONS request to cfg.URL with WebHook-Request-Origin set to the
// origin, which the destination must answer with a 2xx status and a WebHook-Allowed-Origin
// header equal to the origin or "*". The custom headers go along, so an authorization header
// applies to the handshake too. A refusal (redact.Shown, with the status only) is a
// permanent error; a network failure is not. A redirect is a refusal: it is not followed.
func Handshake(ctx context.Context, cfg SinkConfig) error {
	if err := cfg.Validate(); err != nil {
		return sink.Permanent(fmt.Errorf("webhook endpoint: %w", err))
	}
	origin := cfg.Origin
	if origin == "" {
		origin = "twinflow"
	}
	client, err := newClient(cfg)
	if err != nil {
		return sink.Permanent(fmt.Errorf("webhook endpoint: %w", err))
	}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, cfg.URL, nil)
	if err != nil {
		return sink.Permanent(fmt.Errorf("build validation request: %w", err))
	}
	for k, v := range cfg.Headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("WebHook-Request-Origin", origin)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("validate webhook %s: %w", cfg.Redacted().URL, requestError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		err := redact.Shown(fmt.Errorf("validate webhook %s: OPTIONS answered %s", cfg.Redacted().URL, statusText(resp.StatusCode)))
		if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests {
			return err
		}
		return sink.Permanent(err)
	}
	allowed := strings.TrimSpace(resp.Header.Get("WebHook-Allowed-Origin"))
	if allowed != "*" && !strings.EqualFold(allowed, origin) {
		return sink.Permanent(redact.Shown(fmt.Errorf("validate webhook %s: WebHook-Allowed-Origin is not %q or \"*\"", cfg.Redacted().URL, origin)))
	}
	return nil
}
