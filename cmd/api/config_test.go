package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fstore/fstore/internal/startup"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://u:hunter2@db:5432/fstore?sslmode=disable")
	cfg, err := loadConfig()
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:8080", cfg.Addr)
	assert.Equal(t, int64(8<<20), cfg.MaxBodyBytes)
	assert.Equal(t, 1000, cfg.MaxSubscribers)
	assert.Equal(t, "postgres://u:xxxxx@db:5432/fstore?sslmode=disable", startup.RedactURL(cfg.DatabaseURL))

	cases := map[string]struct {
		env     map[string]string
		wantErr string
	}{
		"public address without keys": {map[string]string{"FSTORE_ADDR": "0.0.0.0:8080"}, "FSTORE_INSECURE"},
		"all interfaces without keys": {map[string]string{"FSTORE_ADDR": ":8080"}, "not a loopback"},
		"public address with keys":    {map[string]string{"FSTORE_ADDR": "0.0.0.0:8080", "FSTORE_API_KEYS": "a,b"}, ""},
		"public address, insecure":    {map[string]string{"FSTORE_ADDR": "0.0.0.0:8080", "FSTORE_INSECURE": "true"}, ""},
		"localhost without keys":      {map[string]string{"FSTORE_ADDR": "localhost:9000"}, ""},
		"IPv6 loopback without keys":  {map[string]string{"FSTORE_ADDR": "[::1]:9000"}, ""},
		"address without port":        {map[string]string{"FSTORE_ADDR": "127.0.0.1"}, "host:port"},
		"empty keys are not keys":     {map[string]string{"FSTORE_ADDR": "0.0.0.0:8080", "FSTORE_API_KEYS": ","}, "not a loopback"},
		"bad log level":               {map[string]string{"FSTORE_LOG_LEVEL": "loud"}, "FSTORE_LOG_LEVEL"},
		"tiny body limit":             {map[string]string{"FSTORE_MAX_BODY_BYTES": "10"}, "FSTORE_MAX_BODY_BYTES"},
		"not a number":                {map[string]string{"FSTORE_MAX_BODY_BYTES": "lots"}, "FSTORE_MAX_BODY_BYTES"},
		"no subscribers":              {map[string]string{"FSTORE_MAX_SUBSCRIBERS": "0"}, "FSTORE_MAX_SUBSCRIBERS"},
		"missing database url":        {map[string]string{"DATABASE_URL": ""}, "DATABASE_URL"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := loadConfig()
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestConfigLogHidesSecrets(t *testing.T) {
	assert.Equal(t, "postgres://u:xxxxx@h/db", startup.RedactURL("postgres://u:secret@h/db"))
	assert.NotContains(t, startup.RedactURL("host=h password=secret"), "secret")
	assert.NotContains(t, startup.RedactURL("postgres://h/db?password=secret"), "secret")
}
