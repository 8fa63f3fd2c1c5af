package main

import (
	"net/url"
	"testing"
)

func TestPostgresDeadlines(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, dsn string
		want      map[string]string
	}{
		{"defaults added", "postgres://u@db:5432/ferry?sslmode=disable",
			map[string]string{"sslmode": "disable", "connect_timeout": "5", "tcp_user_timeout": "10000", "idle_in_transaction_session_timeout": "60000"}},
		{"the URL's own kept", "postgres://u@db/ferry?connect_timeout=2&tcp_user_timeout=30000&search_path=s1",
			map[string]string{"connect_timeout": "2", "tcp_user_timeout": "30000", "search_path": "s1", "tcp_keepalives_idle": "5"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got, err := postgresDeadlines(c.dsn)
			if err != nil {
				t.Fatal(err)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range c.want {
				if g := u.Query().Get(k); g != v {
					t.Errorf("%s = %q, want %q (in %s)", k, g, v, got)
				}
			}
		})
	}
}
